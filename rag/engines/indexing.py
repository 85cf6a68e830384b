"""Indexing: articles → chunks → rows with vectors (only for chunks not seen before) and tokens → engine."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import numpy as np

from ..reading.chunking import embed_text
from ..config import Config
from .base import Engine, Row, engine_class, engine_of
from .store import IndexStore
from ..records import Article, Chunk
from ..loading import taking_turns
from ..text import fold, tokenize

if TYPE_CHECKING:
    from ..embedding import Embedder

__all__ = ["BuildReport", "UpdateReport", "row_key", "rows_of", "index_changes", "reusable_vectors", "timed"]

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did."""

    # like the other reports and settings records (UpdateReport, BenchReport, FusionParams), a
    # list of typed counters with defaults: alike in shape, by design

    articles: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    errors: list[str] | None = None
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage: reading, chunking, embedding, …

    def summary(self) -> str:
        split = ", ".join(f"{k} {v:.1f} s" for k, v in self.stages.items())
        return (
            f"{self.articles} articles, {self.chunks} chunks ({self.embedded} embedded, {self.reused} reused) "
            f"in {self.seconds:.1f} s" + (f" ({split})" if split else "")
            + (f"; {len(self.errors)} file error(s)" if self.errors else "")
        )


@contextmanager
def timed(stages: dict[str, float] | None, name: str) -> Iterator[None]:
    """Add the seconds the block takes to ``stages[name]`` (nothing when ``stages`` is None)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if stages is not None:
            stages[name] = stages.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class UpdateReport:
    """What ``Retriever.add`` / ``remove`` / ``sync`` changed (article ids) and what it cost.

    ``retriever`` is the updated Retriever (the one the call was made on is left as it was).
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    retriever: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(replace(self, retriever=None)).items() if k != "retriever"}

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged; {self.embedded} chunks embedded, {self.reused} reused in {self.seconds:.1f} s"
            + (f"; {len(self.errors)} error(s)" if self.errors else "")
        )


def row_key(chunk: Chunk) -> str:
    """The chunk's unique key in the engine (identical chunks of two articles share ``chunk.id``)."""
    return f"{chunk.doc_id}@{chunk.start}"


def rows_of(chunks: Iterable[Chunk], articles: Mapping[str, Article], config: Config) -> list[Row]:
    rows = []
    for c in taking_turns(chunks):
        a = articles[c.doc_id]
        rows.append(Row(key=row_key(c), chunk_id=c.id, doc_id=c.doc_id, source=a.source, date=a.date,
                        text=embed_text(c, title_in_chunk=config.title_in_chunk)))
    return rows


def index_changes(
    engine: Engine,
    *,
    removed_chunks: list[Chunk],
    new_chunks: list[Chunk],
    articles: Mapping[str, Article],
    config: Config,
    embedder: "Embedder | None",
    known: Mapping[str, np.ndarray],
    show_progress: bool = False,
    stages: dict[str, float] | None = None,
) -> tuple[Engine, int, int]:
    """The engine after dropping ``removed_chunks`` and adding ``new_chunks``; returns it with the
    number of chunks embedded and reused. ``known``: chunk id → vector already computed;
    ``stages`` (optional) gets the seconds of embedding, tokenising and indexing."""
    rows = rows_of(new_chunks, articles, config)
    vectors = None
    embedded = 0
    if embedder is not None:
        todo: dict[str, str] = {}
        for r in rows:
            if r.chunk_id not in known and r.chunk_id not in todo:
                todo[r.chunk_id] = fold(r.text)
        fresh: dict[str, np.ndarray] = {}
        if todo:
            log.info("embedding %d chunks (%d reused)", len(todo), len(rows) - len(todo))
            with timed(stages, "embedding"):
                fresh = dict(zip(todo, embedder.embed_documents(list(todo.values()), show_progress=show_progress)))
        embedded = len(todo)
        vectors = np.zeros((len(rows), embedder.dim), dtype=np.float32)
        for i, r in enumerate(rows):
            vectors[i] = fresh[r.chunk_id] if r.chunk_id in fresh else known[r.chunk_id]
    with timed(stages, "tokenising"):
        tokens = [tokenize(r.text) for r in rows]
    with timed(stages, "indexing"):
        engine = engine.updated(delete=[row_key(c) for c in removed_chunks], rows=rows, vectors=vectors, tokens=tokens)
    return engine, embedded, len(rows) - embedded


def reusable_vectors(index_dir: Path | None, identity: dict | None, config: Config) -> dict[str, np.ndarray]:
    """chunk id → vector from the index already at ``index_dir`` when it used the same embedder."""
    if index_dir is None or not IndexStore(index_dir).exists():
        return {}
    store = IndexStore(index_dir)
    try:
        manifest = store.manifest()
        if manifest.get("embedder") != identity or engine_of(manifest) != config.engine:
            return {}
        gen = store.current()
        articles, chunks = store.read_records(gen)
        engine = engine_class(config.engine).load(gen, rows_of(chunks, articles, config), manifest, config)
        by_key = engine.vectors(row_key(c) for c in chunks)
    except Exception as e:  # a damaged old index only means nothing to reuse
        log.warning("not reusing vectors from %s: %s", index_dir, e)
        return {}
    return {c.id: by_key[row_key(c)] for c in chunks if row_key(c) in by_key}
