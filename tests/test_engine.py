"""Engine conformance: one suite run against every engine ("local": FAISS + bm25s; "milvus": Milvus Lite)."""
from __future__ import annotations

import hashlib
import importlib.util
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rag
from rag.config import Config
from rag.engines.base import Row, engine_class
from rag.errors import ConfigError, IndexCorruptError, IndexMismatchError
from rag.query import ArticleFilter
from rag.text import tokenize

from conftest import ROOT, SEEDS, TEST_DATA


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        return False


# the default engine's suite runs everywhere; Milvus's only where pymilvus is installed
needs_milvus = pytest.mark.skipif(not _installed("pymilvus"), reason="the milvus engine needs pip install 'rag-news[milvus]'")

DIM = 16
TEXTS = [  # (source, date, text): sources with a quote and none, dates of every shape
    ("长江日报", "2021-12-03", "江岸区举行招商引资签约仪式，十个项目集中签约，新闻发布"),
    ("长江日报", "2021", "武汉地铁新线开通运营，市民乘车出行更方便，新闻发布"),
    ("湖北日报", "2020-06-30", "宜昌三峡旅游新区项目开工建设，总投资百亿元，新闻发布"),
    ("湖北日报", "2021-06", "九江长江大桥维修完成恢复通行，新闻发布"),
    ("楚天\"都市\"报", "2022-01-15", "新能源汽车产业园在襄阳落成投产，新闻发布"),
    (None, None, "疫情防控常态化，社区核酸检测有序开展，新闻发布"),
    ("人民日报", "2019-11-11", "长江经济带生态保护修复取得进展，新闻发布"),
    ("人民日报", "", "光谷科技创新大走廊建设提速，新闻发布"),
]
FILTERS = [
    ArticleFilter.make(["长江日报"]),
    ArticleFilter.make(["湖北日报", "楚天\"都市\"报"]),
    ArticleFilter.make(date_from="2021"),
    ArticleFilter.make(date_from="2021-06-01"),
    ArticleFilter.make(date_to="2020"),
    ArticleFilter.make(date_to="2021-12"),
    ArticleFilter.make(date_from="2020-01-01", date_to="2021-12-03"),
    ArticleFilter.make(["人民日报"], date_from="2019", date_to="2019"),
    ArticleFilter.make(["没有这家报纸"]),
]


class FakeEmbedder:
    """Deterministic unit vectors seeded from a hash of the text (no model)."""

    name = "fake"
    dim = DIM
    calibration = None

    def identity(self) -> dict:
        return {"name": self.name, "dim": self.dim}

    def _one(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).normal(size=self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._one(t) for t in texts])

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return np.stack([self._one(t) for t in texts])


def make_rows(texts=TEXTS, prefix="d") -> list[Row]:
    return [Row(key=f"{prefix}{i}@0", chunk_id=hashlib.sha1(t.encode()).hexdigest()[:16], doc_id=f"{prefix}{i}",
                source=s, date=d, text=t) for i, (s, d, t) in enumerate(texts)]


@pytest.fixture(scope="module")
def lite_uri(tmp_path_factory) -> str:
    """One Milvus Lite file for the module (a Lite server per file takes seconds to start)."""
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


def filled(config: Config, index_dir: Path, dim: int | None = DIM):
    rows = make_rows()
    vecs = FakeEmbedder().embed_documents([r.text for r in rows]) if dim else None
    engine = engine_class(config.engine).create(config, index_dir, dim)
    return engine.updated(rows=rows, vectors=vecs, tokens=[tokenize(r.text) for r in rows]), rows, vecs


# --- the conformance suite ---------------------------------------------------------------------
class EngineTests:
    """What every engine must do. An engine's tests are a subclass naming it (and, if it needs
    them, its settings in ``make_config``); the filled engine holds ``TEXTS`` as rows."""

    engine = ""

    def make_config(self, lite_uri: str) -> Config:
        return Config(engine=self.engine)

    @pytest.fixture
    def config(self, lite_uri) -> Config:
        return self.make_config(lite_uri)

    def test_add_then_dense_and_keyword_search(self, config, tmp_path):
        engine, rows, vecs = filled(config, tmp_path / "index")
        assert engine.size == len(rows)
        for r, v in zip(rows, vecs):
            key, score = engine.dense_search(v, k=3)[0]
            assert key == r.key and score == pytest.approx(1.0, abs=1e-3)  # float16 storage
        hits = engine.keyword_search(["地铁"], k=5)
        assert [k for k, _ in hits] == ["d1@0"]
        hits = engine.keyword_search(["项目", "开工"], k=5)
        assert hits[0][0] == "d2@0" and all(s > 0 for _, s in hits)
        assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        assert engine.keyword_search(["从未出现的词"], k=5) == []


    def test_remove_by_key(self, config, tmp_path):
        engine, rows, vecs = filled(config, tmp_path / "index")
        idf_before = engine.idf("地铁")
        after = engine.updated(delete=["d1@0", "no-such-key"], vectors=np.zeros((0, DIM), np.float32))
        assert after.size == len(rows) - 1
        assert "d1@0" not in [k for k, _ in after.dense_search(vecs[1], k=len(rows))]
        assert after.keyword_search(["地铁"], k=5) == []
        assert set(after.vectors([r.key for r in rows])) == {r.key for r in rows} - {"d1@0"}
        assert after.idf("地铁") > idf_before  # now unseen


    def test_replace_a_row_under_the_same_key(self, config, tmp_path):
        engine, rows, vecs = filled(config, tmp_path / "index")
        new = Row(key="d0@0", chunk_id="x" * 16, doc_id="d0", source="长江日报", date="2021-12-03", text="江岸区 光谷 无人机表演")
        v = FakeEmbedder().embed_documents([new.text])
        after = engine.updated(delete=["d0@0"], rows=[new], vectors=v, tokens=[tokenize(new.text)])
        assert after.size == len(rows)
        assert after.keyword_search(["签约"], k=5) == []
        assert after.keyword_search(["无人机"], k=5)[0][0] == "d0@0"
        np.testing.assert_allclose(after.vectors(["d0@0"])["d0@0"], v[0], atol=1e-3)  # float16 storage


    @pytest.mark.parametrize("where", FILTERS, ids=str)
    def test_filters_select_what_article_filter_allows(self, config, tmp_path, where):
        engine, rows, vecs = filled(config, tmp_path / "index")
        allowed = {r.key for r in rows if where.allows(r.source, r.date)}
        assert {k for k, _ in engine.dense_search(vecs[0], k=50, where=where)} == allowed
        assert {k for k, _ in engine.keyword_search(["新闻"], k=50, where=where)} == allowed


    def test_idf_uses_the_local_formula(self, config, tmp_path):
        engine, rows, _ = filled(config, tmp_path / "index")
        n = len(rows)
        df = sum("地铁" in tokenize(r.text) for r in rows)
        assert engine.idf("地铁") == pytest.approx(math.log(1 + (n + 1) / (df + 0.5)))
        assert engine.idf("新闻") < engine.idf("地铁") < engine.idf("从未出现的词")


    def test_vectors_round_trip(self, config, tmp_path):
        engine, rows, vecs = filled(config, tmp_path / "index")
        got = engine.vectors([rows[3].key, rows[5].key, "missing"])
        assert set(got) == {rows[3].key, rows[5].key}
        np.testing.assert_allclose(got[rows[5].key], vecs[5], atol=1e-3 if config.vector_storage == "float16" and config.engine == "local" else 1e-6)


    def test_save_load_round_trip_and_check(self, config, tmp_path):
        engine, rows, vecs = filled(config, tmp_path / "index")
        folder = tmp_path / "gen"
        folder.mkdir()
        saved = engine.save(folder)
        assert saved["name"] == config.engine
        manifest = {"dim": DIM, "engine": saved}
        loaded = engine_class(config.engine).load(folder, rows, manifest, config)
        assert loaded.size == len(rows)
        assert loaded.keyword_search(["项目"], k=5) == engine.keyword_search(["项目"], k=5)
        assert [k for k, _ in loaded.dense_search(vecs[4], k=3)] == [k for k, _ in engine.dense_search(vecs[4], k=3)]
        assert loaded.idf("项目") == engine.idf("项目")
        assert loaded.check(rows, folder) == []
        assert loaded.check(rows[:-1], folder)  # one row more stored than the records say
        with pytest.raises(IndexCorruptError, match="chunk records but"):
            engine_class(config.engine).load(folder, rows[:-1], manifest, config)


    def test_keyword_only_index(self, config, tmp_path):
        engine, rows, _ = filled(config, tmp_path / "index", dim=None)
        assert engine.size == len(rows)
        assert engine.dense_search(np.ones(DIM, np.float32), k=3) == []
        assert engine.vectors([rows[0].key]) == {}
        assert engine.keyword_search(["地铁"], k=3)[0][0] == "d1@0"
        after = engine.updated(delete=["d1@0"], rows=make_rows(TEXTS[:1], prefix="e"))
        assert after.size == len(rows)


    def test_updated_needs_vectors_and_matching_lengths(self, config, tmp_path):
        engine = engine_class(config.engine).create(config, tmp_path / "index", DIM)
        rows = make_rows()
        with pytest.raises(ValueError, match="needs vectors"):
            engine.updated(rows=rows, tokens=[tokenize(r.text) for r in rows])
        with pytest.raises(ValueError, match="need as many token lists"):
            engine.updated(rows=rows, vectors=np.zeros((len(rows), DIM)), tokens=[])


class TestLocalEngine(EngineTests):
    engine = "local"


@needs_milvus
class TestMilvusEngine(EngineTests):
    engine = "milvus"

    def make_config(self, lite_uri: str) -> Config:
        return Config(engine="milvus", milvus_uri=lite_uri)


@needs_milvus
def test_engines_rank_alike(lite_uri, tmp_path):
    local, rows, vecs = filled(Config(vector_storage="float32"), tmp_path / "a")  # Milvus keeps float32
    milvus, _, _ = filled(Config(engine="milvus", milvus_uri=lite_uri), tmp_path / "b")
    for tokens in (["项目"], ["长江", "大桥"], ["新闻", "发布", "地铁"], ["疫情", "防控"]):
        a, b = dict(local.keyword_search(tokens, k=8)), dict(milvus.keyword_search(tokens, k=8))
        assert set(a) == set(b)
        in_milvus_order = [a[k] for k in b]  # equal scores may come in another order
        assert in_milvus_order == sorted(in_milvus_order, reverse=True)
        assert [b[k] for k in a] == pytest.approx(list(a.values()), rel=0.03)  # BM25 statistics differ slightly
    for v in vecs:
        a, b = local.dense_search(v, k=4), milvus.dense_search(v, k=4)
        assert [k for k, _ in b] == [k for k, _ in a]
        assert [s for _, s in b] == pytest.approx([s for _, s in a], abs=1e-5)


# --- milvus specifics --------------------------------------------------------------------------
@needs_milvus
def test_milvus_manifest_dict_names_collection_and_uri_not_token(lite_uri, tmp_path):
    cfg = Config(engine="milvus", milvus_uri=lite_uri, milvus_token="root:Milvus")
    engine, _, _ = filled(cfg, tmp_path / "my index")
    (tmp_path / "gen").mkdir()
    saved = engine.save(tmp_path / "gen")
    assert saved["uri"] == str(Path(lite_uri).resolve())
    assert saved["collection"].startswith("rag_my_index_")
    assert "root:Milvus" not in str(saved) and "token" not in saved


@needs_milvus
def test_milvus_filter_expression_matches_allows_on_every_date_shape():
    from rag.engines.milvus import filter_expression

    assert filter_expression(None) == ""
    assert filter_expression(ArticleFilter.make(["a\"b"], "2021", "2021-12")) == (
        'source in ["a\\"b"] and dated == true and date >= "2021" and date <= "2021-12~"')


@needs_milvus
def test_milvus_build_drops_stale_collections_but_keeps_the_live_one(lite_uri, tmp_path):
    from rag.engines.milvus import _client

    cfg = Config(engine="milvus", milvus_uri=lite_uri)
    first = engine_class("milvus").create(cfg, tmp_path / "ix", DIM)
    second = engine_class("milvus").create(cfg, tmp_path / "ix", DIM)  # no live index: first is stale
    names = _client(str(Path(lite_uri).resolve()), "").list_collections()
    assert second.collection in names and first.collection not in names


def test_missing_pymilvus_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    monkeypatch.delitem(sys.modules, "rag.engines.milvus", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'rag-news\[milvus\]'"):
        engine_class("milvus")


def test_config_needs_a_milvus_uri():
    with pytest.raises(ConfigError, match="needs milvus_uri"):
        Config(engine="milvus")


def test_default_build_imports_neither_pymilvus_nor_ray(tmp_path):
    code = ("import sys, rag; rag.Retriever.build(sys.argv[1], sys.argv[2], embedder='hash'); "
            "print(sorted(m for m in ('pymilvus', 'ray', 'milvus_lite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(TEST_DATA / "tiny"), str(tmp_path / "ix")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


# --- the seed corpus through the Retriever, against the default engine -------------------------
QUERIES = ["江岸签约了哪些项目？", "宜昌开工", "长江日报", "湖北 经济 增长", "武汉 地铁", "疫情 防控", "招商引资", "新能源汽车"]


@pytest.fixture(scope="module")
def milvus_seed(tmp_path_factory, lite_uri):
    """The seed corpus in Milvus, built with the real encoder (so its tests are in the slow layer)."""
    pytest.importorskip("pymilvus", reason="the milvus engine needs pip install 'rag-news[milvus]'")
    folder = tmp_path_factory.mktemp("milvus-seed") / "index"
    retriever = rag.Retriever.build(SEEDS, folder, engine="milvus", milvus_uri=lite_uri)
    return folder, retriever


def _agree(mine: list, theirs: list, what) -> None:
    """The same best passage and nearly the same top 5. Milvus computes BM25 with its own
    statistics (per segment), so keyword scores differ by a few per cent; two passages whose
    fused scores tie or nearly tie may trade places, nothing more."""
    a, b = [(p.doc_id, p.start) for p in mine], [(p.doc_id, p.start) for p in theirs]
    assert a[:1] == b[:1] and len(set(a) & set(b)) >= len(b) - 1, (what, a, b)


def test_seed_searches_equal_the_default_engine(retriever, milvus_seed):
    _, m = milvus_seed
    for q in QUERIES:
        assert [p.doc_id for p in m.search(q, k=5, mode="dense")] == [p.doc_id for p in retriever.search(q, k=5, mode="dense")], q
        for mode in ("hybrid", "keyword"):
            _agree(m.search(q, k=5, mode=mode), retriever.search(q, k=5, mode=mode), (q, mode))
    src = retriever.sources()[0]
    kw = {"sources": [src], "date_from": "2021-01-01", "date_to": "2024-12-31"}
    for q in QUERIES[:4]:
        mine = m.search(q, k=5, **kw)
        assert mine and all(p.source == src and "2021-01-01" <= p.date <= "2024-12-31" for p in mine), q
        _agree(mine, retriever.search(q, k=5, **kw), q)


def test_seed_assistant_answers_equal_the_default_engine(assistant, milvus_seed):
    _, m = milvus_seed
    other = rag.Assistant(m)
    for q in QUERIES[:4]:
        a, b = assistant.ask(q), other.ask(q)
        assert (b.text, [p.doc_id for p in b.citations]) == (a.text, [p.doc_id for p in a.citations]), q


def test_seed_manifest_and_engine_mismatch(milvus_seed, seed_index, lite_uri):
    folder, m = milvus_seed
    loaded = rag.Retriever.load(folder, engine="milvus", milvus_uri=lite_uri)
    engine = loaded.manifest["engine"]
    assert engine["name"] == "milvus" and engine["collection"] == m.engine.collection
    assert engine["uri"] == str(Path(lite_uri).resolve())
    assert rag.Retriever.check(folder) == []
    assert rag.Retriever.check(folder, Config(engine="milvus", milvus_uri=lite_uri)) == []
    elsewhere = str(Path(lite_uri).parent / "other.db")
    assert any("is not at" in p for p in rag.Retriever.check(folder, Config(engine="milvus", milvus_uri=elsewhere)))
    with pytest.raises(IndexMismatchError, match="RAG_ENGINE=milvus"):
        rag.Retriever.load(folder)
    with pytest.raises(IndexMismatchError, match="RAG_ENGINE=local"):
        rag.Retriever.load(seed_index, engine="milvus", milvus_uri=lite_uri)


def test_seed_add_remove_sync_check(milvus_seed, seed_copy, tmp_path, lite_uri):
    """A rebuild over a copy of the index reuses every vector, then updates go through Milvus."""
    folder, _ = milvus_seed
    ix = tmp_path / "index"
    shutil.copytree(folder, ix)
    r = rag.Retriever.build(seed_copy, ix, engine="milvus", milvus_uri=lite_uri)
    assert r.manifest["build"]["embedded"] == 0 and r.manifest["build"]["reused"] == len(r.chunks)
    victim = sorted(r.articles)[0]
    report = r.remove([victim])
    r2 = report.retriever
    assert report.removed == [victim] and victim not in r2.articles
    assert r2.engine.size == len(r2.chunks) < len(r.chunks)
    assert all(p.doc_id != victim for q in QUERIES for p in r2.search(q, k=10))
    assert rag.Retriever.check(ix) == []
    extra = seed_copy / "extra.txt"
    extra.write_text("光谷无人机灯光秀\n来源:长江日报\n长江日报讯 光谷广场上演千架无人机灯光秀，吸引市民观看。", encoding="utf-8")
    r3 = r2.add(extra).retriever
    # Milvus changed under r2, which has no records of the new rows: it searches on without them
    assert all(p.doc_id in r2.articles for p in r2.search("无人机灯光秀", k=5))
    assert r3.search("无人机灯光秀", k=1, mode="keyword")[0].title.startswith("光谷无人机")
    assert rag.Retriever.check(ix) == []
    gone = sorted(seed_copy.glob("0*.txt"))[-1]
    gone.unlink()
    report = r3.sync(seed_copy)
    r4 = report.retriever
    assert report.removed and not report.added and r4.engine.size == len(r4.chunks) < r3.engine.size
    assert rag.Retriever.check(ix) == []
    loaded = rag.Retriever.load(ix, engine="milvus", milvus_uri=lite_uri)
    assert [p.doc_id for p in loaded.search("无人机", k=3)] == [p.doc_id for p in r4.search("无人机", k=3)]


@needs_milvus
def test_migrate_local_index_into_milvus_without_embedding(seed_index, retriever, tmp_path, lite_uri, monkeypatch, capsys):
    from rag.cli import main

    ix = tmp_path / "index"
    shutil.copytree(seed_index, ix)

    def no_embedder(*a, **k):
        raise AssertionError("migrate must not load an embedder")

    monkeypatch.setattr("rag.embedding.make_embedder", no_embedder)
    monkeypatch.setattr("rag.embedding.factory.make_embedder", no_embedder)
    assert main(["migrate", "--index", str(ix), "--engine", "milvus", "--milvus-uri", lite_uri]) == 0
    assert f"{len(retriever.chunks)} chunks moved from engine 'local' to 'milvus'" in capsys.readouterr().out
    assert main(["migrate", "--index", str(ix), "--engine", "milvus", "--milvus-uri", lite_uri]) == 2
    assert "already in engine 'milvus'" in capsys.readouterr().err
    monkeypatch.undo()
    assert rag.Retriever.check(ix) == []
    m = rag.Retriever.load(ix, engine="milvus", milvus_uri=lite_uri)
    assert m.manifest["migrated"]["from"] == "local" and m.manifest["embedder"] == retriever.manifest["embedder"]
    for q in QUERIES:
        _agree(m.search(q, k=5), retriever.search(q, k=5), q)
    keys = [f"{c.doc_id}@{c.start}" for c in retriever.chunks[:20]]
    mine, theirs = m.engine.vectors(keys), retriever.engine.vectors(keys)
    assert all(np.array_equal(mine[k], theirs[k]) for k in keys)
    from rag.engines.migration import migrate

    assert migrate(ix, Config()).target == "local"  # and back, still without embedding
    back = rag.Retriever.load(ix)
    assert back.manifest["engine"]["name"] == "local" and rag.Retriever.check(ix) == []
    assert [p.doc_id for p in back.search(QUERIES[0], k=5)] == [p.doc_id for p in retriever.search(QUERIES[0], k=5)]
