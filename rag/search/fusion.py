"""Fusion: the dense and keyword rankings merged into one, keeping each retriever's evidence."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["Candidate", "FUSION", "FusionParams", "Method", "fuse", "fuse_rrf", "fuse_scores"]

Method = Literal["score", "rrf"]


@dataclass(frozen=True)
class Candidate:
    """A fused result: the row key, its fused score and what each retriever said of it."""

    key: str
    score: float
    dense_score: float | None = None
    dense_rank: int | None = None
    keyword_score: float | None = None
    keyword_rank: int | None = None


def _floor(ranking: list[tuple[str, float]], depth: int) -> float:
    """The score of the ``depth``-th candidate (or the last): the most a row not returned can have."""
    return ranking[min(depth, len(ranking)) - 1][1] if ranking else 0.0


def _dense_scale(dense: list[tuple[str, float]], depth: int, scale: float) -> Callable[[float], float]:
    """Cosine → [0, 1]: 0 at the ``depth``-th candidate and below, 1 from ``scale`` above it."""
    floor = _floor(dense, depth)
    return lambda s: min(1.0, max(0.0, (s - floor) / scale))


def _keyword_scale(keyword: list[tuple[str, float]], depth: int) -> Callable[[float | None], float]:
    """BM25 → [0, 1]: over the best BM25 of the query; a row not returned (None) or below the
    ``depth``-th candidate counts as that candidate."""
    top, floor = (keyword[0][1] if keyword else 0.0), max(_floor(keyword, depth), 0.0)
    return lambda s: 0.0 if top <= 0 else max(floor, s if s is not None else floor) / top

YEAR_LIFT = 0.25  # a quarter of the best possible score: a year named in the question outweighs a small lead

Ranking = list[tuple[str, float]]  # (row key, score), best first


@dataclass(frozen=True)
class FusionParams:
    """The settings fusion reads (each method its own; defaults as in Config)."""

    # like other settings records (Config, reports), a list of typed fields with defaults

    dense_share: float = 0.8
    dense_scale: float = 0.08
    depth: int = 50
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    rrf_k: int = 60

    @classmethod
    def of(cls, config: "Config", hybrid: bool = True) -> "FusionParams":
        """The settings of ``config``; one ranking alone (not ``hybrid``) is not weighted."""
        return cls(dense_share=config.dense_share, dense_scale=config.dense_scale,
                   depth=min(config.dense_candidates, config.keyword_candidates), rrf_k=config.rrf_k,
                   dense_weight=config.dense_weight if hybrid else 1.0,
                   keyword_weight=config.keyword_weight if hybrid else 1.0)


def _evidence(dense: Ranking, keyword: Ranking) -> dict[str, dict[str, tuple[float, int]]]:
    """Each row of either ranking → what each retriever said of it, ``(score, rank)``; rows in
    dense order, then the keyword side's new ones (the order ties keep)."""
    evidence: dict[str, dict] = {}
    for rank, (key, score) in enumerate(dense):
        evidence.setdefault(key, {})["dense"] = (score, rank)
    for rank, (key, score) in enumerate(keyword):
        evidence.setdefault(key, {})["keyword"] = (score, rank)
    return evidence


def _candidate(key: str, score: float, ev: dict) -> Candidate:
    d, kw = ev.get("dense"), ev.get("keyword")
    return Candidate(key=key, score=score, dense_score=d[0] if d else None, dense_rank=d[1] if d else None,
                     keyword_score=kw[0] if kw else None, keyword_rank=kw[1] if kw else None)


def fuse_scores(dense: Ranking, keyword: Ranking, params: FusionParams = FusionParams(), *,
                boost: Callable[[str], bool] | None = None,
                article_of: Callable[[str], str] | None = None) -> list[Candidate]:
    """Score fusion (the default): the two scores on a common scale, ``w * d + (1 - w) * k``:

    - ``k``: BM25 over the query's best BM25;
    - ``d``: how far the cosine is above the ``depth``-th candidate's, over ``dense_scale``
      (capped at 1);
    - ``w = dense_share * min(1, spread / dense_scale) ** 2``, spread being the best cosine
      above the ``depth``-th: when the dense candidates all lie in a narrow band (many similar
      news stories), the dense side is unsure and barely counts; with a clear winner it
      counts in full.

    A row one retriever did not return gets what that retriever's ``depth``-th candidate got
    (the most it can have). ``boost(key)`` True adds ``YEAR_LIFT`` (a question naming a year prefers
    that year's articles).

    With ``article_of(key)``, articles are ranked, not chunks: an article's score is the same
    formula over its best cosine and its best BM25 among the candidates (and its lift), so an
    article whose best keyword chunk and best dense chunk differ gets both; that score goes to the
    article's best chunk, the others keep their own. Ties keep dense order, then keyword order.
    """
    evidence = _evidence(dense, keyword)
    order = {key: i for i, key in enumerate(evidence)}
    d_scale, k_scale = _dense_scale(dense, params.depth, params.dense_scale), _keyword_scale(keyword, params.depth)
    spread = dense[0][1] - _floor(dense, params.depth) if dense else 0.0
    w = params.dense_share * min(1.0, spread / params.dense_scale) ** 2 if keyword else 1.0

    def parts(dense_score: float | None, keyword_score: float | None, key: str) -> tuple[float, float, float]:
        lift = YEAR_LIFT if boost is not None and boost(key) else 0.0
        return (d_scale(dense_score) if dense_score is not None else 0.0), k_scale(keyword_score), lift

    out = []
    for key, ev in evidence.items():
        d, kw = ev.get("dense"), ev.get("keyword")
        dp, kp, lift = parts(d[0] if d else None, kw[0] if kw else None, key)
        out.append(_candidate(key, w * dp + (1 - w) * kp + lift, ev))
    if article_of is not None:
        return _by_article(out, article_of, lambda c: parts(c.dense_score, c.keyword_score, c.key), w, order)
    out.sort(key=lambda c: (-c.score, order[c.key]))
    return out


def fuse_rrf(dense: Ranking, keyword: Ranking, params: FusionParams = FusionParams(), *,
             boost: Callable[[str], bool] | None = None,
             article_of: Callable[[str], str] | None = None) -> list[Candidate]:
    """Weighted reciprocal rank fusion, ``Σ weight / (rrf_k + rank + 1)``; ``boost`` adds half of a
    first place in one ranking. Chunks are ranked as they are (``article_of`` is not used). Ties
    keep dense order, then keyword order."""
    evidence = _evidence(dense, keyword)
    order = {key: i for i, key in enumerate(evidence)}
    k, lift = params.rrf_k, 0.5 / (params.rrf_k + 1)
    out = []
    for key, ev in evidence.items():
        d, kw = ev.get("dense"), ev.get("keyword")
        score = (params.dense_weight / (k + d[1] + 1) if d else 0.0) + (params.keyword_weight / (k + kw[1] + 1) if kw else 0.0)
        if boost is not None and boost(key):
            score += lift
        out.append(_candidate(key, score, ev))
    out.sort(key=lambda c: (-c.score, order[c.key]))
    return out


# Config.fusion → its function; a new method is one function and one line here
FUSION: dict[str, Callable[..., list[Candidate]]] = {"score": fuse_scores, "rrf": fuse_rrf}


def fuse(dense: Ranking, keyword: Ranking, *, method: Method = "score", boost: Callable[[str], bool] | None = None,
         article_of: Callable[[str], str] | None = None, **params) -> list[Candidate]:
    """Rows of both rankings (best first, each ``(key, score)``), ordered by the fused score of
    ``method`` (:data:`FUSION`); ``params`` are :class:`FusionParams` fields."""
    if method not in FUSION:
        raise ConfigError(f"fusion must be one of {', '.join(FUSION)}, got {method!r}")
    return FUSION[method](dense, keyword, FusionParams(**params), boost=boost, article_of=article_of)


def _by_article(chunks: list[Candidate], article_of: Callable[[str], str],
                parts: Callable[[Candidate], tuple[float, float, float]], w: float, order: dict[str, int]) -> list[Candidate]:
    """Chunks grouped by article, articles ordered by ``w * best dense + (1 - w) * best keyword
    + best lift`` over their chunks: an article's best chunk takes that score, its other chunks keep
    their own (so the first passages stay one per article when other articles score higher)."""
    best: dict[str, list[float]] = {}
    for c in chunks:
        d, k, lift = parts(c)
        b = best.setdefault(article_of(c.key), [0.0, 0.0, 0.0])
        b[0], b[1], b[2] = max(b[0], d), max(b[1], k), max(b[2], lift)
    score = {a: w * d + (1 - w) * k + lift for a, (d, k, lift) in best.items()}
    lead: dict[str, str] = {}  # article → its best chunk, which takes the article's score
    for c in sorted(chunks, key=lambda c: (-c.score, order[c.key])):
        lead.setdefault(article_of(c.key), c.key)
    scored = [replace(c, score=score[a]) if lead[a] == c.key else c for c in chunks for a in (article_of(c.key),)]
    return sorted(scored, key=lambda c: (-c.score, order[c.key]))
