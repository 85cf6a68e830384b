"""rag.serving.service: Gradio history normalisation, index lifecycle and its errors (writes and feedback: test_trust.py)."""
from __future__ import annotations

import pytest

import rag
from rag.serving.service import Service, history_messages


def test_history_accepts_gradio_content_parts():
    h = [{"role": "user", "content": [{"type": "text", "text": "江岸"}, {"type": "text", "text": "签约"}]},
         {"role": "assistant", "content": "好的"}]
    assert history_messages(h) == [{"role": "user", "content": "江岸签约"}, {"role": "assistant", "content": "好的"}]
    assert history_messages(None) == []
    with pytest.raises(rag.QueryError, match="history must be a list"):
        history_messages("hi")


def test_requests_before_start_are_not_ready(tmp_path):
    svc = Service(tmp_path / "data", tmp_path / "index", feedback_dir=tmp_path)
    with pytest.raises(rag.NotReadyError, match="still loading"):
        svc.search("江岸")
    assert svc.sources() == [] and not svc.ready


def test_failed_build_is_reported_to_requests(tmp_path):
    (tmp_path / "data").mkdir()
    svc = Service(tmp_path / "data", tmp_path / "index", feedback_dir=tmp_path)
    svc.start_in_background().join(60)
    assert not svc.ready and "索引不可用" in svc.status
    with pytest.raises(rag.NotReadyError, match="no articles could be read"):
        svc.ask("江岸签约了哪些项目？")


def test_loads_a_fresh_index_without_rebuilding(seed_index, tmp_path, caplog):
    from conftest import SEEDS

    svc = Service(SEEDS, seed_index, feedback_dir=tmp_path)
    with caplog.at_level("INFO", logger="rag.serving.service"):
        svc.start()
    assert svc.ready and "loading index" in caplog.text and "building" not in caplog.text
    assert svc.sources() == ["大江网", "央广网", "江阴日报", "长江日报"]
    assert svc.ask("江岸签约了哪些项目？", k=2).grounded


def test_feedback_rejects_unknown_votes(tmp_path):
    svc = Service(tmp_path, tmp_path, feedback_dir=tmp_path / "fb")
    with pytest.raises(rag.QueryError, match="vote must be 'up' or 'down'"):
        svc.feedback("q", "a", [], "maybe")
    assert svc.feedback("q", "a", [], "up") == tmp_path / "fb" / "feedback.jsonl"


def test_serves_a_generation_another_writer_published_and_leaves_the_old_one_whole(tmp_path):
    import shutil

    from conftest import TEST_DATA

    data, index = tmp_path / "data", tmp_path / "index"
    shutil.copytree(TEST_DATA / "tiny", data)
    config = rag.Config(embedder="hash")  # the lifecycle needs no model
    rag.Retriever.build(data, index, config=config)
    svc = Service(data, index, config=config, feedback_dir=tmp_path / "fb")
    svc.start()
    before = svc.live_retriever()
    assert not svc.reloading and svc.live_retriever() is before
    n = len(before.articles)
    rag.Retriever.load(index, config=config).add([TEST_DATA / "formats" / "wuhan_copy.txt"])  # another writer
    assert svc.live_retriever() is before  # noticed: the new generation loads in the background
    after = svc.wait_for_reload()
    assert not svc.reloading and after is not before and svc.live_retriever() is after
    assert "wuhan_copy" in after.articles and f"{n + 1} 篇文章" in svc.status
    assert "wuhan_copy" not in before.articles and len(before.articles) == n and before.search("武汉长江新区", k=2)
