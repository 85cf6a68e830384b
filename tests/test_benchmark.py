"""rag.eval.benchmark: run_benchmark on an index that exists (loaded and timed, not rebuilt)."""
from __future__ import annotations

import rag
from rag.eval.benchmark import run_benchmark

from conftest import TEST_DATA


def test_an_existing_index_is_loaded_and_timed_not_rebuilt(tmp_path):
    index = tmp_path / "index"
    rag.Retriever.build(TEST_DATA / "tiny", index, embedder="hash")  # the timing needs no model
    rep = run_benchmark(TEST_DATA / "tiny", index, queries=["江岸签约了哪些项目？", "九江绿道"], repeats=2, cold_start=False)
    assert not rep.built and rep.build_s == 0.0 and "loaded, not rebuilt" in rep.notes[0]
    assert (rep.articles, rep.chunks, rep.queries) == (4, 4, 4) and rep.index_bytes > 0
    assert 0 < rep.search_p50_ms <= rep.search_p95_ms and rep.keyword_search_p50_ms > 0 and rep.ask_p50_ms > 0
    assert "build time" not in rep.table() and "hybrid search latency p50 / p95 (4 queries)" in rep.table()
