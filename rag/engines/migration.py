"""Migration: move an index into another engine (local FAISS + bm25s ↔ Milvus) without re-embedding."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Config
from .base import engine_class, engine_of
from ..errors import ConfigError, IndexCorruptError
from .indexing import rows_of
from .store import IndexStore
from ..text import tokenize

__all__ = ["MigrationReport", "migrate"]

log = logging.getLogger(__name__)


@dataclass
class MigrationReport:
    """What ``migrate`` moved: rows (with vectors when the index is dense) from one engine to another."""

    source: str
    target: str
    rows: int
    seconds: float
    generation: str

    def summary(self) -> str:
        return f"{self.rows} chunks moved from engine {self.source!r} to {self.target!r} in {self.seconds:.1f} s"


def _same_uri(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def migrate(index_dir: str | Path, config: Config) -> MigrationReport:
    """Copy the live generation's rows, vectors and tokens into ``config.engine`` and publish
    them as a new generation of the same index (records and manifest otherwise unchanged).

    The stored vectors are reused as they are, so no embedder is loaded. The source engine's
    settings come from the manifest (a Milvus source is opened with ``config.milvus_token``).

    Example::

        migrate("index", Config(engine="milvus", milvus_uri="http://milvus:19530"))
    """
    t0 = time.perf_counter()
    store = IndexStore(index_dir)
    with store.lock():
        gen = store.current()
        manifest = store.manifest()
        saved = manifest.get("engine") or {}
        source = engine_of(manifest)
        if source == config.engine and (source != "milvus" or _same_uri(saved.get("uri", ""), config.milvus_uri)):
            raise ConfigError(f"index at {index_dir} is already in engine {source!r}"
                              + (f" at {config.milvus_uri}" if source == "milvus" else ""))
        dim = manifest.get("dim")
        chunking = {k: v for k, v in manifest.get("chunking", {}).items() if hasattr(config, k)}
        source_config = Config(engine=source, dense=dim is not None, milvus_uri=saved.get("uri", ""),
                               milvus_token=config.milvus_token, **chunking)
        articles, chunks = store.read_records(gen)
        rows = rows_of(chunks, articles, source_config)
        old = engine_class(source).load(gen, rows, manifest, source_config)
        vectors = None
        if dim is not None:
            by_key = old.vectors(r.key for r in rows)
            missing = [r.key for r in rows if r.key not in by_key]
            if missing:
                raise IndexCorruptError(f"{gen}: engine {source!r} has no vectors for {len(missing)} chunks "
                                        f"(e.g. {missing[0]}); run `rag check {index_dir}`")
            vectors = np.stack([by_key[r.key] for r in rows]) if rows else np.zeros((0, dim), np.float32)
        target_config = config.with_(dense=dim is not None, **chunking)
        engine = engine_class(config.engine).create(target_config, Path(index_dir), dim)
        engine = engine.updated(rows=rows, vectors=vectors, tokens=[tokenize(r.text) for r in rows])
        manifest = dict(manifest)
        manifest["migrated"] = {"from": source, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        token = store.write(articles.values(), chunks, manifest, engine.save)
    report = MigrationReport(source, config.engine, len(rows), time.perf_counter() - t0, token)
    log.info("migrate %s: %s", index_dir, report.summary())
    return report
