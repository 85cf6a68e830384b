"""How the benchmark sets are split between training and measuring.

CMRC 2018 dev and DRCD dev, by article: an article is held out when ``int(sha1(id), 16) % 4 == 0``
(about a quarter). ``scripts/train_reader.py`` and ``scripts/train_rerank.py`` train only on the rest;
``rag eval --held-out`` and ``scripts/eval_reader.py`` measure only on these.

News questions (CRUD-RAG QA dev), by story: questions that share a gold article are one story, and
a story's questions all fall in one part (``story_parts``): train, validation, held-out.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Iterable, Literal

if TYPE_CHECKING:
    from .evaluation import Question

__all__ = ["held_out", "Part", "PARTS", "stories", "story_parts", "in_part", "select"]


def held_out(article_id: str) -> bool:
    """True for an article of the held-out part (never seen in training)."""
    return int(hashlib.sha1(article_id.encode("utf-8")).hexdigest(), 16) % 4 == 0


Part = Literal["train", "validation", "held-out"]
PARTS: tuple[Part, ...] = ("train", "validation", "held-out")


def stories(questions: "Iterable[Question]") -> dict[str, str]:
    """Question id → story id: questions joined through shared gold articles (syndicated copies
    included) are one story, named by its smallest article id."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    questions = list(questions)
    for q in questions:
        docs = list(q.gold_docs) or [f"question:{q.id}"]
        for d in docs[1:]:
            a, b = find(docs[0]), find(d)
            if a != b:
                parent[max(a, b)] = min(a, b)
    return {q.id: find((list(q.gold_docs) or [f"question:{q.id}"])[0]) for q in questions}


def story_parts(questions: "Iterable[Question]", salt: str = "rerank") -> dict[str, Part]:
    """Question id → part, by a hash of its story: 60% train, 15% validation, 25% held-out.

    Validation chooses settings (early stopping, thresholds); held-out is measured once and
    never trained or tuned on."""
    out: dict[str, Part] = {}
    for qid, story in stories(questions).items():
        h = int(hashlib.sha1(f"{salt}:{story}".encode()).hexdigest(), 16) % 20
        out[qid] = "held-out" if h < 5 else "validation" if h < 8 else "train"
    return out


def in_part(questions: "list[Question]", part: Part, salt: str = "rerank") -> "list[Question]":
    """The questions of one part, in file order."""
    parts = story_parts(questions, salt)
    return [q for q in questions if parts[q.id] == part]


def select(questions: "list[Question]", *, held_out_only: bool = False, part: Part | None = None) -> "list[Question]":
    """The questions a run measures: only those about held-out articles (CMRC, DRCD), and/or only
    one part of a set split by story (CRUD), in file order."""
    if held_out_only:
        questions = [q for q in questions if q.gold_docs and all(held_out(d) for d in q.gold_docs)]
    if part:
        questions = in_part(questions, part)
    return questions
