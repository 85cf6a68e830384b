"""The default engine: exact FAISS inner-product search and bm25s, stored in the index generation."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .engine import Engine, Row
from .errors import IndexCorruptError
from .keyword_index import KeywordIndex
from .text import tokenize
from .vector_index import VectorIndex

if TYPE_CHECKING:
    from .config import Config
    from .query import ArticleFilter

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

    def __init__(
        self,
        rows: list[Row],
        vectors: VectorIndex | None,
        keywords: KeywordIndex,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        tokens: list[list[str]] | None = None,
    ) -> None:
        self.rows = rows
        self._vectors = vectors
        self._keywords = keywords
        self._k1, self._b = k1, b
        self._tokens = tokens  # kept when known, so an update does not tokenise every row again
        self._position = {r.key: i for i, r in enumerate(rows)}
        self._masks: dict["ArticleFilter", np.ndarray] = {}

    @classmethod
    def create(cls, config: "Config", index_dir: Path | None, dim: int | None) -> "LocalEngine":
        vectors = VectorIndex.from_vectors(np.zeros((0, dim), np.float32)) if dim else None
        return cls([], vectors, KeywordIndex.build([], k1=config.bm25_k1, b=config.bm25_b),
                   k1=config.bm25_k1, b=config.bm25_b, tokens=[])

    @property
    def size(self) -> int:
        return len(self.rows)

    def _all_tokens(self) -> list[list[str]]:
        if self._tokens is None:
            log.info("tokenising %d stored chunks for the keyword index", len(self.rows))
            self._tokens = [tokenize(r.text) for r in self.rows]
        return self._tokens

    def updated(self, *, delete: Iterable[str] = (), rows: list[Row] = (), vectors=None, tokens=None) -> "LocalEngine":  # type: ignore[assignment]
        rows = list(rows)
        gone = {self._position[k] for k in set(delete) if k in self._position}
        keep = [i for i in range(len(self.rows)) if i not in gone]
        if tokens is None:
            tokens = [tokenize(r.text) for r in rows]
        if len(tokens) != len(rows) or (vectors is not None and len(vectors) != len(rows)):
            raise ValueError(f"{len(rows)} rows need as many token lists and vectors, got {len(tokens)} and "
                             f"{None if vectors is None else len(vectors)}")
        old_tokens = self._all_tokens()
        new_rows = [self.rows[i] for i in keep] + rows
        new_tokens = [old_tokens[i] for i in keep] + list(tokens)
        dense = None
        if self._vectors is not None:
            if vectors is None:
                raise ValueError("this index has dense vectors: updated() needs vectors for the new rows")
            old = self._vectors.vectors()[keep] if keep else np.zeros((0, self._vectors.dim), np.float32)
            dense = VectorIndex.from_vectors(np.vstack([old, np.asarray(vectors, np.float32).reshape(-1, self._vectors.dim)]))
        keywords = KeywordIndex.build(new_tokens, k1=self._k1, b=self._b)
        return type(self)(new_rows, dense, keywords, k1=self._k1, b=self._b, tokens=new_tokens)

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
        matrix = self._vectors.vectors()
        return {k: matrix[p] for k, p in wanted}

    def idf(self, token: str) -> float:
        return self._keywords.idf(token)

    def save(self, folder: Path) -> dict:
        if self._vectors is not None:
            self._vectors.save(folder)
        self._keywords.save(folder)
        return {"name": self.name, "dense": "faiss IndexFlatIP" if self._vectors is not None else None,
                "keyword": "bm25s", "bm25": {"k1": self._k1, "b": self._b}}

    @classmethod
    def load(cls, folder: Path, rows: list[Row], manifest: dict, config: "Config") -> "LocalEngine":
        folder = Path(folder)
        bm25 = (manifest.get("engine") or {}).get("bm25") or {}
        vectors = VectorIndex.load(folder) if manifest.get("dim") else None
        keywords = KeywordIndex.load(folder)
        n_vec = vectors.size if vectors is not None else len(rows)
        if n_vec != len(rows) or keywords.n_docs != len(rows):
            raise IndexCorruptError(
                f"{folder}: {len(rows)} chunk records but {n_vec} vectors and {keywords.n_docs} keyword rows"
            )
        return cls(rows, vectors, keywords, k1=bm25.get("k1", config.bm25_k1), b=bm25.get("b", config.bm25_b))

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
            problems.append(f"{Path(folder) / KeywordIndex.DIR}: {self._keywords.n_docs} keyword rows for {len(rows)} chunks")
        return problems
