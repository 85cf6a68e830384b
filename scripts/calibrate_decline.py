"""Calibrate when the assistant declines: fit the evidence model on answerable and unanswerable questions.

Usage (each --set is an index, a file of questions answerable from it, and files of questions it
cannot answer; questions with ``no_answer: true`` always count as unanswerable):

    python scripts/calibrate_decline.py \
        --set index ../shared/eval/seeds_dev.jsonl ../shared/bench/cmrc2018_dev.qa.jsonl ../shared/bench/drcd_dev.qa.jsonl ../shared/bench/crud_news_dev.qa.jsonl \
        --set /path/to/cmrc-index ../shared/bench/cmrc2018_dev.qa.jsonl ../shared/bench/crud_news_dev.qa.jsonl ../shared/eval/seeds_dev.jsonl \
        --limit 300

For each question it records the two evidence signals the assistant uses (IDF-weighted coverage
of the question's content words by a top passage, and the best dense cosine), fits a
class-balanced logistic regression, and prints the weights for ``Config.evidence_weights`` with
the share of answerable questions kept and unanswerable ones declined, per set and per threshold.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rag  # noqa: E402
from rag.query import Query  # noqa: E402


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", nargs="+", action="append", required=True, metavar="INDEX ANSWERABLE [UNANSWERABLE ...]")
    ap.add_argument("--limit", type=int, default=300, help="questions taken at random (seed 0) from each file")
    args = ap.parse_args()
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    rows: list[tuple[str, int, float, float]] = []
    for spec in args.set:
        index, answerable, *unanswerable = spec
        assistant = rag.Assistant(rag.Retriever.load(index))
        for path, label in [(answerable, 1)] + [(u, 0) for u in unanswerable]:
            qs = load(path)
            for i in sorted(rng.permutation(len(qs))[: args.limit]):
                d = qs[i]
                history = [{"role": "user", "content": t} for t in d.get("turns", [])]
                ev = assistant.evidence(assistant.standalone(Query.of(d["question"]), history))
                rows.append((index, 0 if d.get("no_answer") else label, ev.coverage, ev.dense))
    X = np.array([[r[2], r[3]] for r in rows])
    y = np.array([r[1] for r in rows])
    model = LogisticRegression(C=100, class_weight="balanced").fit(X, y)
    (w_cov, w_dense), bias = model.coef_[0], model.intercept_[0]
    typical = float(np.median(X[y == 1, 1]))
    print(f"questions: {len(y)} ({int(y.sum())} answerable, {int((1 - y).sum())} unanswerable)")
    print(f"evidence_weights = ({w_cov:.2f}, {w_dense:.2f}, {bias:.2f}, {typical:.3f})")
    prob = model.predict_proba(X)[:, 1]
    print("set                              threshold  answerable-kept  unanswerable-declined")
    for index in dict.fromkeys(r[0] for r in rows):
        sel = np.array([r[0] == index for r in rows])
        for t in (0.3, 0.5, 0.7):
            kept = np.mean(prob[sel & (y == 1)] >= t)
            declined = np.mean(prob[sel & (y == 0)] < t)
            print(f"{index[-32:]:32s} {t:9.1f}  {kept:15.3f}  {declined:21.3f}")


if __name__ == "__main__":
    main()
