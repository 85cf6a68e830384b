"""The reader's rules: what the trees' best span must be to answer what is asked (``Query.asked``),
and how a chosen span is completed (a number whole, a list with its closing count).

Each rule looks at the candidates scoring close to the best; when some of them are of the asked
kind (unit, attribute, count, name), only those compete. A rule is one function and one line of
``RULES``; ``scripts/adapt_reader.py --rules`` measures each on the validation questions.
"""
from __future__ import annotations

import re
from typing import Callable, Protocol

import numpy as np

from ...query import Query
from ...text import to_simplified

__all__ = ["RULES", "apply_rules", "counted", "whole_date", "whole_number", "whole_list", "widen", "SHAPES", "SHAPES_BY_KIND",
           "KIND_MARGIN", "COUNT_MARGIN", "COUNTED_CONFIDENCE"]

KIND_MARGIN = 1.0  # how far below the best score a candidate of the asked kind may be and still win
COUNT_MARGIN = 5.0  # the same for a list of as many items as the question asks ("哪三个方面"): the trees never learnt to count
COUNTED_CONFIDENCE = 0.6  # the confidence of such a list (short_alone_confidence: it stands alone)
_COUNTED = re.compile(r"[约近超逾]?(?:[0-9０-９]|[.．](?=[0-9０-９]))+[万亿千百]*[多余]?|[零一二两三四五六七八九十][零一二两三四五六七八九十百千万亿]*[多余]?")
_ATTRIBUTE_GAP = 4  # characters between the attribute asked about and its number: "总投资为" "利率达到"
_RATE = re.compile(r"(?:每(?:小时|[秒分时天日周月年人户])|年均|日均|人均)?")  # "出库流量为每秒5800立方米"
_CLAUSE_END = re.compile(r"[，,。；;！？!?]")
_LIST_SEP = re.compile(r"[、，,和及与]")
_LIST_ITEM_CHARS = 10  # the items of a counted list are names ("村官、村医、村教"), not clauses
_QUOTES = re.compile(r"[「」『』“”\"《》（）()]")  # a list inside quotes or brackets is a list without them
_LIST_TAIL = r"等[^，,。；;：:！？!?、\s]{0,6}?"  # + the asked kind: "等6个项目", "等三家单位": a list's closing count
# what a number may not be cut from: the rest of its digits, its magnitude (万, 亿, …) and a percent sign
_NUMBER_REST = re.compile(r"(?:[0-9０-９]|[.,．，](?=[0-9０-９]))*[万萬亿億千百]*[%％‰]?")
_CLAUSE_MARK = re.compile(r"[，,；;：:]")
SHAPES = ("span", "clause", "to sentence end", "sentence")
# how much of its sentence the answer to each kind of question takes (``widen``); measured per kind
# on the validation questions of CMRC, DRCD and CRUD (docs/benchmarks.md, issue 26): the span itself
# scored best for every kind, so none is widened
SHAPES_BY_KIND: dict[str, str] = {}


class _Cands(Protocol):
    passage: np.ndarray  # (n,) the passage of each candidate
    spans: np.ndarray  # (n, 2) its offsets in that passage's text


class _Text(Protocol):
    text: str


Rule = Callable[[Query, "list[_Text]", _Cands, np.ndarray], np.ndarray]


def _only(scores: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """Only the fitting candidates compete, when there are any."""
    return np.where(fits, scores, -np.inf) if fits.any() else scores


def _near(scores: np.ndarray, margin: float) -> np.ndarray:
    """The candidates scoring within ``margin`` of the best."""
    return scores >= float(np.max(scores)) - margin


def _texts(passages, cands: _Cands, which: np.ndarray) -> list[str | None]:
    """The simplified text of the candidates ``which`` marks (None for the others)."""
    return [to_simplified(passages[p].text[a:b]) if w else None
            for w, p, (a, b) in zip(which.tolist(), cands.passage.tolist(), cands.spans.tolist())]


def named(question: Query, passages, cands: _Cands, scores: np.ndarray) -> np.ndarray:
    """For a question quoting a name (「三村工程」是指哪三个方面？), when some passage read holds
    the name (in its text or its article's title), candidates of passages that do not are out:
    the answer is about that name."""
    names = [to_simplified(n) for n in question.asked.names]
    if not names:
        return scores
    holds = np.array([all(n in to_simplified(f"{getattr(p, 'title', '') or ''} {p.text}") for n in names)
                      for p in passages])
    return _only(scores, holds[cands.passage] & np.isfinite(scores))


def kind(question: Query, passages, cands: _Cands, scores: np.ndarray) -> np.ndarray:
    """For "哪些X" questions, when a candidate ending in X ("…等6个项目") scores within
    ``KIND_MARGIN`` of the best, only such candidates compete (for the answer and its runner-up):
    the list of projects, not the neighbouring list of partner units; and when one of them is a
    list ("A、B"), only lists: "哪些" asks for several, not for the last item of the list."""
    item = question.asked.item
    if not item:
        return scores
    texts = _texts(passages, cands, np.ones(len(scores), bool))
    fits = np.array([t.endswith(item) for t in texts])
    near = _near(scores, KIND_MARGIN)
    if not (fits & near).any():
        return scores
    lists = fits & np.array(["、" in t for t in texts])
    return _only(scores, lists if (lists & near).any() else fits)


def unit(question: Query, passages, cands: _Cands, scores: np.ndarray) -> np.ndarray:
    """For "多少家…" / "几个…" questions, when a number counted in that unit ("1.6万多家") scores
    within ``KIND_MARGIN`` of the best, only such numbers compete: not "200余个" next to it."""
    asked_unit = question.asked.unit
    if not asked_unit:
        return scores
    pattern = re.compile(f"(?:{_COUNTED.pattern})(?:[、和及与至到-](?:{_COUNTED.pattern}))*{asked_unit}")
    near = _near(scores, KIND_MARGIN)
    fits = np.zeros(len(scores), bool)
    for i, (p, (a, b)) in enumerate(zip(cands.passage.tolist(), cands.spans.tolist())):
        if near[i]:
            # the number (or numbers: "6.5万、8.5万人次"), its magnitude and "多"/"余", then the unit
            # within 3 characters of the candidate's end ("1.6" of "1.6万多家" fits)
            text = passages[p].text
            fits[i] = bool(pattern.match(to_simplified(text[a:min(len(text), b + 3)])))
    return _only(scores, fits)


def attribute(question: Query, passages, cands: _Cands, scores: np.ndarray) -> np.ndarray:
    """For "X是多少" questions, when a number stated right after X ("总投资76.01亿元", "利率为3.95%",
    a rate: "出库流量为每秒5800立方米") scores within ``KIND_MARGIN`` of the best, only such numbers
    compete: not "3个" (项目) of the same sentence, nor the 水位 of the clause before."""
    asked = question.asked
    if asked.kind != "number" or not asked.attribute:
        return scores
    attr = to_simplified(asked.attribute)
    near = _near(scores, KIND_MARGIN)
    fits = np.zeros(len(scores), bool)
    for i, (p, (a, b)) in enumerate(zip(cands.passage.tolist(), cands.spans.tolist())):
        text = passages[p].text
        span = to_simplified(text[a:b])
        if near[i] and _COUNTED.match(span[_RATE.match(span).end():]):
            before = to_simplified(text[max(0, a - len(attr) - _ATTRIBUTE_GAP):a])
            at = before.rfind(attr)
            fits[i] = at >= 0 and not _CLAUSE_END.search(before[at + len(attr):])
    return _only(scores, fits)


def count(question: Query, passages, cands: _Cands, scores: np.ndarray) -> np.ndarray:
    """For "哪三个方面" questions, when a list of exactly that many names ("村官、村医、村教")
    scores within ``COUNT_MARGIN`` of the best, only such lists compete."""
    if not question.asked.count:
        return scores
    near = _near(scores, COUNT_MARGIN)
    return _only(scores, np.array([t is not None and counted(question, t) for t in _texts(passages, cands, near)]))


# the rules, in the order they apply: a new one is a function above and a line here
RULES: dict[str, Rule] = {"named": named, "kind": kind, "unit": unit, "attribute": attribute, "count": count}


def apply_rules(question: Query, passages, cands: _Cands, scores: np.ndarray,
                rules: tuple[str, ...] | None = None) -> np.ndarray:
    """The trees' scores after the rules (all of ``RULES``, or those named)."""
    for name in RULES if rules is None else rules:
        if len(scores) and np.isfinite(scores).any():
            scores = RULES[name](question, passages, cands, scores)
    return scores


def counted(question: Query, text: str) -> bool:
    """Whether ``text`` is a list of as many names as the question counts ("哪三个方面": 村官、村医、村教)."""
    n = question.asked.count
    if not n or _QUOTES.search(text):
        return False
    items = [x for x in _LIST_SEP.split(text) if x.strip()]
    return len(items) == n and max(map(len, items)) <= _LIST_ITEM_CHARS


def whole_number(text: str, a: int, b: int, limit: int) -> int:
    """The end of a span that ends in a digit, past the rest of its number: "35" of "35%" is
    "35%", "1.6" of "1.6万" is "1.6万" (a number without its magnitude or percent sign is
    another number)."""
    if b <= a or not text[b - 1].isdigit():
        return b
    return b + len(_NUMBER_REST.match(text, b, limit).group())


def whole_date(question: Query, text: str, a: int, b: int, limit: int) -> int:
    """The end of a bare number read for a "哪一年" / "几月" question, past the 年, 月 or 日 that
    follows it: "2019" of "2019年6月" is "2019年" (the number alone is not a date)."""
    if question.asked.kind != "time" or b <= a or b >= limit or not text[a:b].isdigit() or text[b] not in "年月日号":
        return b
    return b + 1


def whole_list(question: Query, text: str, a: int, b: int, limit: int) -> int:
    """The end of a "哪些X" list answer with its closing count: "A、B" followed by "等6个项目"
    (X = 项目) ends after it, so the list is the whole list, as the article sums it up."""
    item = question.asked.item
    if not item or "、" not in text[a:b]:
        return b
    after = text[b:min(limit, b + 12)]
    simplified = to_simplified(after)
    tail = re.match(_LIST_TAIL + re.escape(item), simplified)
    if tail and len(simplified) == len(after):  # the same offsets in either script
        return b + tail.end()
    return b


def widen(text: str, a: int, b: int, sentence_start: int, sentence_end: int, shape: str) -> tuple[int, int]:
    """The span ``a:b`` of ``text`` widened to one of ``SHAPES``: itself, its clause, its clause
    to the end of the sentence, or the sentence (``sentence_start:sentence_end``)."""
    if shape == "span":
        return a, b
    body = text[sentence_start:sentence_end]
    s0 = sentence_start + len(body) - len(body.lstrip())
    s1 = sentence_start + len(body.rstrip())
    if shape == "sentence":
        return s0, s1
    marks = [m.end() for m in _CLAUSE_MARK.finditer(text, s0, a)]
    c0 = marks[-1] if marks else s0
    if shape == "to sentence end":
        return c0, s1
    m = _CLAUSE_MARK.search(text, b, s1)
    return c0, m.start() if m else s1
