"""Measure extractive answers on a question set with other sentence-selection settings.

Usage:
    python scripts/tune_answers.py --index INDEX QUESTIONS.qa.jsonl [--limit 400] [--set title_term_weight=0.35 ...]

Answers a sample of the questions (seeded, the same each run) with the current Config, or with the
fields given with --set (title_term_weight, type_bonus, rank_bonus, second_ratio, ...), and prints
the answer hit rate (any of `answers` in the answer text, after folding script, width and
spaces), declines and mean answer length.
"""
from __future__ import annotations

import argparse
import json
import re

import numpy as np

import rag
from rag.text import compact


def settings(pairs: list[str]) -> dict[str, float]:
    """``NAME=VALUE`` pairs as Config fields (lower case) and numbers."""
    out = {}
    for kv in pairs:
        name, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"--set {kv!r}: expected NAME=VALUE, e.g. type_bonus=0.2")
        out[name.strip().lower()] = float(value)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("questions")
    ap.add_argument("--limit", type=int, default=400)
    ap.add_argument("--set", action="append", default=[], help="NAME=VALUE: a Config field to try")
    args = ap.parse_args(argv)
    retriever = rag.Retriever.load(args.index)
    assistant = rag.Assistant(retriever, config=retriever.config.with_(**settings(args.set)))
    qs = [json.loads(line) for line in open(args.questions, encoding="utf-8") if line.strip()]
    rng = np.random.default_rng(1)
    qs = [qs[i] for i in sorted(rng.permutation(len(qs))[: args.limit])]
    hit = declined = 0
    lengths = []
    for d in qs:
        answer = assistant.ask(d["question"])
        if not answer.grounded:
            declined += 1
            continue
        lengths.append(len(re.sub(r"\[\d+\]", "", answer.text)))
        hit += any(compact(a) in compact(answer.text) for a in d["answers"])
    n = len(qs)
    print(f"questions {n}  answer hit rate {hit / n:.3f}  declined {declined}  "
          f"mean answer length {np.mean(lengths) if lengths else 0:.1f}")


if __name__ == "__main__":
    main()
