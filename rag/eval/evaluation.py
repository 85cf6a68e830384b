"""Evaluation: run a question set against an index and measure retrieval, answers and latency.

Example::

    from rag.eval import load_questions, evaluate
    report = evaluate(Retriever.load("index"), load_questions("seeds_dev.jsonl"))
    print(report.table())
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..records import OTHERS_LINE, Answer, Passage
from ..text import compact
from .metrics import span_em, span_f1
from .questions import Question, load_questions

__all__ = [
    "Question",
    "RetrievalScores",
    "AnswerScores",
    "EvalReport",
    "load_questions",
    "first_relevant_rank",
    "retrieval_scores",
    "answer_hit",
    "evaluate",
    "percentile",
    "MODES",
    "keyword_only_retriever",
]

log = logging.getLogger(__name__)

MODES = ("hybrid", "keyword", "dense")
_CITATION = re.compile(r"\[\d+\]")


# --- metrics -----------------------------------------------------------------------------------
def first_relevant_rank(passages: list[Passage], question: Question) -> int | None:
    """1-based rank of the first relevant article, counting each article once (in rank order).

    Relevant: its id, or the id of a near-identical article folded into it (the same story
    from another outlet, shown once), is in ``gold_docs``; without gold ids, one of its retrieved
    passages contains an ``evidence`` string (both sides compacted). None when no article is relevant.
    """
    gold = set(question.gold_docs)
    evidence = [compact(e) for e in question.evidence] if not gold else []
    seen: dict[str, int] = {}
    best: int | None = None
    for p in passages:
        rank = seen.setdefault(p.doc_id, len(seen) + 1)
        if best is not None and rank >= best:
            continue
        if gold:
            hit = p.doc_id in gold or not gold.isdisjoint(p.same_story)
        else:
            text = compact(p.text)
            hit = any(e and e in text for e in evidence)
        if hit:
            best = rank
    return best


@dataclass(frozen=True)
class RetrievalScores:
    """Article-level recall at 1, 5 and k and MRR@k of one retrieval mode."""

    mode: str
    questions: int
    recall_at_1: float
    recall_at_5: float
    recall_at_k: float
    mrr_at_k: float
    k: int
    search_p50_ms: float
    search_p95_ms: float
    answer_in_5: float | None = None  # share of questions with a gold answer string in the top 5 passages


def retrieval_scores(mode: str, ranks: list[int | None], k: int, latencies: list[float] | None = None,
                     answer_in_5: list[bool] | None = None) -> RetrievalScores:
    """Recall@1/5/k and MRR@k from first-relevant ranks (None = not found); ``answer_in_5``: per
    question with gold answers, whether one of them is in the top 5 passages."""
    n = len(ranks)

    def recall(c: int) -> float:
        return sum(1 for r in ranks if r is not None and r <= c) / n if n else 0.0

    mrr = sum(1.0 / r for r in ranks if r is not None and r <= k) / n if n else 0.0
    lat = latencies or []
    return RetrievalScores(
        mode=mode,
        questions=n,
        recall_at_1=recall(1),
        recall_at_5=recall(5),
        recall_at_k=recall(k),
        mrr_at_k=mrr,
        k=k,
        search_p50_ms=percentile(lat, 50) * 1000,
        search_p95_ms=percentile(lat, 95) * 1000,
        answer_in_5=sum(answer_in_5) / len(answer_in_5) if answer_in_5 else None,
    )


def answer_hit(answer_text: str, question: Question) -> bool:
    """Any of ``answers`` or all of ``must_include`` occur in the answer (NFKC + t2s + no whitespace)."""
    text = compact(answer_text)
    if question.answers and any(compact(a) in text for a in question.answers):
        return True
    if question.must_include and all(compact(m) in text for m in question.must_include):
        return True
    return False


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation), 0.0 for no values."""
    return float(np.percentile(values, q)) if values else 0.0


@dataclass(frozen=True)
class AnswerScores:
    """What the assistant's answers got right, and how fast."""

    answerable: int
    hits: int
    hit_rate: float
    wrongly_declined: int
    mean_answer_chars: float
    no_answer: int
    declined_no_answer: int
    ask_p50_ms: float
    ask_p95_ms: float
    short_em: float = 0.0  # CMRC 2018 EM / F1 of Answer.short (empty counts 0) over answerable questions with answers
    short_f1: float = 0.0
    text_f1: float = 0.0  # the same F1 of the whole answer text, for comparison
    short_given: float = 0.0  # share of grounded answers that have a short answer
    mean_short_chars: float = 0.0
    short_hit_rate: float = 0.0  # share of answerable questions whose short answer holds the gold (as hit_rate)
    lead_hit_rate: float = 0.0  # hit_rate of the answer without its "另见：" line of other stories


@dataclass
class EvalReport:
    """Everything one evaluation run measured; ``table()`` for people, ``to_dict()`` for JSON."""

    questions: int
    k: int
    retrieval: list[RetrievalScores]
    answers: AnswerScores | None
    settings: dict = field(default_factory=dict)
    misses: list[dict] = field(default_factory=list)
    by_kind: dict[str, dict] = field(default_factory=dict)
    by_answer: dict[str, dict] = field(default_factory=dict)  # by gold answer length, by what is asked

    def to_dict(self) -> dict:
        return {
            "questions": self.questions,
            "k": self.k,
            "settings": self.settings,
            "retrieval": {r.mode: asdict(r) for r in self.retrieval},
            "answers": asdict(self.answers) if self.answers else None,
            "by_kind": self.by_kind,
            "by_answer": self.by_answer,
            "answer_misses": self.misses,
        }

    def table(self) -> str:
        k = self.k
        lines = [f"{self.questions} questions; retrieval at article level (passages deduplicated by article)", ""]
        if self.retrieval:
            n = self.retrieval[0].questions
            lines.append(f"retrieval ({n} questions with gold articles or evidence)")
            lines.append(f"| mode | R@1 | R@5 | R@{k} | MRR@{k} | gold answer in top 5 passages | search p50 / p95 ms |")
            lines.append("|---|---|---|---|---|---|---|")
            for r in self.retrieval:
                in5 = "" if r.answer_in_5 is None else f"{r.answer_in_5:.3f}"
                lines.append(
                    f"| {r.mode} | {r.recall_at_1:.3f} | {r.recall_at_5:.3f} | {r.recall_at_k:.3f} | "
                    f"{r.mrr_at_k:.3f} | {in5} | {r.search_p50_ms:.0f} / {r.search_p95_ms:.0f} |"
                )
        a = self.answers
        if a:
            lines += ["", "answers", "| measure | value |", "|---|---|"]
            if a.answerable:
                lines.append(f"| answer hit rate | {a.hit_rate:.3f} ({a.hits}/{a.answerable}) |")
                lines.append(f"| the same without the line of other stories (另见) | {a.lead_hit_rate:.3f} |")
                lines.append(f"| answerable but declined | {a.wrongly_declined}/{a.answerable} |")
            lines.append(f"| mean answer length (chars, citation marks removed) | {a.mean_answer_chars:.1f} |")
            lines.append(f"| short answer EM / F1 (text F1) | {a.short_em:.3f} / {a.short_f1:.3f} ({a.text_f1:.3f}) |")
            lines.append(f"| short answer given / mean chars | {a.short_given:.3f} / {a.mean_short_chars:.1f} |")
            if a.answerable:
                lines.append(f"| short answer hit rate (holds the gold answer) | {a.short_hit_rate:.3f} |")
            if a.no_answer:
                lines.append(f"| no-answer questions declined | {a.declined_no_answer}/{a.no_answer} |")
            lines.append(f"| ask latency p50 / p95 ms | {a.ask_p50_ms:.0f} / {a.ask_p95_ms:.0f} |")
        if self.by_kind:
            modes = [r.mode for r in self.retrieval]
            lines += ["", "by kind", "| kind | questions | " + " | ".join(f"{m} R@1 / R@5 / R@{k}" for m in modes)
                      + " | hit | short EM / F1 | declined |", "|---" * (len(modes) + 5) + "|"]
            for kind, v in self.by_kind.items():
                cells = [" / ".join(f"{x:.3f}" for x in v[m].values()) if m in v else "" for m in modes]
                em_f1 = f"{v['short_em']:.3f} / {v['short_f1']:.3f}" if "short_em" in v else ""
                lines.append(f"| {kind} | {v['questions']} | " + " | ".join(cells)
                             + f" | {v.get('hit', float('nan')):.3f} | {em_f1} | {v.get('declined', float('nan')):.3f} |")
        if self.by_answer:
            lines += ["", "answers by gold answer length and by what the question asks (Query.asked.kind)",
                      "| group | questions | hit | short EM / F1 | declined |", "|---|---|---|---|---|"]
            for group, v in self.by_answer.items():
                lines.append(f"| {group} | {v['questions']} | {v['hit']:.3f} | {v['short_em']:.3f} / {v['short_f1']:.3f} "
                             f"| {v['declined']:.3f} |")
        return "\n".join(lines)


_BANDS = ((10, "gold under 10 chars"), (20, "gold 10-19 chars"), (40, "gold 20-39 chars"), (10**9, "gold 40+ chars"))


def _answer_groups(q: Question) -> list[str]:
    """The groups an answerable question's answer scores are also reported in."""
    from ..query import Query

    band = next(name for limit, name in _BANDS if len(q.answers[0]) < limit)
    return [band, f"asks {Query.of(q.question).asked.kind}"]


# --- the run -----------------------------------------------------------------------------------
def _retrieval_query(q: Question) -> str:
    """What retrieval is measured with: a follow-up question is searched together with the turn before it."""
    return f"{q.turns[-1]} {q.question}" if q.turns else q.question


def _answer_chars(a: Answer) -> int:
    return len(_CITATION.sub("", a.text).strip())


def evaluate(
    retriever,
    questions: Iterable[Question],
    *,
    k: int = 10,
    modes: Iterable[str] = MODES,
    answers: bool = True,
    chunk_pool: int | None = None,
    show_progress: bool = False,
    reader=None,
) -> EvalReport:
    """Run every question through each retrieval mode and (when ``answers``) the Assistant.

    Article ranks come from the top ``chunk_pool`` chunks (default ``max(30, 3 * k)``)
    deduplicated by article. Follow-ups are asked after their ``turns``, with that history.
    When the retriever runs search stages (the reranker), hybrid is also measured on fusion alone
    (mode ``fused``). Questions with a ``kind`` are also scored per kind (``EvalReport.by_kind``).
    ``reader``: the span reader the Assistant answers with (default: the shipped one).
    """
    questions = list(questions)
    modes = list(modes)
    searchers = {m: retriever for m in modes}
    if "hybrid" in modes and getattr(retriever, "stages", ()):
        modes.insert(modes.index("hybrid") + 1, "fused")
        searchers["fused"] = retriever.with_stages()
    per_kind: dict[str, dict[str, list]] = {}
    per_answer: dict[str, dict[str, list]] = {}
    pool = chunk_pool or max(30, 3 * k)
    ranks: dict[str, list[int | None]] = {m: [] for m in modes}
    search_lat: dict[str, list[float]] = {m: [] for m in modes}
    in5: dict[str, list[bool]] = {m: [] for m in modes}
    assistant = None
    if answers:
        from ..answering.assistant import Assistant

        assistant = Assistant(retriever, reader=reader)
    tally = _AnswerTally()
    it = questions
    if show_progress:
        from tqdm.auto import tqdm

        it = tqdm(questions, desc="evaluating", unit="question")
    for q in it:
        if q.has_gold and not q.no_answer:
            query = _retrieval_query(q)
            for m in modes:
                t0 = time.perf_counter()
                ps = searchers[m].search(query, k=pool, mode="hybrid" if m == "fused" else m, per_article=None)
                search_lat[m].append(time.perf_counter() - t0)
                ranks[m].append(first_relevant_rank(ps, q))
                if q.kind:
                    per_kind.setdefault(q.kind, {}).setdefault(m, []).append(ranks[m][-1])
                if q.answers:
                    in5[m].append(any(answer_hit(p.text, q) for p in ps[:5]))
        if assistant is not None:
            scored = tally.add(q, *_ask(assistant, q))
            if q.kind and scored:
                for name, value in scored.items():
                    per_kind.setdefault(q.kind, {}).setdefault(name, []).append(value)
            if scored and "short_f1" in scored:
                for group in _answer_groups(q):
                    for name, value in scored.items():
                        per_answer.setdefault(group, {}).setdefault(name, []).append(value)
    retrieval = [retrieval_scores(m, ranks[m], k, search_lat[m], in5[m]) for m in modes if ranks[m]]
    log.info("evaluated %d questions", len(questions))
    return EvalReport(questions=len(questions), k=k, retrieval=retrieval,
                      answers=tally.scores() if assistant is not None else None, misses=tally.misses,
                      by_kind={kind: _kind_scores(v, k) for kind, v in sorted(per_kind.items())},
                      by_answer={g: _kind_scores(per_answer[g], k) for g in
                                 [b for _, b in _BANDS if b in per_answer] + sorted(g for g in per_answer if g.startswith("asks"))})


def _ask(assistant, q: Question) -> tuple[Answer, float]:
    """The assistant's answer to ``q`` (after its earlier turns, with that history) and its seconds."""
    history: list[dict] = []
    for turn in q.turns:
        prev = assistant.ask(turn, history=list(history))
        history += [{"role": "user", "content": turn}, {"role": "assistant", "content": prev.text}]
    t0 = time.perf_counter()
    a = assistant.ask(q.question, history=history or None)
    return a, time.perf_counter() - t0


@dataclass
class _AnswerTally:
    """The answers of a run, counted as they come."""

    # like the reports (BuildReport, BenchReport), typed counters with defaults: alike in shape, by design

    hits: int = 0
    lead_hits: int = 0
    short_hits: int = 0
    wrongly_declined: int = 0
    declined_none: int = 0
    no_answer: int = 0
    answerable: int = 0
    lengths: list = field(default_factory=list)
    short_lengths: list = field(default_factory=list)
    em: list = field(default_factory=list)
    f1: list = field(default_factory=list)
    text_f1: list = field(default_factory=list)
    latencies: list = field(default_factory=list)
    misses: list = field(default_factory=list)

    def add(self, q: Question, a: Answer, seconds: float) -> dict | None:
        """Count one answer; returns its scores (hit, declined, short EM / F1) for an answerable question."""
        self.latencies.append(seconds)
        if a.grounded:
            self.lengths.append(_answer_chars(a))
            self.short_lengths.append(len(a.short))
        declined = not a.grounded or bool(a.missing)  # "文章未提及总投资" declines what was asked
        if q.no_answer:
            self.no_answer += 1
            self.declined_none += declined
            return None
        if not (q.answers or q.must_include):
            return None
        self.answerable += 1
        ok = answer_hit(a.text, q)
        scored: dict = {"hit": ok, "declined": declined}
        if q.answers:
            scored |= {"short_em": span_em(a.short, q.answers), "short_f1": span_f1(a.short, q.answers)}
            self.em.append(scored["short_em"])
            self.f1.append(scored["short_f1"])
            self.text_f1.append(span_f1(_CITATION.sub("", a.text) if a.grounded else "", q.answers))
        self.hits += ok
        self.lead_hits += ok and answer_hit(a.text.split(OTHERS_LINE)[0], q)
        self.short_hits += bool(a.short) and answer_hit(a.short, q)
        self.wrongly_declined += declined
        if not ok and len(self.misses) < 50:
            self.misses.append({"id": q.id, "question": q.question, "expected": list(q.answers or q.must_include),
                                "answer": a.text, "short": a.short})
        return scored

    def scores(self) -> AnswerScores:
        n, shorts = self.answerable, self.short_lengths
        return AnswerScores(
            answerable=n,
            hits=self.hits,
            hit_rate=self.hits / n if n else 0.0,
            wrongly_declined=self.wrongly_declined,
            mean_answer_chars=float(np.mean(self.lengths)) if self.lengths else 0.0,
            no_answer=self.no_answer,
            declined_no_answer=self.declined_none,
            ask_p50_ms=percentile(self.latencies, 50) * 1000,
            ask_p95_ms=percentile(self.latencies, 95) * 1000,
            short_em=float(np.mean(self.em)) if self.em else 0.0,
            short_f1=float(np.mean(self.f1)) if self.f1 else 0.0,
            text_f1=float(np.mean(self.text_f1)) if self.text_f1 else 0.0,
            short_given=sum(1 for x in shorts if x) / len(shorts) if shorts else 0.0,
            mean_short_chars=float(np.mean([x for x in shorts if x])) if any(shorts) else 0.0,
            short_hit_rate=self.short_hits / n if n else 0.0,
            lead_hit_rate=self.lead_hits / n if n else 0.0,
        )


def _kind_scores(values: dict[str, list], k: int) -> dict:
    """One kind's recall per mode and answer scores, from its questions' ranks and answers."""
    out: dict = {"questions": max((len(v) for v in values.values()), default=0)}
    for name, v in values.items():
        if name in ("hit", "declined", "short_em", "short_f1"):
            out[name] = round(float(np.mean(v)), 3)
        else:
            out[name] = {f"R@{c}": round(sum(r is not None and r <= c for r in v) / len(v), 3) for c in (1, 5, k)}
    return out


def keyword_only_retriever(data_dir: str | Path, config=None, show_progress: bool = False):
    """An unsaved keyword-only (BM25) Retriever of a folder too big to embed here, and its build
    stats (read and index seconds). Only ``search(..., mode="keyword")`` and answers work on it."""
    from ..config import Config
    from ..search.retrieval import Retriever
    from ..reading.sources import read_articles

    config = (config or Config()).with_(dense=False)
    t0 = time.perf_counter()
    result = read_articles([data_dir])
    t_read = time.perf_counter() - t0
    r, report = Retriever.from_articles(result.articles, config, show_progress=show_progress)
    stats = {
        "articles": report.articles,
        "chunks": report.chunks,
        "characters": sum(len(a.text) for a in result.articles),
        "read_s": t_read,
        "index_s": time.perf_counter() - t0 - t_read,
    }
    log.info("keyword-only index of %s: %s", data_dir, stats)
    return r, stats
