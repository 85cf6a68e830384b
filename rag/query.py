"""What a search is asked: the cleaned query and the article filters, each validated once at the edge."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from .asked import Asked, asked_of
from .errors import EmptyQueryError, QueryError
from .text import QUESTION_FRAME_WORDS, fold, keywords, normalize, tokenize

__all__ = ["Query", "ArticleFilter", "MAX_QUERY_CHARS", "is_dated"]

MAX_QUERY_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_YEAR = re.compile(r"((?:19|20)\d{2})\s*年")
_MONTH = re.compile(r"(?<!\d)(1[0-2]|0?[1-9])\s*月")
_STATED = re.compile(r"\d{4}(-\d{2}-\d{2})?")


def is_dated(date: str | None) -> bool:
    """True when an article's date can be placed in a date range (``YYYY`` or ``YYYY-MM-DD``)."""
    return bool(date and _STATED.fullmatch(date))


@dataclass(frozen=True)
class Query:
    """A cleaned query: control characters removed, whitespace collapsed, at most 1,000 characters.

    Make one with ``Query.of(text)`` (QueryError when nothing is left); the folded text, its
    tokens and content words are computed once and shared by retrieval and answering.

    Example::

        q = Query.of("  江岸簽約了哪些項目？ ")
        q.text, q.folded      # '江岸簽約了哪些項目？', '江岸签约了哪些项目?'
    """

    text: str

    @classmethod
    def of(cls, query: "str | Query") -> "Query":
        if isinstance(query, Query):
            return query
        if not isinstance(query, str):
            raise QueryError(f"query must be a string, got {type(query).__name__}")
        q = re.sub(r"\s+", " ", _CONTROL.sub(" ", query)).strip()
        if not q:
            raise EmptyQueryError("query is empty: type a question or some keywords")
        return cls(q[:MAX_QUERY_CHARS])

    @cached_property
    def folded(self) -> str:
        """Simplified script, half-width: what the dense encoder sees."""
        return fold(self.text)

    @cached_property
    def normalized(self) -> str:
        return normalize(self.text)

    @cached_property
    def tokens(self) -> list[str]:
        """Keyword-index tokens (jieba, stop words dropped)."""
        return tokenize(self.text)

    @cached_property
    def content_words(self) -> list[str]:
        """The words a passage must contain to answer the question."""
        return keywords(self.text)

    @cached_property
    def topic_words(self) -> list[str]:
        """The content words without those that frame the question ("何年", "文中提及", "什么颜色"):
        what the evidence for an answer must mention. All content words when nothing else is left."""
        return [t for t in self.content_words if t not in QUESTION_FRAME_WORDS] or self.content_words

    @cached_property
    def asked(self) -> Asked:
        """What the question asks for (:class:`rag.asked.Asked`): the kind of answer, its unit,
        the listed kind and count, the attribute asked about."""
        return asked_of(self.text)

    @cached_property
    def year(self) -> int | None:
        """A year the question names (``2024年``), else None."""
        m = _YEAR.search(self.normalized)
        return int(m.group(1)) if m else None

    @cached_property
    def month(self) -> int | None:
        """A month the question names (``7月的台风``), else None."""
        m = _MONTH.search(self.normalized)
        return int(m.group(1)) if m else None

    def fits_date(self, date: str | None) -> bool:
        """False when the question names a year or month that an article's known date contradicts."""
        if not date or not is_dated(date):
            return True
        if self.year is not None and date[:4] != str(self.year):
            return False
        return self.month is None or len(date) < 7 or int(date[5:7]) == self.month


@dataclass(frozen=True)
class ArticleFilter:
    """Which articles a search may return: publications and an inclusive ISO date range.

    Dates are ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; an article whose year is not stated
    is outside every date range. ``ArticleFilter.make`` validates and names the bad field.
    """

    sources: frozenset[str] = frozenset()
    date_from: str | None = None
    date_to: str | None = None

    @classmethod
    def make(
        cls, sources: Iterable[str] | str | None = None, date_from: str | None = None, date_to: str | None = None
    ) -> "ArticleFilter | None":
        """The filter, or None when nothing is filtered."""
        if isinstance(sources, str):
            sources = [sources]
        wanted = frozenset(s.strip() for s in (sources or []) if isinstance(s, str) and s.strip())
        if sources is not None and any(not isinstance(s, str) for s in sources):
            raise QueryError('sources must be a list of publication names, e.g. ["长江日报"]')
        dates = []
        for name, value in (("date_from", date_from), ("date_to", date_to)):
            value = value.strip() if isinstance(value, str) else value
            if value and not (isinstance(value, str) and _DATE.fullmatch(value)):
                raise QueryError(f"{name} must be an ISO date like 2021-12-03 (or 2021, 2021-12), got {value!r}")
            dates.append(value or None)
        if dates[0] and dates[1] and dates[0] > dates[1]:
            raise QueryError(f"date_from ({dates[0]}) is after date_to ({dates[1]})")
        if not wanted and not dates[0] and not dates[1]:
            return None
        return cls(wanted, dates[0], dates[1])

    def allows(self, source: str | None, date: str | None) -> bool:
        if self.sources and (source or "") not in self.sources:
            return False
        if self.date_from or self.date_to:
            d = date or ""
            if not is_dated(d):
                return False  # no year stated: cannot be placed in a date range
            if self.date_from and d < self.date_from:
                return False
            if self.date_to and d[: len(self.date_to)] > self.date_to:
                return False
        return True
