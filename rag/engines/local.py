"""The default engine: exact FAISS inner-product search and bm25s, stored in the index generation."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .base import Engine, Row
from ..errors import IndexCorruptError
from .keyword_segments import KeywordSegments
from ..loading import taking_turns
from ..text import tokenize
from .vector_index import VectorIndex

if TYPE_CHECKING:
    from ..config import Config
    from ..query import ArticleFilter

__all__ = ["LocalEngine"]

log = logging.getLogger(__name__)


class LocalEngine(Engine):
    """FAISS (``vectors.faiss``) and BM25 (``bm25/``) files beside the chunk records; rows are
    addressed by position internally and by ``Row.key`` outside.

    Example::

        e = LocalEngine.create(Config(), None, dim=3).updated(rows=rows, vectors=vecs, tokens=toks)
        e.keyword_search(["签约"], k=3)       # [(key, score), ...]
    """

    name = "local"

    def __init__(self, rows: list[Row], vectors: VectorIndex | None, keywords: KeywordSegments) -> None:
        self.rows = rows
        self._vectors = vectors
        self._keywords = keywords
        self._position = {r.key: i for i, r in enumerate(taking_turns(rows))}
        self._masks: dict["ArticleFilter", np.ndarray] = {}

    @classmethod
    def create(cls, config: "Config", index_dir: Path | None, dim: int | None) -> "LocalEngine":
        vectors = VectorIndex.from_vectors(np.zeros((0, dim), np.float32), config.vector_storage) if dim else None
        return cls([], vectors, KeywordSegments.build([], k1=config.bm25_k1, b=config.bm25_b))

    @property
    def size(self) -> int:
        return len(self.rows)

    def updated(self, *, delete: Iterable[str] = (), rows: list[Row] = (), vectors=None, tokens=None) -> "LocalEngine":  # type: ignore[assignment]
        """New rows are appended (a keyword segment of their own); deleted rows leave the others in order."""
        rows = list(rows)
        gone = {self._position[k] for k in set(delete) if k in self._position}
        keep = np.array([i for i in range(len(self.rows)) if i not in gone], dtype=np.int64)
        if tokens is None:
            tokens = [tokenize(r.text) for r in rows]
        if len(tokens) != len(rows) or (vectors is not None and len(vectors) != len(rows)):
            raise ValueError(f"{len(rows)} rows need as many token lists and vectors, got {len(tokens)} and "
                             f"{None if vectors is None else len(vectors)}")
        new_rows = [self.rows[i] for i in keep] + rows
        dense = None
        if self._vectors is not None:
            if vectors is None:
                raise ValueError("this index has dense vectors: updated() needs vectors for the new rows")
            dense = self._vectors.updated(keep, np.asarray(vectors, np.float32).reshape(-1, self._vectors.dim))

        def tokens_of(positions: np.ndarray) -> list[list[str]]:
            log.info("tokenising %d stored chunks for a keyword segment", len(positions))
            return [tokenize(new_rows[int(p)].text) for p in positions]

        def gone_tokens_of(positions: np.ndarray) -> list[list[str]]:
            return [tokenize(self.rows[int(p)].text) for p in positions]

        keywords = self._keywords.updated(keep, list(tokens), tokens_of, gone_tokens_of)
        return type(self)(new_rows, dense, keywords)

    def _mask(self, where: "ArticleFilter | None") -> np.ndarray | None:
        if where is None:
            return None
        mask = self._masks.get(where)
        if mask is None:
            if len(self._masks) > 64:
                self._masks.clear()
            mask = self._masks[where] = np.array([where.allows(r.source, r.date) for r in self.rows], dtype=bool)
        return mask

    def dense_search(self, vector: np.ndarray, k: int, where: "ArticleFilter | None" = None) -> list[tuple[str, float]]:
        if self._vectors is None or not self.rows:
            return []
        scores, pos = self._vectors.search(np.asarray(vector, np.float32).reshape(1, -1), k, allowed=self._mask(where))
        return [(self.rows[int(p)].key, float(s)) for p, s in zip(pos[0], scores[0]) if p >= 0]

    def keyword_search(self, tokens: list[str], k: int, where: "ArticleFilter | None" = None) -> list[tuple[str, float]]:
        if not self.rows:
            return []
        scores, pos = self._keywords.search(tokens, k, allowed=self._mask(where))
        return [(self.rows[int(p)].key, float(s)) for p, s in zip(pos, scores)]

    def vectors(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        if self._vectors is None:
            return {}
        wanted = [(k, self._position[k]) for k in keys if k in self._position]
        if not wanted:
            return {}
        matrix = self._vectors.rows(np.array([p for _, p in wanted], dtype=np.int64))
        return {k: matrix[i] for i, (k, _) in enumerate(wanted)}

    def idf(self, token: str) -> float:
        return self._keywords.idf(token)

    def save(self, folder: Path) -> dict:
        if self._vectors is not None:
            self._vectors.save(folder)
        segments = self._keywords.save(folder)
        return {"name": self.name, "dense": self._vectors.describe() if self._vectors is not None else None,
                "keyword": "bm25s", "bm25": {"k1": self._keywords.k1, "b": self._keywords.b}, "keyword_segments": segments}

    @classmethod
    def load(cls, folder: Path, rows: list[Row], manifest: dict, config: "Config") -> "LocalEngine":
        folder = Path(folder)
        bm25 = (manifest.get("engine") or {}).get("bm25") or {}
        vectors = VectorIndex.load(folder) if manifest.get("dim") else None
        keywords = KeywordSegments.load(folder, k1=bm25.get("k1", config.bm25_k1), b=bm25.get("b", config.bm25_b))
        n_vec = vectors.size if vectors is not None else len(rows)
        if n_vec != len(rows) or keywords.n_docs != len(rows):
            raise IndexCorruptError(
                f"{folder}: {len(rows)} chunk records but {n_vec} vectors and {keywords.n_docs} keyword rows"
            )
        return cls(rows, vectors, keywords)

    def check(self, rows: list[Row], folder: Path) -> list[str]:
        problems: list[str] = []
        if self._vectors is not None:
            vecs = self._vectors.vectors()
            where = Path(folder) / VectorIndex.FILE
            if len(vecs) != len(rows):
                problems.append(f"{where}: {len(vecs)} vectors for {len(rows)} chunks")
            if not np.isfinite(vecs).all():
                problems.append(f"{where}: {int((~np.isfinite(vecs).all(axis=1)).sum())} vectors are not finite")
            elif len(vecs) and not np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3):
                problems.append(f"{where}: vectors are not unit length")
        if self._keywords.n_docs != len(rows):
            problems.append(f"{Path(folder) / KeywordSegments.FILE}: {self._keywords.n_docs} keyword rows for {len(rows)} chunks")
        return problems
