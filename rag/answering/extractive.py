"""Extractive composition: the sentences of retrieved passages that answer a question, trimmed and cited."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..config import Config
from ..query import Query
from ..records import Passage
from ..text import is_traditional, keywords, normalize, split_sentences, to_simplified, to_traditional

__all__ = ["Sentence", "select_sentences", "compose", "best_sentence", "trim_sentence", "variants", "list_items",
           "MAX_ITEMS"]

_DATELINE_LEAD = re.compile(r"^[^。，,]{0,30}?\d{1,2}月\d{1,2}日(?:电|讯|消息)\s*(?:[(（][^)）]{0,40}[)）])?")
_HAS_PLACE = re.compile(r"(位于|地处|坐落|座落|地点|位置|境内|[省市县区镇乡村路街国州]|[东南西北]侧)")
_HAS_EVENT = re.compile(r"(会议|大会|理事会|座谈会|论坛|峰会|博览会|推介会|洽谈会|签约仪式|开幕|召开|举办|举行)")
# words the articles often say differently from the question
_VARIANTS = {"一期": ("首期",), "首期": ("一期",), "成立": ("组建", "创立", "成立于"), "组建": ("成立",),
             "开工": ("启动建设", "开建", "动工"), "建成": ("竣工", "投产"),
             "会议": ("理事会", "大会", "座谈会", "论坛", "峰会", "推介会", "洽谈会")}
_HAS_DIGIT = re.compile(r"\d")
_HAS_TIME = re.compile(r"(\d{4}年|\d{1,2}月|\d{1,2}日|\d{4}-\d{2})")
_HAS_REASON = re.compile(r"(因为|由于|原因|是为了|为了|导致|因此|所以|源于|缘于|归因于|之所以)")

Idf = Callable[[str], float]
# how an article marks the items of a list it announces with a colon: "——", "一是", "（一）", "1."
_ITEM_MARK = re.compile(r"^\s*(?:—+|[-•·●▪]|[（(][一二三四五六七八九十\d]{1,2}[）)]|[一二三四五六七八九十]{1,2}[、.．]|"
                        r"\d{1,2}[、.．](?!\d)|[一二三四五六七八九十]是|第[一二三四五六七八九十]{1,2}[，,、是])\s*")
MAX_ITEMS = 8  # the most items a list answer shows when the question does not say how many
_ITEM_SPAN = 3000  # how far after the colon the items are looked for (characters)


def variants(term: str) -> tuple[str, ...]:
    """Other ways the articles say a question word ("一期" → "首期"); empty for most words."""
    return _VARIANTS.get(term, ())


@dataclass(frozen=True)
class Sentence:
    """A candidate answer sentence: ``passages[passage].text[start:end]`` and its score."""

    score: float
    passage: int
    start: int
    end: int


def sentence_spans(text: str) -> list[tuple[int, int]]:
    return [(s, e) for s, e in split_sentences(text) if text[s:e].strip()]


def select_sentences(question: Query, passages: list[Passage], idf: Idf, config: Config) -> list[Sentence]:
    """Scored candidate sentences of the passages, best first: IDF-weighted coverage of the
    question's content words (words of the title count less), plus bonuses for holding the
    kind of thing asked (number, time, place, definition) and for higher-ranked passages."""
    terms = question.content_words
    asked = question.asked
    wants = {_HAS_DIGIT: asked.number, _HAS_TIME: asked.time, _HAS_PLACE: asked.place, _HAS_EVENT: asked.event,
             _HAS_REASON: asked.kind == "reason"}
    wants_definition = asked.definition
    out: list[Sentence] = []
    for pi, p in enumerate(passages):
        title = normalize(p.title)
        weights = {t: idf(t) * (config.title_term_weight if t in title else 1.0) for t in terms}
        total = sum(weights.values()) or 1.0
        for s, e in sentence_spans(p.text):
            sn = normalize(p.text[s:e])
            cov = sum(w for t, w in weights.items() if t in sn or any(v in sn for v in variants(t))) / total
            if cov == 0:
                continue
            score = cov + config.rank_bonus / (pi + 1)
            score += sum(config.type_bonus for pattern, wanted in wants.items() if wanted and pattern.search(sn))
            if wants_definition and p.start + s == 0:
                score += config.type_bonus  # an article's first sentence says what its subject is
            out.append(Sentence(score, pi, s, e))
    out.sort(key=lambda c: (-c.score, c.passage, c.start))
    return out


def list_items(text: str, start: int, limit: int) -> tuple[list[str], int]:
    """The items of a list that ``text`` begins at ``start`` (after a colon): each item is the
    first sentence of a run that opens with a list mark ("——", "一是", "（一）", "1."), without
    the mark; at most ``limit``. Returns the items and the offset where the last one ends; no
    items when the text after ``start`` does not open with a mark."""
    items: list[str] = []
    end = start
    window = text[start:start + _ITEM_SPAN]
    for s, e in split_sentences(window):
        sentence = window[s:e]
        if not sentence.strip():
            continue
        m = _ITEM_MARK.match(sentence)
        if m:
            if len(items) >= limit:
                break
            item = sentence[m.end():].strip().rstrip("。；;")
            if not item:
                break
            items.append(item)
            end = start + e
        elif not items:
            break  # the colon is not followed by a list
    return items, end


def _clause_spans(sentence: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in re.finditer(r"[，,；;：:、]", sentence):
        spans.append((start, m.end()))
        start = m.end()
    if start < len(sentence):
        spans.append((start, len(sentence)))
    return spans


def trim_sentence(sentence: str, question: Query, idf: Idf, budget: int, keep: tuple[int, int] | None = None) -> str:
    """The sentence without a dateline lead, cut to the clauses that matter if too long.

    ``keep`` (offsets in ``sentence``): a span that must stay whole (the short answer); the
    sentence is then never cut inside it.
    """
    sentence = sentence.strip()
    simp = to_simplified(sentence)
    lead = _DATELINE_LEAD.match(simp)
    if lead and len(simp) == len(sentence) and sentence[lead.end():].strip() and (keep is None or keep[0] >= lead.end()):
        cut = lead.end()
        sentence = sentence[cut:].strip()
        keep = (keep[0] - cut, keep[1] - cut) if keep else None
    if len(sentence) <= budget:
        return sentence
    terms = question.content_words
    clauses = _clause_spans(sentence)
    best, best_score = sentence[:budget], -1.0
    for i in range(len(clauses)):
        for j in range(i, len(clauses)):
            a, b = clauses[i][0], clauses[j][1]
            if b - a > budget:
                break
            if keep and not (a <= keep[0] and keep[1] <= b):
                continue
            window = sentence[a:b]
            wn = normalize(window)
            sc = sum(idf(t) for t in terms if t in wn) - 0.001 * len(window)
            if sc > best_score:
                best, best_score = window, sc
    if keep and best_score < 0:
        return sentence  # the answer alone is longer than the budget: never cut inside it
    best = best.strip().rstrip("，,、；;：:")
    return best + ("" if best.endswith(("。", "！", "？", "”")) else "…")


def compose(
    question: Query,
    passages: list[Passage],
    candidates: list[Sentence],
    idf: Idf,
    config: Config,
    same_story: Callable[[str, str], bool],
    keep: tuple[int, int, int] | None = None,
    mark: tuple[int, int, int] | None = None,
) -> tuple[str, list[int], list[str]]:
    """The answer text with ``[n]`` markers, the indexes of the cited passages and the sentence
    of each that supports the answer. ``keep`` = (passage, start, end) of a short answer: its
    sentence leads and is never cut inside the span; a second sentence only when it adds.
    ``mark``: a short answer that chooses nothing; when its sentence is shown, that sentence is
    its passage's highlight (as for ``keep``)."""
    mark = keep or mark
    if not candidates:
        return "", [], []
    chosen = [candidates[0]]
    for cand in candidates[1:4]:
        # overlapping chunks repeat sentences (the same place in the same article is one
        # sentence) and the same story syndicated by another outlet says nothing new either
        first, other = passages[chosen[0].passage], passages[cand.passage]
        if other.doc_id != first.doc_id and same_story(first.doc_id, other.doc_id):
            continue
        if first.doc_id == other.doc_id and first.start + chosen[0].start == other.start + cand.start:
            continue
        if keep is not None and not _adds(cand, passages, chosen[0]):
            continue
        if cand.score >= config.second_ratio * candidates[0].score:
            chosen.append(cand)
            break
    lead = chosen[0].passage
    chosen.sort(key=lambda c: (0, c.start) if c.passage == lead else (1, 0))  # reading order within a passage
    trad = is_traditional(question.text)
    parts: list[str] = []
    cited: list[int] = []
    highlights: dict[int, str] = {}
    used = 0
    for c in chosen:
        raw = passages[c.passage].text[c.start:c.end]
        room = config.answer_max_chars - used - 4
        if room < 20:
            break
        span = None
        if keep is not None and keep[0] == c.passage and c.start <= keep[1] and keep[2] <= c.end:
            offset = len(raw) - len(raw.lstrip())
            span = (keep[1] - c.start - offset, keep[2] - c.start - offset)
        piece = trim_sentence(raw, question, idf, room, keep=span)
        if parts and len(piece) + used > config.answer_max_chars:
            break
        piece = to_traditional(piece) if trad else to_simplified(piece)
        if c.passage not in cited:
            cited.append(c.passage)
            highlights[c.passage] = raw.strip()
        if mark is not None and mark[0] == c.passage and c.start <= mark[1] and mark[2] <= c.end:
            highlights[c.passage] = raw.strip()  # the sentence holding the short answer
        parts.append(f"{piece}[{cited.index(c.passage) + 1}]")
        used += len(piece) + 3
    return "".join(parts), cited, [highlights[i] for i in cited]


def _adds(cand: Sentence, passages: list[Passage], first: Sentence) -> bool:
    """A second sentence adds to the first when it shares less than half of its words."""
    a = set(keywords(passages[cand.passage].text[cand.start:cand.end]))
    b = set(keywords(passages[first.passage].text[first.start:first.end]))
    return bool(a) and len(a & b) / len(a) < 0.5


def best_sentence(passage: str, answer: str) -> str:
    """The passage sentence sharing the most character pairs with the answer (what to highlight)."""
    target = normalize(answer)
    pairs = {target[i : i + 2] for i in range(len(target) - 1)}
    best, best_score = "", -1
    for s, e in sentence_spans(passage):
        sn = normalize(passage[s:e])
        score = len({sn[i : i + 2] for i in range(len(sn) - 1)} & pairs)
        if score > best_score:
            best, best_score = passage[s:e].strip(), score
    return best
