"""Calibrate when the assistant declines: the evidence model on answerable and unanswerable questions.

Usage (each --set is an index, a file of questions answerable from it, and files of questions it
cannot answer; questions with ``no_answer: true`` always count as unanswerable; ``FILE@simplified``
asks a file's questions in Simplified script):

    python scripts/calibrate_decline.py --limit 600 \\
        --set ../bench-index/crud ../shared/bench/crud_news_dev.qa.jsonl \\
              ../shared/bench/cmrc2018_dev.qa.jsonl ../shared/bench/drcd_dev.qa.jsonl@simplified \\
        --set ../bench-index/cmrc ../shared/bench/cmrc2018_dev.qa.jsonl \\
              ../shared/bench/crud_news_dev.qa.jsonl ../shared/bench/drcd_dev.qa.jsonl@simplified \\
        --set ../bench-index/drcd ../shared/bench/drcd_dev.qa.jsonl \\
              ../shared/bench/crud_news_dev.qa.jsonl ../shared/bench/cmrc2018_dev.qa.jsonl \\
        --set ../bench-index/drcd ../shared/bench/drcd_dev.qa.jsonl@simplified \\
        --set ../bench-index/seeds ../shared/eval/seeds_dev.jsonl \\
              ../shared/bench/cmrc2018_dev.qa.jsonl ../shared/bench/crud_news_dev.qa.jsonl

For each question it records the signals the assistant's decline uses (IDF-weighted coverage of the
question's topic words by a top passage, and the best cosine), and two it could use (the rarest
topic word found; the unweighted share of topic words found). It reports what today's
``Config.evidence_weights`` keep and decline per file, on the questions about the held-out articles
(``rag.eval.split``: "test") and the others ("fit"), then fits a logistic regression on the "fit"
questions alone, each index's answerable and unanswerable questions weighing the same, for each
choice of signals, and reports the same table and the held-out AUC for it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

import rag
from rag.eval import load_questions
from rag.answering.extractive import select_sentences
from rag.eval.split import held_out
from rag.query import Query

SIGNALS = (("cov", "dense"), ("cov", "dense", "rare"), ("cov", "dense", "share"), ("soft", "dense"))


def reader_confidence(assistant: rag.Assistant, q: Query, passages: list) -> float:
    """The reader's calibrated confidence in its best span of the passages the answer reads (0 without one)."""
    passages = passages[: assistant.config.answer_passages]
    sentences = select_sentences(q, passages, assistant.retriever.idf, assistant.config)
    span = assistant.reader.read(q, passages, sentences, encoder=assistant.retriever.reader_encoder)
    return span.confidence if span is not None else 0.0


def soft_coverage(terms: list[str], idf: dict[str, float], text: str) -> float:
    """Coverage where a word the text lacks counts by the share of its character pairs the text
    has: a word jieba cut wrongly from the question ("南竿会" of 去南竿會搭) half counts."""
    total = sum(idf[t] for t in terms) or 1.0

    def found(t: str) -> float:
        if t in text or len(t) < 2:
            return float(t in text)
        pairs = [t[i:i + 2] for i in range(len(t) - 1)]
        return sum(p in text for p in pairs) / len(pairs)

    return sum(idf[t] * found(t) for t in terms) / total


def signals(assistant: rag.Assistant, question: str, history: list[dict], with_reader: bool = False) -> dict:
    q = assistant.standalone(Query.of(question), history)
    ev = assistant.evidence(q)
    terms = q.topic_words
    texts = [Query(p.context).normalized for p in ev.passages[:3]]
    idf = {t: assistant.retriever.idf(t) for t in terms}
    rarest = max(terms, key=idf.__getitem__) if terms else None
    return {
        "cov": ev.coverage, "dense": ev.dense,
        "rare": float(rarest is not None and any(rarest in t for t in texts)),
        "share": max((sum(t in x for t in terms) / len(terms) for x in texts), default=0.0) if terms else 0.0,
        "soft": max((soft_coverage(terms, idf, x) for x in texts), default=0.0) if terms else 0.0,
        "evidence": ev.score,
        **({"reader": reader_confidence(assistant, q, ev.passages)} if with_reader and ev.passages else {"reader": 0.0}),
    }


def collect(specs: list[list[str]], limit: int, with_reader: bool = False) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for index, *files in specs:
        assistant = rag.Assistant(rag.Retriever.load(index))
        for n, spec in enumerate(files):
            path, _, script = spec.partition("@")
            if script not in ("", "simplified"):
                raise SystemExit(f"{spec}: the only suffix is @simplified")
            questions = load_questions(path)
            if script == "simplified":
                questions = [q.simplified() for q in questions]
            if len(questions) > limit:
                questions = [questions[i] for i in sorted(rng.permutation(len(questions))[:limit])]
            for q in questions:
                history = [{"role": "user", "content": t} for t in q.turns]
                rows.append({
                    "set": f"{Path(index).name} ← {Path(path).name.split('.')[0]}{'@s' if script else ''}",
                    "index": index, "label": int(n == 0 and not q.no_answer),
                    "split": "test" if q.gold_docs and any(held_out(d) for d in q.gold_docs) else "fit",
                    **signals(assistant, q.question, history, with_reader),
                })
            print(f"{len(questions)} questions of {spec} asked of {index}", file=sys.stderr)
    return rows


def report(rows: list[dict], prob: np.ndarray, title: str) -> None:
    print(f"\n{title}\n\n| questions asked of | split | answerable kept | unanswerable declined |\n|---|---|---|---|")
    for name in dict.fromkeys(r["set"] for r in rows):
        for split in ("fit", "test"):
            sel = [(r["label"], p) for r, p in zip(rows, prob) if r["set"] == name and r["split"] == split]
            pos = [p for y, p in sel if y == 1]
            neg = [p for y, p in sel if y == 0]
            if sel:
                kept = f"{sum(p >= 0.5 for p in pos)}/{len(pos)} = {np.mean([p >= 0.5 for p in pos]):.3f}" if pos else ""
                declined = f"{sum(p < 0.5 for p in neg)}/{len(neg)} = {np.mean([p < 0.5 for p in neg]):.3f}" if neg else ""
                print(f"| {name} | {split} | {kept} | {declined} |")


def second_look(rows: list[dict], thresholds=(0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> None:
    """Today's decline, overruled when the reader is at least this confident in a span of the passages."""
    for c in thresholds:
        prob = np.array([1.0 if r["evidence"] >= 0.5 or r["reader"] >= c else 0.0 for r in rows])
        report(rows, prob, f"Declined unless the evidence reaches 0.5 or the reader's confidence {c}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", nargs="+", action="append", required=True, metavar="INDEX ANSWERABLE [UNANSWERABLE ...]")
    ap.add_argument("--limit", type=int, default=600, help="questions taken at random (seed 0) from each file")
    ap.add_argument("--reader", action="store_true",
                    help="also read the passages and report declines overruled by the reader's confidence (slower)")
    ap.add_argument("--rows", help="save the signals of every question to this JSON-lines file")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rows = collect(args.set, args.limit, args.reader)
    if args.rows:
        Path(args.rows).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if args.reader:
        second_look(rows)
    w_cov, w_dense, bias, _ = rag.Config().evidence_weights
    today = np.array([1 / (1 + math.exp(-(w_cov * r["cov"] + w_dense * r["dense"] + bias))) for r in rows])
    test = np.array([r["split"] == "test" for r in rows])
    y = np.array([r["label"] for r in rows])
    soft = np.array([1 / (1 + math.exp(-(w_cov * r["soft"] + w_dense * r["dense"] + bias))) for r in rows])
    report(rows, soft, "Today's evidence_weights on the soft coverage (a missing word counts by its character pairs found)")
    report(rows, today, f"Today's evidence_weights {rag.Config().evidence_weights} (held-out AUC "
                        f"{roc_auc_score(y[test], today[test]):.3f})")
    fit = ~test
    groups = [(r["index"], r["label"]) for r in rows]
    counts = Counter(g for g, f in zip(groups, fit) if f)  # fitted questions per (index, label)
    weight = np.array([1.0 / counts[g] if counts[g] else 0.0 for g in groups])
    for names in SIGNALS:
        X = np.array([[r[s] for s in names] for r in rows])
        model = LogisticRegression(C=100).fit(X[fit], y[fit], sample_weight=weight[fit])
        prob = model.predict_proba(X)[:, 1]
        coef = ", ".join(f"{s} {c:.2f}" for s, c in zip(names, model.coef_[0]))
        typical = float(np.median(X[(y == 1) & fit, 1]))
        report(rows, prob, f"Refit on {', '.join(names)}: {coef}, bias {model.intercept_[0]:.2f} "
                           f"(typical answerable cosine {typical:.3f}); held-out AUC {roc_auc_score(y[test], prob[test]):.3f}")


if __name__ == "__main__":
    main()
