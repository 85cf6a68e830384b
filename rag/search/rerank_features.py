"""The reranker's features: what the question shares with each fused passage and with its whole article."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..query import Query
from ..records import Passage, date_parts
from ..text import normalize, split_sentences

__all__ = ["FEATURE_NAMES", "rerank_features", "ArticleView"]

FEATURE_NAMES = [
    "fused_rel",            # fused score over the best fused score of the list
    "fused_rank",           # 0-based position in the fused list
    "keyword_rel",          # BM25 over the best BM25 of the list (0: not a keyword find)
    "keyword_rank",         # keyword rank (999: not a keyword find)
    "dense",                # cosine (-1: unknown)
    "dense_gap",            # cosine minus the best cosine of the list
    "dense_rank",           # dense rank (999: not a dense find)
    "cov_passage",          # idf-weighted share of the question's topic words in the passage
    "cov_article",          # ... in the whole article
    "cov_title",            # ... in the article's title
    "cov_sentence",         # ... in the passage's best sentence
    "miss_article",         # idf of the rarest topic word the article lacks, over the rarest's idf
    "bigram_passage",       # share of the question's character bigrams in the passage
    "bigram_article",       # ... in the article
    "longest_common",       # longest run of the question's characters found in the article, over the question's length
    "numbers_article",      # share of the question's numbers (2023, 7, 59357...) found in the article
    "month_match",          # 1: the question names a month and the article is dated in it; -1 dated in another; 0 otherwise
    "year_match",           # the same for a year
    "article_chunks",       # how many of the list's passages come from this article
    "article_first",        # 1 for the article's best-placed passage in the list
    "chunk_position",       # where the passage starts in its article (0 = at the beginning, 1 = at the end)
    "passage_chars",
    "article_chars",
    "topic_words",          # how many topic words the question has
    "topic_idf",            # their summed idf
]

_HAN_OR_ALNUM = re.compile(r"[\u3400-\u9fffa-z0-9]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class ArticleView:
    """What the features read of a passage's article: its normalised text and title, and its date."""

    text: str
    title: str
    date: str | None


def _bigrams(s: str) -> set[str]:
    chars = [c for c in s if _HAN_OR_ALNUM.match(c)]
    return {a + b for a, b in zip(chars, chars[1:])}


def _longest_common(q: str, text: str) -> int:
    """Length of the longest substring of ``q`` found in ``text`` (grown greedily from each start)."""
    best = 0
    for i in range(len(q)):
        n = best + 1
        while i + n <= len(q) and q[i:i + n] in text:
            best = n
            n += 1
    return best


def _coverage(words: Sequence[str], weights: np.ndarray, text: str) -> float:
    total = float(weights.sum())
    if total <= 0:
        return 0.0
    return float(sum(w for t, w in zip(words, weights) if t in text)) / total


def rerank_features(query: Query, passages: Sequence[Passage], idf: Callable[[str], float],
                    article: Callable[[str], ArticleView]) -> np.ndarray:
    """One row of ``FEATURE_NAMES`` per passage, in order."""
    n = len(passages)
    out = np.zeros((n, len(FEATURE_NAMES)), np.float32)
    if n == 0:
        return out
    words = list(dict.fromkeys(query.topic_words))
    weights = np.array([idf(t) for t in words], np.float64)
    q_norm = query.normalized
    q_chars = "".join(c for c in q_norm if _HAN_OR_ALNUM.match(c))
    q_bigrams = _bigrams(q_norm)
    q_numbers = set(_NUMBER.findall(q_norm))
    month, year = query.month, query.year
    best_fused = max((p.score for p in passages), default=0.0) or 1.0
    best_kw = max((p.keyword_score or 0.0 for p in passages), default=0.0) or 1.0
    cosines = [p.dense_score for p in passages if p.dense_score is not None]
    best_cos = max(cosines) if cosines else 0.0
    chunks_of: dict[str, int] = {}
    for p in passages:
        chunks_of[p.doc_id] = chunks_of.get(p.doc_id, 0) + 1
    seen: set[str] = set()
    views: dict[str, ArticleView] = {}
    for i, p in enumerate(passages):
        view = views.get(p.doc_id)
        if view is None:
            view = views[p.doc_id] = article(p.doc_id)
        text = normalize(p.text)
        f = out[i]
        f[0] = p.score / best_fused
        f[1] = i
        f[2] = (p.keyword_score or 0.0) / best_kw
        f[3] = p.keyword_rank if p.keyword_rank is not None else 999
        f[4] = p.dense_score if p.dense_score is not None else -1.0
        f[5] = (p.dense_score - best_cos) if p.dense_score is not None else -1.0
        f[6] = p.dense_rank if p.dense_rank is not None else 999
        f[7] = _coverage(words, weights, text)
        f[8] = _coverage(words, weights, view.text)
        f[9] = _coverage(words, weights, view.title)
        f[10] = max((_coverage(words, weights, text[a:b]) for a, b in split_sentences(text)), default=0.0)
        missing = [w for t, w in zip(words, weights) if t not in view.text]
        f[11] = max(missing) / weights.max() if missing and weights.max() > 0 else 0.0
        f[12] = len(q_bigrams & _bigrams(text)) / len(q_bigrams) if q_bigrams else 0.0
        f[13] = sum(b in view.text for b in q_bigrams) / len(q_bigrams) if q_bigrams else 0.0
        f[14] = _longest_common(q_chars, view.text) / len(q_chars) if q_chars else 0.0
        f[15] = sum(x in view.text for x in q_numbers) / len(q_numbers) if q_numbers else -1.0
        # a date stored without its year (--11-29) has a month and no year; the archive the trees
        # were trained on has none such, so reading it right needs no retraining
        dated, dated_month, _ = date_parts(view.date)
        if month and dated_month:
            f[16] = 1.0 if dated_month == month else -1.0
        if year and dated:
            f[17] = 1.0 if dated[:4] == str(year) else -1.0
        f[18] = chunks_of[p.doc_id]
        f[19] = p.doc_id not in seen
        seen.add(p.doc_id)
        f[20] = p.start / max(len(view.text), 1)
        f[21] = len(p.text)
        f[22] = len(view.text)
        f[23] = len(words)
        f[24] = weights.sum()
    return out
