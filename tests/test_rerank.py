"""rag.search.rerank: the reranking stage reads each fused passage with its whole article, is on by
default and off with RAG_RERANK=0, and ships its trees in the package (hashing embedder, no model)."""
from __future__ import annotations

import numpy as np
import pytest

import rag
from rag.config import Config
from rag.search.rerank import DEPTH, MODEL_DIR, Reranker, RerankModel
from rag.search.rerank_features import FEATURE_NAMES, ArticleView, rerank_features

from conftest import TEST_DATA

ARTICLES = {
    "a": ArticleView("7月28日，第5号台风杜苏芮在福建晋江登陆，保险公司已支付赔款3.2亿元。", "台风杜苏芮致福建受灾", "2023-07-30"),
    "b": ArticleView("8月10日，台风卡努影响辽宁，带来强降雨。", "台风卡努影响辽宁", "2023-08-11"),
}


def passage(doc: str, text: str, score: float, rank: int) -> rag.Passage:
    return rag.Passage(doc, "", None, None, text, score, chunk_id=f"{doc}-{rank}", keyword_score=score, keyword_rank=rank)


def features(question: str, passages: list[rag.Passage]) -> dict[str, np.ndarray]:
    X = rerank_features(rag.Query.of(question), passages, lambda t: 2.0, ARTICLES.__getitem__)
    return {name: X[:, i] for i, name in enumerate(FEATURE_NAMES)}


def test_features_read_the_whole_article_and_the_date_the_question_names():
    # the passage of "a" lacks the payment, its article has it; "b" has neither
    ps = [passage("b", "8月10日，台风卡努影响辽宁", 9.0, 0), passage("a", "7月28日，第5号台风杜苏芮在福建晋江登陆", 8.0, 1)]
    f = features("7月台风后保险公司支付了多少赔款？", ps)
    assert f["cov_article"][1] > f["cov_passage"][1] and f["cov_article"][1] > f["cov_article"][0]
    assert list(f["month_match"]) == [-1.0, 1.0] and list(f["year_match"]) == [0.0, 0.0]
    assert list(f["fused_rank"]) == [0, 1] and f["keyword_rel"][0] == 1.0
    assert f["dense"][0] == -1.0  # a keyword find without a cosine


def test_a_date_stated_without_its_year_matches_the_month_and_says_nothing_of_the_year():
    articles = {"c": ArticleView("11月29日，台风过境。", "台风过境", "--11-29"), "d": ArticleView("台风过境。", "台风", "2023-07-30")}
    ps = [passage("c", "11月29日，台风过境。", 9.0, 0), passage("d", "台风过境。", 8.0, 1)]
    for question, month, year in (("2023年11月的台风", [1.0, -1.0], [0.0, 1.0]), ("7月的台风", [-1.0, 1.0], [0.0, 0.0])):
        X = rerank_features(rag.Query.of(question), ps, lambda t: 2.0, articles.__getitem__)
        f = {name: X[:, i] for i, name in enumerate(FEATURE_NAMES)}
        assert list(f["month_match"]) == month and list(f["year_match"]) == year, question


def test_the_shipped_model_puts_the_story_that_holds_the_question_first():
    stage = Reranker(RerankModel.load(), lambda t: 2.0, ARTICLES.__getitem__)
    ps = [passage("b", "8月10日，台风卡努影响辽宁，带来强降雨。", 9.0, 0),
          passage("a", "7月28日，第5号台风杜苏芮在福建晋江登陆，保险公司已支付赔款3.2亿元。", 8.0, 1)]
    out = stage(rag.Query.of("台风杜苏芮登陆后保险公司已支付了多少赔款？"), ps)
    assert [p.doc_id for p in out] == ["a", "b"]
    assert out[0].score > out[1].score and all(0 < p.score < 1 for p in out)
    assert {p.chunk_id for p in out} == {p.chunk_id for p in ps}


def test_only_the_first_depth_passages_are_reordered():
    stage = Reranker(RerankModel.load(), lambda t: 2.0, ARTICLES.__getitem__, depth=1)
    ps = [passage("b", "台风卡努影响辽宁", 9.0, 0), passage("a", "保险公司已支付赔款3.2亿元", 8.0, 1)]
    out = stage(rag.Query.of("保险公司已支付了多少赔款？"), ps)
    assert [p.doc_id for p in out] == ["b", "a"] and out[1].score <= out[0].score


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rerank-index")
    rag.Retriever.build(TEST_DATA / "stories", folder, embedder="hash")
    return folder


def test_search_reranks_by_default_and_rag_rerank_0_turns_it_off(index, monkeypatch):
    r = rag.Retriever.load(index)
    assert [type(s) for s in r.stages] == [Reranker] and r.stages[0].depth == DEPTH
    ps = r.search("台风杜苏芮登陆后保险公司已支付了多少赔款？", k=2)
    assert ps[0].doc_id == "doksuri"
    monkeypatch.setenv("RAG_RERANK", "0")
    assert rag.Retriever.load(index, config=Config.from_env()).stages == ()
    assert r.with_stages().stages == () and r.with_stages(rerank=True).stages[0].depth == DEPTH


def test_the_model_and_its_card_ship_in_the_package():
    model = RerankModel.load()
    assert model.meta["features"] == FEATURE_NAMES and len(model.trees.roots) > 10
    card = (MODEL_DIR / "README.md").read_text(encoding="utf-8")
    for must in ("Apache-2.0", "CC BY-SA 4.0", "held-out", "scripts/train_rerank.py"):
        assert must in card


def test_a_model_of_other_features_is_refused_with_the_fix(tmp_path):
    model = RerankModel.load()
    model.save(tmp_path, {"note": "test"})
    meta = (tmp_path / "rerank.json").read_text(encoding="utf-8").replace('"fused_rel"', '"something_else"')
    (tmp_path / "rerank.json").write_text(meta, encoding="utf-8")
    with pytest.raises(rag.RagError, match="retrain it with scripts/train_rerank.py or turn it off with RAG_RERANK=0"):
        RerankModel.load(tmp_path)


@pytest.mark.slow
def test_the_weights_load_from_a_built_wheel(tmp_path):
    """What a user installs: the wheel holds the trees and the card, and they load from it."""
    import subprocess
    import sys
    import zipfile

    from conftest import ROOT

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path),
                    str(ROOT)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("rag_news-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"rag/search/rerank_model/trees.npz", "rag/search/rerank_model/rerank.json",
                "rag/search/rerank_model/README.md"} <= names
        z.extractall(tmp_path / "unpacked", [n for n in names if n.startswith("rag/search/rerank_model/")])
    model = RerankModel.load(tmp_path / "unpacked" / "rag" / "search" / "rerank_model")
    assert model.meta["features"] == FEATURE_NAMES
