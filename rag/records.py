"""Typed records that flow through the pipeline: Article, Chunk, Passage, Answer."""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Article", "Chunk", "Passage", "Answer", "OTHERS_LINE", "content_hash", "readable_date", "date_parts"]


def content_hash(*parts: str, length: int = 16) -> str:
    """Stable hex digest of the given strings (used for ids, so unchanged text keeps its id)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:length]


def date_parts(stated: str | None) -> tuple[str | None, int | None, int | None]:
    """An article's stated date (as the index keeps it: ``2021-12-03``, ``2021``, or ``--11-29``,
    ISO 8601's month and day without a year) as ``(date, month, day)``: ``date`` the ISO date when
    the year is known, else None; ``month`` and ``day`` whenever the text states them.

    Example::

        date_parts("2021-12-03")  # ('2021-12-03', 12, 3)
        date_parts("--11-29")     # (None, 11, 29)
        date_parts("2021")        # ('2021', None, None)
    """
    if not stated:
        return None, None, None
    if len(stated) == 7 and stated.startswith("--") and stated[2:4].isdigit() and stated[5:7].isdigit():
        return None, int(stated[2:4]), int(stated[5:7])
    if len(stated) == 10 and stated[5:7].isdigit() and stated[8:10].isdigit():
        return stated, int(stated[5:7]), int(stated[8:10])
    return stated, None, None


def readable_date(date: str | None, month: int | None = None, day: int | None = None) -> str:
    """A date for people: ``2023-07-25`` as is, a month and day without a year (``month=11, day=29``,
    or the stored ``--11-29``) as ``11月29日（未注明年份）``, none as empty."""
    if date and date.startswith("--"):
        date, month, day = date_parts(date)
    if date:
        return date
    if month and day:
        return f"{month}月{day}日（未注明年份）"
    return ""


@dataclass(frozen=True)
class Article:
    """One clean news article.

    ``date`` is ISO 8601 and holds only what the text states: ``2021-12-03``, ``2021``,
    ``--11-29`` (ISO 8601's month and day without a year) or ``None``; it is what the index's
    ``articles.jsonl`` keeps. ``date_parts(article.date)`` splits it as a search result shows it
    (``Passage.date`` / ``month`` / ``day``).
    """

    id: str
    title: str
    text: str
    date: str | None = None
    source: str | None = None
    url: str | None = None
    origin: str | None = None  # file the article came from (relative path)

    def to_dict(self) -> dict[str, Any]:
        # field by field: dataclasses.asdict deep-copies, 10x slower on an archive's records
        return {"id": self.id, "title": self.title, "text": self.text, "date": self.date,
                "source": self.source, "url": self.url, "origin": self.origin}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Article":
        return cls(**{k: d.get(k) for k in ("id", "title", "text", "date", "source", "url", "origin")})


@dataclass(frozen=True)
class Chunk:
    """A span of an article's text, ``article.text[start:end] == text``.

    ``id`` is a hash of what gets embedded (title context + text), so identical
    chunks share vectors and are never embedded twice.
    """

    id: str
    doc_id: str
    text: str
    start: int
    end: int
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "doc_id": self.doc_id, "text": self.text, "start": self.start,
                "end": self.end, "title": self.title}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Chunk":
        return cls(**{k: d[k] for k in ("id", "doc_id", "text", "start", "end", "title")})


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its article's metadata, its fused score and each retriever's evidence.

    ``dense_score`` / ``dense_rank`` (cosine, 0-based rank) and ``keyword_score`` /
    ``keyword_rank`` (BM25) are None when that retriever did not return the chunk; except that a
    hybrid search gives every passage its cosine (``dense_rank`` None: not among the dense
    candidates).
    ``also_in`` lists other outlets that carried the same story, ``same_story`` the ids of
    those articles (folded into this passage, each story shown once).

    ``date`` is the article's ISO date when its year is known (``2021-12-03``, or ``2021`` when only
    the year is stated), else None; ``month`` and ``day`` are what the article states of them,
    also without a year: an article dated 11月29日 with no year has ``date=None, month=11, day=29``
    (the chat shows 11月29日（未注明年份）). A stored date ``--11-29`` given as ``date`` is split so.
    """

    doc_id: str
    title: str
    date: str | None
    source: str | None
    text: str
    score: float
    chunk_id: str = ""
    url: str | None = None
    start: int = 0
    end: int = 0
    also_in: tuple[str, ...] = field(default_factory=tuple)
    same_story: tuple[str, ...] = field(default_factory=tuple)
    dense_score: float | None = None
    dense_rank: int | None = None
    keyword_score: float | None = None
    keyword_rank: int | None = None
    month: int | None = None
    day: int | None = None

    def __post_init__(self) -> None:
        if self.date and (self.date.startswith("--") or (self.month is None and len(self.date) == 10)):
            date, month, day = date_parts(self.date)
            object.__setattr__(self, "date", date)
            object.__setattr__(self, "month", month)
            object.__setattr__(self, "day", day)

    @property
    def label(self) -> str:
        """Which story this is, in one line: ``《title》（outlet，date）`` with what is known."""
        when = readable_date(self.date, self.month, self.day)
        return f"《{self.title}》" + (f"（{'，'.join(x for x in (self.source, when) if x)}）" if self.source or when else "")

    @property
    def context(self) -> str:
        """The article title and the passage text, as the question is matched against."""
        return f"{self.title}\n{self.text}" if self.title and not self.text.startswith(self.title) else self.text

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["also_in"] = list(self.also_in)
        d["same_story"] = list(self.same_story)
        return d


# where an answer's text names other stories that answer the question differently (Answer.others)
OTHERS_LINE = "\n另见："


@dataclass(frozen=True)
class Answer:
    """The assistant's reply.

    ``text`` carries citation markers ``[1]``, ``[2]`` that index ``citations``
    (1-based). ``grounded`` is False when the assistant declined because the
    articles do not contain the answer. ``short`` is the answer itself, a span of
    ``citations[0]`` as the article words it (in the question's script); empty when
    declining or when no span is confident enough. ``highlights[i]`` is the sentence of
    ``citations[i]`` that supports the answer. ``question`` is the standalone question
    that was answered (a follow-up rewritten from the conversation), ``query`` what was
    searched. ``note`` is a short notice for the user (e.g. the language model was
    unreachable), empty when all went well. ``story`` says which story the answer comes from
    (``citations[0].label``); ``others`` are the 1-based numbers of cited passages from other
    stories that answer the question differently, named in the text's last line ("另见：…").
    ``missing`` is what the question asked for that the articles never mention ("总投资"): the
    text then says so first and goes on with what they do say about the subject, and ``short``
    is empty.
    """

    text: str
    citations: list[Passage]
    grounded: bool
    highlights: list[str] = field(default_factory=list)
    query: str = ""
    note: str = ""
    short: str = ""
    question: str = ""
    others: list[int] = field(default_factory=list)
    missing: str = ""

    @property
    def story(self) -> str:
        """The story the answer comes from: its first source's title, outlet and date ("" when declined)."""
        return self.citations[0].label if self.citations else ""

    def to_text(self) -> str:
        """The answer as plain text, as ``rag ask`` prints it: the short answer, ``出自 《…》（…）``,
        the cited sentences, a note if any, then one line per source ``[1] title — outlet date``."""
        lines = [self.short] if self.short else []
        if self.story:
            lines.append(f"出自 {self.story}")
        lines.append(self.text)
        if self.note:
            lines.append(f"（{self.note}）")
        lines += [f"[{i}] {p.title} — {p.source or '来源不详'} {readable_date(p.date, p.month, p.day)}".rstrip()
                  for i, p in enumerate(self.citations, 1)]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "short": self.short,
            "story": self.story,
            "others": list(self.others),
            "missing": self.missing,
            "question": self.question,
            "grounded": self.grounded,
            "citations": [p.to_dict() for p in self.citations],
            "highlights": list(self.highlights),
            "query": self.query,
            "note": self.note,
        }
