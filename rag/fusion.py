"""Fusion: weighted reciprocal rank fusion of the dense and keyword rankings, keeping each one's evidence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Candidate", "fuse"]


@dataclass(frozen=True)
class Candidate:
    """A fused result: the row key, its fused score and what each retriever said of it."""

    key: str
    score: float
    dense_score: float | None = None
    dense_rank: int | None = None
    keyword_score: float | None = None
    keyword_rank: int | None = None


def fuse(
    dense: list[tuple[str, float]],
    keyword: list[tuple[str, float]],
    *,
    dense_weight: float = 1.0,
    keyword_weight: float = 1.0,
    rrf_k: int = 60,
    boost: Callable[[str], bool] | None = None,
) -> list[Candidate]:
    """Rows of both rankings (best first), scored ``Σ weight / (rrf_k + rank + 1)``.

    ``boost(key)`` True lifts a row by half of a first place in one ranking (a question naming
    a year prefers that year's articles). Ties keep dense order, then keyword order.
    """
    evidence: dict[str, dict] = {}
    for rank, (key, score) in enumerate(dense):
        evidence.setdefault(key, {})["dense"] = (score, rank)
    for rank, (key, score) in enumerate(keyword):
        evidence.setdefault(key, {})["keyword"] = (score, rank)
    order = {key: i for i, key in enumerate(evidence)}
    out: list[Candidate] = []
    for key, ev in evidence.items():
        score = 0.0
        if "dense" in ev:
            score += dense_weight / (rrf_k + ev["dense"][1] + 1)
        if "keyword" in ev:
            score += keyword_weight / (rrf_k + ev["keyword"][1] + 1)
        if boost is not None and boost(key):
            score += 0.5 / (rrf_k + 1)
        d, kw = ev.get("dense"), ev.get("keyword")
        out.append(Candidate(
            key=key, score=score,
            dense_score=d[0] if d else None, dense_rank=d[1] if d else None,
            keyword_score=kw[0] if kw else None, keyword_rank=kw[1] if kw else None,
        ))
    out.sort(key=lambda c: (-c.score, order[c.key]))
    return out
