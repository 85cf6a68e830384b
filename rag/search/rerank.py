"""The reranking stage: the fused passages reordered by trees learned from real news questions.

The question is read together with each of the best ``DEPTH`` fused passages and its whole
article (``rag.search.rerank_features``: topic words and character runs of the question found in
the passage, its best sentence, its title and its article; dates and numbers the question names;
each retriever's evidence). Gradient-boosted trees (LightGBM lambdarank, trained here by
``scripts/train_rerank.py``; weights and model card in ``rag/search/rerank_model/``) score them,
numpy only. Off with ``RAG_RERANK=0``.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import RagError
from ..query import Query
from ..records import Passage
from ..text import normalize
from ..trees import Trees
from .rerank_features import FEATURE_NAMES, ArticleView, rerank_features

__all__ = ["Reranker", "RerankModel", "DEPTH", "MODEL_DIR", "for_retriever"]

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "rerank_model"
DEPTH = 40  # fused passages read per question
FORMAT_VERSION = 1


class RerankModel:
    """The trees and their card; ``score(X)`` ranks feature rows (higher first)."""

    def __init__(self, trees: Trees, meta: dict | None = None):
        self.trees = trees
        self.meta = meta or {}

    def score(self, X: np.ndarray) -> np.ndarray:
        return self.trees.predict(X)

    @classmethod
    def from_lightgbm(cls, dump: dict) -> "RerankModel":
        return cls(Trees.from_lightgbm(dump, FEATURE_NAMES))

    def save(self, folder: str | Path, meta: dict) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "trees.npz", **self.trees.to_arrays())
        info = {"format_version": FORMAT_VERSION, "features": FEATURE_NAMES, **meta}
        (folder / "rerank.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "RerankModel":
        folder = Path(folder) if folder is not None else MODEL_DIR
        try:
            meta = json.loads((folder / "rerank.json").read_text(encoding="utf-8"))
            with np.load(folder / "trees.npz") as d:
                trees = Trees.from_arrays(d)
        except (OSError, ValueError, KeyError) as e:
            raise RagError(f"cannot load the reranker from {folder}: {e}; retrain it with scripts/train_rerank.py "
                           "or turn it off with RAG_RERANK=0") from e
        if meta.get("format_version") != FORMAT_VERSION or meta.get("features") != FEATURE_NAMES:
            raise RagError(f"{folder / 'rerank.json'}: its feature list does not match this code; retrain it with "
                           "scripts/train_rerank.py or turn it off with RAG_RERANK=0")
        return cls(trees, meta)


@lru_cache(maxsize=1)
def _shipped() -> RerankModel:
    return RerankModel.load()


class Reranker:
    """A search stage: ``reranker(query, passages)`` returns the passages, the first ``depth``
    reordered by the model (each with the model's score squashed to 0–1), the rest after them.

    Example::

        stage = Reranker.for_retriever(retriever)
        passages = stage(rag.Query.of("保险公司已支付了多少赔款？"), fused_passages)
    """

    name = "rerank"

    def __init__(self, model: RerankModel | None, idf: Callable[[str], float],
                 article: Callable[[str], ArticleView], depth: int = DEPTH):
        self.model = model
        self.idf = idf
        self.article = article
        self.depth = depth

    @classmethod
    def for_retriever(cls, retriever, model: RerankModel | None | str = "shipped", depth: int = DEPTH) -> "Reranker":
        """The stage over ``retriever``'s articles and word statistics, with the shipped model
        (``model=None``: features only, for training)."""
        articles = retriever.articles

        @lru_cache(maxsize=4096)
        def article(doc_id: str) -> ArticleView:
            a = articles[doc_id]
            return ArticleView(normalize(a.text), normalize(a.title or ""), a.date)

        # the engine's idf, not the Retriever's method: a stage holding its Retriever would make a
        # reference cycle, and a replaced generation must be freed by reference counting alone
        return cls(_shipped() if model == "shipped" else model, retriever.engine.idf, article, depth)

    def features(self, query: Query, passages: list[Passage]) -> np.ndarray:
        return rerank_features(query, passages, self.idf, self.article)

    def __call__(self, query: Query, passages: list[Passage]) -> list[Passage]:
        if self.model is None or len(passages) < 2:
            return passages
        head, tail = passages[: self.depth], passages[self.depth:]
        scores = self.model.score(self.features(query, head))
        order = np.argsort(-scores, kind="stable")
        ranked = [replace(head[i], score=round(1.0 / (1.0 + math.exp(-float(scores[i]))), 6)) for i in order]
        floor = ranked[-1].score
        return ranked + [replace(p, score=min(p.score, floor)) for p in tail]


def for_retriever(retriever) -> Reranker:
    """The search stage ``rerank`` (``rag.search.stages.STAGES``) over ``retriever``."""
    return Reranker.for_retriever(retriever)
