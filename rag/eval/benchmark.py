"""Benchmarks: indexing throughput, search and ask latency, memory, index size and cold start.

Example::

    from rag.eval import run_benchmark
    report = run_benchmark("data", queries=["江岸签约了哪些项目？"])
    print(report.table())
"""
from __future__ import annotations

import logging
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .evaluation import percentile

__all__ = ["BenchReport", "run_benchmark", "cold_start_seconds", "import_seconds", "folder_bytes", "peak_rss_mb"]

log = logging.getLogger(__name__)

DEFAULT_QUERIES = (
    "江岸签约了哪些项目？",
    "长江生态环保产业联盟是什么时候成立的？",
    "宜昌市点军区集中开工了几个生态环保项目？",
    "这些项目计划总投资多少？",
    "宝钢黄石新港二期",
    "新能源汽车",
    "2022年营收是多少？",
    "湖北省生态环境厅",
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports maxrss in kB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 1024 / 1024


def folder_bytes(folder: str | Path) -> int:
    """Total size of the files under a folder."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _run_timed(code: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - t0


def cold_start_seconds(index_dir: str | Path, question: str) -> float:
    """Seconds from starting a fresh ``python -c`` to the first answer through the Python API."""
    code = (
        "import rag\n"
        f"a = rag.Assistant(rag.Retriever.load({str(index_dir)!r})).ask({question!r})\n"
        "assert a.text\n"
    )
    return _run_timed(code)


def import_seconds(module: str) -> float:
    """Seconds for a fresh ``python -c 'import <module>'`` (interpreter start included)."""
    return _run_timed(f"import {module}")


@dataclass
class BenchReport:
    """What ``run_benchmark`` measured; ``table()`` for people, ``to_dict()`` for JSON."""

    # like the other reports (BuildReport, the answer tally), typed measures with defaults: alike in shape, by design

    articles: int = 0
    characters: int = 0
    chunks: int = 0
    build_s: float = 0.0
    chars_per_s: float = 0.0
    chunks_per_s: float = 0.0
    embedder_s: float = 0.0
    embedder_chunks_per_s: float = 0.0
    pipeline_overhead: float = 0.0
    index_bytes: int = 0
    search_p50_ms: float = 0.0
    search_p95_ms: float = 0.0
    keyword_search_p50_ms: float = 0.0
    ask_p50_ms: float = 0.0
    ask_p95_ms: float = 0.0
    queries: int = 0
    peak_rss_mb: float = 0.0
    cold_start_s: float = 0.0
    import_gradio_s: float = 0.0
    import_rag_s: float = 0.0
    built: bool = True
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        rows = [("articles / characters / chunks", f"{self.articles} / {self.characters:,} / {self.chunks}")]
        if self.built:
            rows += [
                ("build time", f"{self.build_s:.1f} s"),
                ("indexing throughput", f"{self.chars_per_s:,.0f} chars/s, {self.chunks_per_s:.2f} chunks/s"),
                ("raw embedder on the same chunk texts", f"{self.embedder_s:.1f} s, {self.embedder_chunks_per_s:.2f} chunks/s"),
                ("build time / raw embedding time", f"{self.pipeline_overhead:.2f}x"),
            ]
        rows += [
            ("index size on disk", f"{self.index_bytes / 1e6:.2f} MB"),
            (f"hybrid search latency p50 / p95 ({self.queries} queries)", f"{self.search_p50_ms:.1f} / {self.search_p95_ms:.1f} ms"),
            ("keyword-only search p50", f"{self.keyword_search_p50_ms:.1f} ms"),
            ("ask latency p50 / p95", f"{self.ask_p50_ms:.1f} / {self.ask_p95_ms:.1f} ms"),
            ("peak memory (maxrss)", f"{self.peak_rss_mb:.0f} MB"),
            ("cold start: fresh python → first answer", f"{self.cold_start_s:.2f} s"),
            ("bare `import rag`", f"{self.import_rag_s:.2f} s"),
            ("bare `import gradio`", f"{self.import_gradio_s:.2f} s"),
        ]
        out = ["| measure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
        return "\n".join(out + [f"- {n}" for n in self.notes])


def run_benchmark(
    data_dir: str | Path,
    index_dir: str | Path | None = None,
    *,
    queries: list[str] | None = None,
    repeats: int = 3,
    show_progress: bool = False,
    cold_start: bool = True,
) -> BenchReport:
    """Build (or load, when ``index_dir`` already holds an index) and time the pipeline.

    With no ``index_dir`` the index is built in a temporary folder. Building also times the
    bare embedder on the same chunk texts, so the ratio shows what the pipeline adds.
    """
    queries = list(queries or DEFAULT_QUERIES)
    rep = BenchReport(queries=len(queries) * repeats)
    tmp = None
    if index_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="rag-bench-")
        index_dir = Path(tmp.name) / "index"
    try:
        r = _built_or_loaded(data_dir, index_dir, rep, show_progress)
        rep.articles = len(r.articles)
        rep.chunks = len(r.chunks)
        rep.characters = sum(len(a.text) for a in r.articles.values())
        if rep.built and rep.build_s:
            rep.chars_per_s = rep.characters / rep.build_s
            rep.chunks_per_s = rep.chunks / rep.build_s
        rep.index_bytes = folder_bytes(index_dir)
        _time_queries(r, queries, repeats, rep, show_progress)
        rep.peak_rss_mb = peak_rss_mb()
        if cold_start:
            rep.cold_start_s = cold_start_seconds(index_dir, queries[0])
            rep.import_rag_s = import_seconds("rag")
            rep.import_gradio_s = import_seconds("gradio")
    finally:
        if tmp is not None:
            tmp.cleanup()
    log.info("benchmark done: %s", rep)
    return rep


def _built_or_loaded(data_dir: str | Path, index_dir: str | Path, rep: BenchReport, show_progress: bool):
    """The Retriever of ``index_dir``: loaded when it holds an index, else built from ``data_dir``
    with the build and the bare embedder on the same chunk texts timed into ``rep``."""
    from ..engines.store import IndexStore
    from ..reading.chunking import embed_text
    from ..search.retrieval import Retriever
    from ..text import fold

    if IndexStore(index_dir).exists():
        rep.built = False
        rep.notes.append(f"index at {index_dir} loaded, not rebuilt: no indexing throughput")
        return Retriever.load(index_dir)
    t0 = time.perf_counter()
    r = Retriever.build(data_dir, index_dir, show_progress=show_progress)
    rep.build_s = time.perf_counter() - t0
    texts = [fold(embed_text(c, title_in_chunk=r.config.title_in_chunk)) for c in r.chunks]
    unique = list(dict.fromkeys(texts))
    t0 = time.perf_counter()
    r.embedder.embed_documents(unique, show_progress=show_progress)
    rep.embedder_s = time.perf_counter() - t0
    rep.embedder_chunks_per_s = len(unique) / rep.embedder_s if rep.embedder_s else 0.0
    rep.pipeline_overhead = rep.build_s / rep.embedder_s if rep.embedder_s else 0.0
    return r


def _time_queries(r, queries: list[str], repeats: int, rep: BenchReport, show_progress: bool) -> None:
    """Hybrid search, keyword search and ask, each query ``repeats`` times, p50 / p95 into ``rep``."""
    from ..answering.assistant import Assistant

    work = [q for _ in range(repeats) for q in queries]
    if show_progress:
        from tqdm.auto import tqdm

        work = tqdm(work, desc="timing queries", unit="query")
    search, kw, ask = [], [], []
    assistant = Assistant(r)
    r.search(queries[0])  # warm up (lazy model and tokenizer loading is cold start, measured below)
    for q in work:
        t0 = time.perf_counter()
        r.search(q, k=5)
        search.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        r.search(q, k=5, mode="keyword")
        kw.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        assistant.ask(q)
        ask.append(time.perf_counter() - t0)
    rep.search_p50_ms, rep.search_p95_ms = percentile(search, 50) * 1000, percentile(search, 95) * 1000
    rep.keyword_search_p50_ms = percentile(kw, 50) * 1000
    rep.ask_p50_ms, rep.ask_p95_ms = percentile(ask, 50) * 1000, percentile(ask, 95) * 1000


def keyword_benchmark(data_dir: str | Path, queries: list[str], *, show_progress: bool = False) -> dict:
    """Keyword-only (BM25) index build and search timings over a corpus too big to embed here."""
    from .evaluation import keyword_only_retriever

    t0 = time.perf_counter()
    r, stats = keyword_only_retriever(data_dir, show_progress=show_progress)
    stats["build_s"] = time.perf_counter() - t0
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        r.search(q, k=10, mode="keyword")
        lat.append(time.perf_counter() - t0)
    stats.update(
        {
            "queries": len(queries),
            "keyword_search_p50_ms": percentile(lat, 50) * 1000,
            "keyword_search_p95_ms": percentile(lat, 95) * 1000,
            "peak_rss_mb": peak_rss_mb(),
            "index_chars_per_s": stats["characters"] / stats["index_s"] if stats["index_s"] else 0.0,
        }
    )
    return stats
