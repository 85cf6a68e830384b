"""Question sets: one question per JSONL line (the ``*.qa.jsonl`` and seed formats), read and checked."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..text import to_simplified

__all__ = ["Question", "load_questions"]


@dataclass(frozen=True)
class Question:
    """One evaluation question, from a ``*.qa.jsonl`` line or a seed line.

    A correct answer holds any one of ``answers`` or all of ``must_include``. Gold articles are
    ``gold_docs`` (ids); where none are given, a retrieved passage is relevant when it contains
    one of the ``evidence`` strings. ``turns`` are earlier user questions of the conversation.
    """

    id: str
    question: str
    answers: tuple[str, ...] = ()
    must_include: tuple[str, ...] = ()
    gold_docs: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    turns: tuple[str, ...] = ()
    no_answer: bool = False
    kind: str = ""  # the set's own grouping, e.g. CRUD-RAG's type: 1doc, 2docs, 3docs

    @property
    def has_gold(self) -> bool:
        return bool(self.gold_docs or self.evidence)

    def simplified(self) -> "Question":
        """The same question with question and turns converted to Simplified script."""
        return Question(
            id=self.id,
            question=to_simplified(self.question),
            answers=self.answers,
            must_include=self.must_include,
            gold_docs=self.gold_docs,
            evidence=self.evidence,
            turns=tuple(to_simplified(t) for t in self.turns),
            no_answer=self.no_answer,
            kind=self.kind,
        )


def _strings(rec: dict, key: str, path: str, line: int) -> tuple[str, ...]:
    v = rec.get(key) or []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise SourceError(path, f"field {key!r} must be a string or a list of strings", line)
    return tuple(s for s in v if s.strip())


def load_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    """Questions from a JSONL file in the ``*.qa.jsonl`` or seed format; SourceError names the bad line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise SourceError(str(path), f"cannot read the question file ({e})") from e
    out: list[Question] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            raise SourceError(str(path), f"not valid JSON ({e.msg})", n) from e
        if not isinstance(rec, dict) or not isinstance(rec.get("question"), str) or not rec["question"].strip():
            raise SourceError(str(path), "each line needs a non-empty 'question' string", n)
        q = Question(
            id=str(rec.get("id") or f"line-{n}"),
            question=rec["question"],
            answers=_strings(rec, "answers", str(path), n),
            must_include=_strings(rec, "must_include", str(path), n),
            gold_docs=_strings(rec, "gold_docs", str(path), n),
            evidence=_strings(rec, "evidence", str(path), n),
            turns=_strings(rec, "turns", str(path), n),
            no_answer=bool(rec.get("no_answer", False)),
            kind=str(rec.get("type") or ""),
        )
        out.append(q)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise SourceError(str(path), "no questions in the file")
    return out
