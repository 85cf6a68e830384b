"""Changing the corpus without a rebuild: Retriever.add / remove / sync / latest / check, and the CLI."""
from __future__ import annotations

import json
import shutil
import time

import pytest

import rag
from rag.cli import main
from rag import UpdateReport
from rag.engines.store import IndexStore

from conftest import TEST_DATA

COPY = TEST_DATA / "formats" / "wuhan_copy.txt"


@pytest.fixture()
def tiny(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "tiny", data)
    index = tmp_path / "index"
    r = rag.Retriever.build(data, index, embedder="hash")  # update mechanics need no model
    return data, index, r


def test_add_embeds_only_the_new_article_and_folds_duplicates(tiny):
    data, index, r = tiny
    before = len(r.chunks)
    report = r.add([COPY])
    assert isinstance(report, UpdateReport)
    assert report.added == ["wuhan_copy"] and report.changed == [] and report.removed == []
    assert report.embedded == 1 and report.reused == before
    loaded = rag.Retriever.load(index)
    assert "wuhan_copy" in loaded.articles and loaded.manifest["counts"]["articles"] == 5
    ps = loaded.search("武汉长江新区首批项目签约", k=3)
    hits = [p for p in ps if p.doc_id in ("wuhan", "wuhan_copy")]
    assert len(hits) == 1  # the same story from two outlets is shown once
    assert set(hits[0].also_in) == ({"湖北日报", "长江日报"} - {hits[0].source})
    # adding the same file again changes nothing and embeds nothing
    again = r.add([COPY])
    assert (again.added, again.changed, again.unchanged, again.embedded) == ([], [], 1, 0)


def test_adding_a_changed_article_keeps_every_chunk_with_its_own_vector_and_tokens(tiny):
    """An article edited in place (not the last one) and added again: after a reload, its new
    sentence is found in it, by words and by meaning, and the other articles still find theirs."""
    data, index, r = tiny
    wuhan = data / "wuhan.txt"
    wuhan.write_text(wuhan.read_text(encoding="utf-8") + "\n补充说明：独一无二的测试句子在这里出现。", encoding="utf-8")
    report = r.add([wuhan])
    assert report.changed == ["wuhan"]
    loaded = rag.Retriever.load(index)
    for mode in ("keyword", "dense"):
        best = loaded.search("独一无二的测试句子在这里出现", k=1, mode=mode)[0]
        assert best.doc_id == "wuhan" and "独一无二" in best.text, mode
    best = loaded.search("九江最美岸线绿道", k=1, mode="keyword")[0]
    assert best.doc_id.startswith("jj-") and "绿道" in best.text


def test_remove_deletes_articles_without_embedding(tiny):
    data, index, r = tiny
    report = r.remove(["jj-01", "no-such-id"])
    assert report.removed == ["jj-01"] and report.embedded == 0
    assert report.errors == ["no article with id 'no-such-id' in the index"]
    loaded = rag.Retriever.load(index)
    assert "jj-01" not in loaded.articles and all(c.doc_id != "jj-01" for c in loaded.chunks)
    assert all(p.doc_id != "jj-01" for p in loaded.search("九江最美岸线绿道", k=5))


def test_sync_applies_new_edited_and_deleted_files(tiny):
    data, index, r = tiny
    token = IndexStore(index).generation_token()
    nothing = r.sync(data)
    assert (nothing.added, nothing.changed, nothing.removed, nothing.embedded) == ([], [], [], 0)
    assert IndexStore(index).generation_token() == token  # nothing changed: nothing written

    (data / "jiujiang.jsonl").unlink()
    md = (data / "yichang.md").read_text(encoding="utf-8")
    (data / "yichang.md").write_text(md.replace("46公里", "52公里"), encoding="utf-8")
    shutil.copy(COPY, data / "wuhan_copy.txt")
    report = r.sync(data)
    assert report.added == ["wuhan_copy"]
    assert report.changed == ["yichang"]
    assert report.removed == ["jj-01", "jj-02"]
    assert report.embedded == 2  # the edited chunk and the new one; 'wuhan' is reused
    loaded = rag.Retriever.load(index)
    assert sorted(loaded.articles) == ["wuhan", "wuhan_copy", "yichang"]
    assert "52公里" in loaded.articles["yichang"].text
    assert rag.Retriever.is_stale(data, index, rag.Config(embedder="hash")) is None
    assert r.sync(data).embedded == 0


def test_a_rebuild_over_the_index_reuses_its_vectors_unless_it_is_damaged(tiny, caplog):
    data, index, r = tiny
    again = rag.Retriever.build(data, index, embedder="hash")
    assert (again.build_report.embedded, again.build_report.reused) == (0, len(r.chunks))
    (IndexStore(index).current() / "manifest.json").write_text("{", encoding="utf-8")
    with caplog.at_level("WARNING"):
        fresh = rag.Retriever.build(data, index, embedder="hash")
    assert fresh.build_report.embedded == len(r.chunks) and "not reusing vectors" in caplog.text


def test_with_folding_searches_the_same_index_and_leaves_the_retriever_whole(tiny):
    data, index, r = tiny
    r = r.add([COPY]).retriever
    only = r.with_folding(repeated_text=False)
    assert only is not r and only.engine is r.engine and only.articles is r.articles and only.generation == r.generation
    for searcher in (only, r):  # both fold the other outlet's copy of the story
        hits = [p for p in searcher.search("武汉长江新区首批项目签约", k=3) if p.doc_id in ("wuhan", "wuhan_copy")]
        assert len(hits) == 1 and hits[0].also_in


def test_a_holder_picks_up_a_generation_another_writer_published(tiny):
    data, index, writer = tiny
    reader = rag.Retriever.load(index)
    assert not reader.superseded() and reader.latest() is reader
    writer.add([COPY])
    assert reader.superseded()
    held = reader
    reader = reader.latest()  # the holder swaps its reference; the Retriever it held is unchanged
    assert "wuhan_copy" in reader.articles and not reader.superseded() and reader.latest() is reader
    assert "wuhan_copy" not in held.articles and held.superseded()


def test_check_passes_on_a_whole_index_and_names_the_damage(tiny, capsys):
    data, index, r = tiny
    assert rag.Retriever.check(index) == []
    assert main(["check", str(index)]) == 0
    gen = IndexStore(index).current()
    m = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    m["counts"]["chunks"] += 1
    (gen / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    assert main(["check", str(index)]) == 1
    err = capsys.readouterr().err
    assert "manifest.json: counts" in err and f"rag build --data DATA_DIR --index {index}" in err


def test_check_finds_non_finite_vectors(tiny):
    import numpy as np
    from rag.engines.vector_index import VectorIndex

    data, index, r = tiny
    gen = IndexStore(index).current()
    vecs = VectorIndex.load(gen).vectors()
    vecs[0, 0] = np.nan
    VectorIndex.from_vectors(vecs).save(gen)
    (problem,) = rag.Retriever.check(index)
    assert problem.endswith("vectors.faiss: 1 vectors are not finite")


def test_cli_add_remove_sync(tiny, capsys):
    data, index, r = tiny
    assert main(["add", "--index", str(index), "--json", str(COPY)]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == ["wuhan_copy"]
    assert main(["remove", "--index", str(index), "wuhan_copy"]) == 0
    assert "0 added, 0 changed, 1 removed" in capsys.readouterr().out
    (data / "yichang.md").unlink()
    assert main(["sync", "--index", str(index), "--json", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == ["yichang"]
    assert main(["check", str(index)]) == 0


def test_removing_or_syncing_away_everything_is_refused(tiny):
    data, index, r = tiny
    with pytest.raises(rag.QueryError, match=r"removing 4 article\(s\) would leave the index at .* empty; build a new index"):
        r.remove(sorted(r.articles))
    for f in data.iterdir():
        f.unlink()
    with pytest.raises(rag.SourceError, match=r"data: no articles could be read \(no \.txt.*\); the index is left as it was"):
        r.sync(data)
    assert len(rag.Retriever.load(index).articles) == 4


def test_sync_of_a_file_that_became_unreadable_reports_it(tiny):
    data, index, r = tiny
    (data / "jiujiang.jsonl").write_bytes(b"\x00\x01binary")
    report = r.sync(data)
    assert report.removed == ["jj-01", "jj-02"] and report.unchanged == 2
    assert report.errors and report.errors[0].startswith(f"{data / 'jiujiang.jsonl'}: binary file")


def test_latest_returns_a_new_object_and_leaves_the_old_one_whole(tiny):
    data, index, writer = tiny
    reader = rag.Retriever.load(index)
    assert reader.latest() is reader
    writer.add([COPY])
    fresh = reader.latest()
    assert fresh is not reader and "wuhan_copy" in fresh.articles
    assert "wuhan_copy" not in reader.articles and len(reader.chunks) == reader.engine.size


def test_answer_cites_a_syndicated_story_once_and_lists_the_other_outlet(tiny):
    data, index, r = tiny
    r.add([COPY])
    a = rag.Assistant(rag.Retriever.load(index)).ask("武汉长江新区首批签约了多少个项目？")
    assert a.grounded
    docs = [p.doc_id for p in a.citations]
    assert not {"wuhan", "wuhan_copy"} <= set(docs)  # one of the two copies is cited
    cited = next(p for p in a.citations if p.doc_id in ("wuhan", "wuhan_copy"))
    assert set(cited.also_in) == ({"湖北日报", "长江日报"} - {cited.source})


def test_app_reload_keeps_the_new_generation_out_of_the_collectors_scans(tiny):
    """The app reads a generation another process published in the background, with Python's
    cyclic collector off, and then moves it out of the collector's reach (gc.freeze): neither the
    reading nor later full collections rescan the archive's records while requests wait."""
    import gc

    from rag.config import Config
    from rag.serving.service import Service

    data, index, r = tiny
    svc = Service(data, index, config=Config(embedder="hash"), feedback_dir=index.parent / "feedback")
    gc.unfreeze()
    try:
        svc.start()
        assert gc.isenabled() and gc.get_freeze_count() > 0
        gc.unfreeze()
        extra = data / "new.jsonl"
        extra.write_text('{"id": "new-1", "text": "江岸区新签约一批数字经济项目，总投资超过百亿元。"}\n', encoding="utf-8")
        rag.Retriever.load(index).add(extra)  # another process publishes a generation
        assert gc.get_freeze_count() == 0
        svc.search("数字经济项目")  # notices it, reads it in the background
        fresh = svc.wait_for_reload()
        assert "new-1" in fresh.articles
        assert gc.isenabled() and gc.get_freeze_count() > len(fresh.chunks)
        assert svc.search("数字经济项目", k=1)[0].doc_id == "new-1"
    finally:
        gc.unfreeze()


def test_records_are_read_taking_turns_with_other_threads(monkeypatch):
    from rag import loading

    yields = []
    monkeypatch.setattr(loading.time, "sleep", lambda s: yields.append(s))
    assert list(loading.taking_turns(range(1250), every=500)) == list(range(1250))
    assert yields == [0, 0]  # after the 500th and the 1000th item


def test_a_replaced_generation_is_freed_although_frozen(tiny):
    """The app freezes each generation it loads out of the collector's reach; the one it replaces
    must still be freed (by reference counting) once nothing uses it, or every update would keep
    a whole archive in memory."""
    import gc
    import weakref

    from rag.config import Config
    from rag.serving.service import Service

    data, index, _ = tiny
    svc = Service(data, index, config=Config(embedder="hash"), feedback_dir=index.parent / "feedback")
    try:
        svc.start()
        first = weakref.ref(svc.retriever)
        assert "42万标箱" in svc.ask("九江港集装箱吞吐量是多少？").text  # the assistant has used it
        (data / "new.jsonl").write_text('{"id": "new-1", "text": "江岸区新签约一批数字经济项目，总投资超过百亿元。"}\n',
                                        encoding="utf-8")
        rag.Retriever.load(index).add(data / "new.jsonl")
        svc.search("数字经济项目")
        assert "new-1" in svc.wait_for_reload().articles
        for _ in range(500):  # the reload thread lets go of it as it ends
            if first() is None:
                break
            time.sleep(0.01)
        assert first() is None  # gone without a collection
    finally:
        gc.unfreeze()
