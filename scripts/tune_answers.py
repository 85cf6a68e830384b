"""Measure extractive answer selection on a question set with retrieval done once.

Usage:
    python scripts/tune_answers.py --index INDEX QUESTIONS.qa.jsonl [--limit 400] [--set TITLE_TERM_WEIGHT=0.35 ...]

Retrieves once per question, then composes answers with the current weights (or the ones given
with --set, e.g. TYPE_BONUS=0.2) and prints the answer hit rate (any of `answers` in the answer,
after folding script, width and spaces), declines and mean answer length.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rag  # noqa: E402
from rag.text import compact  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("questions")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--set", action="append", default=[], help="NAME=VALUE class attribute of Assistant to try")
    args = ap.parse_args()
    assistant = rag.Assistant(rag.Retriever.load(args.index))
    for kv in args.set:
        name, value = kv.split("=")
        setattr(assistant, name, float(value))
    qs = [json.loads(line) for line in open(args.questions, encoding="utf-8") if line.strip()]
    rng = np.random.default_rng(1)
    qs = [qs[i] for i in sorted(rng.permutation(len(qs))[: args.limit])]
    hit = declined = 0
    lengths = []
    for d in qs:
        ev = assistant.evidence(d["question"])
        if ev.score < assistant.config.decline_threshold:
            declined += 1
            continue
        text, _, _ = assistant._compose(d["question"], ev.hits)
        lengths.append(len(re.sub(r"\[\d+\]", "", text)))
        hit += any(compact(a) in compact(text) for a in d["answers"])
    n = len(qs)
    print(f"questions {n}  answer hit rate {hit / n:.3f}  declined {declined}  mean answer length {np.mean(lengths):.1f}")


if __name__ == "__main__":
    main()
