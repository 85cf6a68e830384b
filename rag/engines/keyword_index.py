"""Keyword index: BM25 (bm25s) over jieba tokens, persisted beside the vectors."""
from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import IndexCorruptError

__all__ = ["KeywordIndex", "bm25_idf", "top_k"]

log = logging.getLogger(__name__)


def bm25_idf(df: int, n_docs: int) -> float:
    """bm25s's Lucene IDF."""
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def top_k(scores: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, positions) of the ``k`` best positive scores, best first (only ``allowed`` ones)."""
    if allowed is not None:
        scores = np.where(allowed, scores, 0.0)
    k = min(k, len(scores))
    if k <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[scores[top] > 0]
    return scores[top].astype(np.float32), top.astype(np.int64)


def _bm25s():
    """bm25s, with its logger kept at WARNING (it sets itself to DEBUG, which floods every log)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


class KeywordIndex:
    """BM25 over pre-tokenised documents; document ids are row positions.

    Also keeps document frequencies, so callers can weight query terms by IDF.

    Example::

        ki = KeywordIndex.build([["江岸", "签约"], ["宜昌", "开工"]])
        scores, rows = ki.search(["签约"], k=1)
    """

    DIR = "bm25"
    DF_FILE = "df.json"

    def __init__(self, bm25, df: dict[str, int], n_docs: int) -> None:
        self._bm25 = bm25
        self.df = df
        self.n_docs = n_docs

    @classmethod
    def build(cls, docs_tokens: list[list[str]], k1: float = 1.2, b: float = 0.75) -> "KeywordIndex":
        bm25s = _bm25s()
        if not docs_tokens:
            return cls(None, {}, 0)
        bm25 = bm25s.BM25(k1=k1, b=b)
        # an empty document would break bm25s; give it a token that no query produces
        bm25.index([t if t else ["\x00empty"] for t in docs_tokens], show_progress=False)
        df = Counter(tok for toks in docs_tokens for tok in set(toks))
        return cls(bm25, dict(df), len(docs_tokens))

    def idf(self, token: str) -> float:
        """Smoothed inverse document frequency of a token (high for rare or unseen ones)."""
        return float(np.log(1 + (self.n_docs + 1) / (self.df.get(token, 0) + 0.5)))

    def bm25_idf(self, token: str) -> float:
        """The IDF bm25s folded into this index's scores (its Lucene variant)."""
        return bm25_idf(self.df.get(token, 0), self.n_docs)

    def scores(self, tokens: list[str], weight: Callable[[str], float] | None = None) -> np.ndarray:
        """BM25 score of every document (0 where no token occurs); ``weight(token)`` scales a
        token's part (a segment rescales its own IDF to the whole index's)."""
        known = [t for t in tokens if t in self.df]
        if not known or self.n_docs == 0:
            return np.zeros(self.n_docs, np.float32)
        if weight is None:
            return self._bm25.get_scores(known)
        out = np.zeros(self.n_docs, np.float32)
        for token, n in Counter(known).items():
            out += np.float32(n * weight(token)) * self._bm25.get_scores([token])
        return out

    def search(self, tokens: list[str], k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the top-k documents, best first; empty when no token is known."""
        if self.n_docs == 0 or not any(t in self.df for t in tokens):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        return top_k(self.scores(tokens), k, allowed)

    def save(self, folder: Path, name: str = DIR) -> None:
        d = Path(folder) / name
        self._bm25.save(str(d), show_progress=False)
        with open(d / self.DF_FILE, "w", encoding="utf-8") as f:
            json.dump({"n_docs": self.n_docs, "df": self.df}, f, ensure_ascii=False)

    @classmethod
    def load(cls, folder: Path, name: str = DIR) -> "KeywordIndex":
        bm25s = _bm25s()
        d = Path(folder) / name
        try:
            bm25 = bm25s.BM25.load(str(d))
            with open(d / cls.DF_FILE, encoding="utf-8") as f:
                meta = json.load(f)
        except Exception as e:
            raise IndexCorruptError(f"{d}: cannot read the keyword index ({e})") from e
        return cls(bm25, meta["df"], int(meta["n_docs"]))
