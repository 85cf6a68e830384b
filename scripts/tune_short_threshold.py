"""Short-answer EM / F1 per reader-confidence threshold, on the reader's validation questions.

    .venv/bin/python scripts/tune_short_threshold.py ../shared/bench/cmrc2018_dev.qa.jsonl --index ../bench-index/cmrc

Asks every validation question (articles outside the held-out part with
``sha1('val:' + id) % 6 == 0``: used for early stopping and calibration, never trained on) once
with ``short_min_confidence`` 0, records the reader's confidence, and prints what each threshold
would give: share of questions with a short answer, EM / F1 (an empty short answer counts 0), the
mean F1 of the short answers given, and of those added below the previous threshold.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from eval_reader import validation

from rag.answering.assistant import Assistant
from rag.eval.metrics import span_em, span_f1
from rag.eval.split import held_out
from rag.search.retrieval import Retriever


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("questions", help="*.qa.jsonl (id, question, answers, gold_docs)")
    ap.add_argument("--index", required=True)
    ap.add_argument("--thresholds", default="0,0.1,0.15,0.2,0.25,0.3,0.4")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in open(args.questions, encoding="utf-8") if line.strip()]
    rows = [r for r in rows if not held_out(r["gold_docs"][0]) and validation(r["gold_docs"][0])]
    retriever = Retriever.load(args.index)
    assistant = Assistant(retriever, config=dataclasses.replace(retriever.config, short_min_confidence=0.0))
    read = assistant.reader.read
    last: dict[str, float] = {}

    def recording(*a, **k):
        span = read(*a, **k)
        last["confidence"] = span.confidence if span else -1.0
        return span

    assistant.reader.read = recording
    out = []
    for r in rows:
        last["confidence"] = -1.0
        short = assistant.ask(r["question"]).short
        out.append((last["confidence"], span_f1(short, r["answers"]) if short else 0.0,
                    span_em(short, r["answers"]) if short else 0.0, bool(short)))
    o = np.array(out)
    print(f"{len(rows)} validation questions")
    print("threshold | short given | EM | F1 | F1 of those given | F1 of those added below the previous")
    prev = None
    for t in sorted(float(x) for x in args.thresholds.split(","))[::-1]:
        given = (o[:, 0] >= t) & (o[:, 3] > 0)
        added = given & ~prev if prev is not None else given
        print(f"{t:.2f} | {given.mean():.3f} | {(o[:, 2] * given).mean():.3f} | {(o[:, 1] * given).mean():.3f} | "
              f"{o[given, 1].mean() if given.any() else 0:.3f} | {o[added, 1].mean() if added.any() else 0:.3f}")
        prev = given
    return 0


if __name__ == "__main__":
    sys.exit(main())
