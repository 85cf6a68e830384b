"""Near-duplicates: the same story carried by several outlets, told in (almost) the same words."""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import replace
from typing import Mapping

import numpy as np

from ..records import Article, Passage
from ..text import normalize

__all__ = ["NearDuplicates"]

# Articles whose 3-grams are kept between searches. Bounded: an app answering questions over a large
# archive meets ever more articles (unbounded, 3,000 searches of the 68k CRUD index grew the process
# from 1.2 to 4.8 GB); as sorted 64-bit integers a news article's 3-grams take ~4 KB (~40 MB in all).
ARTICLES_REMEMBERED = 10_000


def _grams(text: str) -> np.ndarray:
    """The distinct 3-grams of the normalised text without punctuation or spaces, each as one integer
    (its three code points side by side: exact, no hashing), sorted. A text of one or two characters
    is its own gram."""
    t = re.sub(r"\W+", "", normalize(text))
    cp = np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    if len(cp) < 3:
        cp = np.concatenate([cp, np.zeros(3 - len(cp), np.int64)])
    return np.unique((cp[:-2] << 42) | (cp[1:-1] << 21) | cp[2:])


_NONE = np.zeros(0, np.int64)


def _common(a: np.ndarray, b: np.ndarray) -> int:
    """How many values two sorted unique arrays share."""
    if len(a) > len(b):
        a, b = b, a
    if not len(a):
        return 0
    at = np.searchsorted(b, a)
    at[at == len(b)] = 0
    return int(np.count_nonzero(b[at] == a))


class NearDuplicates:
    """3-gram Jaccard similarity of article texts, with the verdicts remembered; and passages that
    repeat each other's text (the same wire copy in articles that differ elsewhere).

    Example::

        nd = NearDuplicates(articles)            # {doc_id: Article}
        nd.same("wuhan", "wuhan_copy")           # True
        nd.fold(passages)                        # each story once, other outlets in also_in
    """

    def __init__(self, articles: Mapping[str, Article], threshold: float = 0.8, repeated_text: bool = True) -> None:
        self.articles = articles
        self.threshold = threshold
        self.repeated_text = repeated_text  # also fold passages that repeat a shown one (False: articles only)
        self._grams: OrderedDict[str, np.ndarray] = OrderedDict()  # least recently used first
        self._verdicts: dict[tuple[str, str], bool] = {}

    def _article_grams(self, doc_id: str) -> np.ndarray:
        g = self._grams.get(doc_id)
        if g is None:
            g = self._grams[doc_id] = _grams(self.articles[doc_id].text)
            if len(self._grams) > ARTICLES_REMEMBERED:
                self._grams.popitem(last=False)
        else:
            self._grams.move_to_end(doc_id)
        return g

    def same(self, a: str, b: str) -> bool:
        """True when articles ``a`` and ``b`` tell the same story in (almost) the same words."""
        if a == b:
            return True
        key = (a, b) if a < b else (b, a)
        known = self._verdicts.get(key)
        if known is not None:
            return known
        sa, sb = self._article_grams(a), self._article_grams(b)
        small, large = sorted((len(sa), len(sb)))
        # Jaccard <= small / large: most pairs are settled by their sizes, without comparing 3-grams.
        if not small or small < self.threshold * large:
            same = False
        else:
            common = _common(sa, sb)
            same = common / (len(sa) + len(sb) - common) >= self.threshold
        if len(self._verdicts) > 200_000:
            self._verdicts.clear()
        self._verdicts[key] = same
        return same

    def fold(self, passages: list[Passage], shown: int | None = None) -> list[Passage]:
        """Each story once: a passage of a near-identical article from another outlet is dropped, its
        outlet (or id when it has none) listed in ``also_in`` of the better-ranked one and its id in
        ``same_story``. So is a passage whose text a better-ranked passage of another article
        already shows (at least the threshold of its 3-grams): outlets that run the same wire
        copy with their own introduction or other stories around it.

        An article's fate is settled at its first passage (it is its own story, or it folds into
        the first kept article that tells the same one), so articles are compared with the kept
        articles once each, not passage by passage; repeated text is checked passage by passage,
        until ``shown`` passages are kept (the ones the caller shows; None: all)."""
        kept: list[Passage] = []
        first_kept: dict[str, int] = {}  # article → position of its first kept passage, in kept order
        folds_into: dict[str, int | None] = {}
        text: list[np.ndarray] = []  # 3-grams of the kept passages
        for p in passages:
            if p.doc_id not in folds_into:
                folds_into[p.doc_id] = next(
                    (i for d, i in first_kept.items() if d != p.doc_id and self.same(d, p.doc_id)), None)
            i = folds_into[p.doc_id]
            mine = _NONE
            if i is None and self.repeated_text and (shown is None or len(kept) < shown):
                mine = _grams(p.text)
                i = next((j for j, q in enumerate(kept) if q.doc_id != p.doc_id and self._repeats(mine, text[j])), None)
            if i is None:
                first_kept.setdefault(p.doc_id, len(kept))
                kept.append(p)
                text.append(mine)
                continue
            q = kept[i]
            label = p.source or p.doc_id
            if label not in q.also_in and label != q.source:
                q = replace(q, also_in=q.also_in + (label,))
            if p.doc_id not in q.same_story:
                q = replace(q, same_story=q.same_story + (p.doc_id,))
            kept[i] = q
        return kept

    def _repeats(self, later: np.ndarray, kept: np.ndarray) -> bool:
        """``later`` says little that ``kept`` does not: at least the threshold of its 3-grams are in
        ``kept`` (so a longer passage that adds to a shorter one is never folded into it)."""
        need = self.threshold * len(later)
        return len(later) > 0 and len(kept) >= need and _common(later, kept) >= need
