"""Calibrate the decline threshold: evidence scores of answerable vs unanswerable questions.

Usage:
    python scripts/calibrate_decline.py --index index \
        --answerable ../shared/eval/seeds_dev.jsonl \
        --unanswerable ../shared/bench/cmrc2018_dev.qa.jsonl ../shared/bench/drcd_dev.qa.jsonl [--limit 400]

Answerable questions are those of the answerable files without ``no_answer``; every question of
an ``--unanswerable`` file counts as unanswerable for this index (e.g. Wikipedia questions asked of
a news index), plus the ``no_answer`` questions of the answerable files. Prints the score
distributions and the threshold that declines the most unanswerable questions while keeping every
answerable one (with a margin), which is what `Config.decline_threshold` is set to.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rag  # noqa: E402
from rag.answering import Assistant  # noqa: E402


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default="index")
    ap.add_argument("--answerable", nargs="+", required=True)
    ap.add_argument("--unanswerable", nargs="*", default=[])
    ap.add_argument("--limit", type=int, default=400, help="questions taken (at random, seed 0) from each file")
    args = ap.parse_args()

    assistant = Assistant(rag.Retriever.load(args.index))
    pos, neg = [], []
    rng = np.random.default_rng(0)
    for f in args.answerable:
        rows = load(f)
        for i in sorted(rng.permutation(len(rows))[: args.limit]):
            d = rows[i]
            history = [{"role": "user", "content": t} for t in d.get("turns", [])]
            ev = assistant._resolve(d["question"], history)
            (neg if d.get("no_answer") else pos).append(ev.score)
    for f in args.unanswerable:
        qs = load(f)
        for i in rng.permutation(len(qs))[: args.limit]:
            neg.append(assistant.evidence(qs[i]["question"]).score)
    pos_a, neg_a = np.array(pos), np.array(neg)
    print(f"answerable   n={len(pos_a)}  min={pos_a.min():.3f}  p5={np.percentile(pos_a, 5):.3f}  median={np.median(pos_a):.3f}")
    print(f"unanswerable n={len(neg_a)}  max={neg_a.max():.3f}  p95={np.percentile(neg_a, 95):.3f}  median={np.median(neg_a):.3f}")
    print("threshold  answerable-kept  unanswerable-declined")
    for t in np.arange(0.20, 0.71, 0.05):
        print(f"  {t:.2f}      {np.mean(pos_a >= t):6.3f}          {np.mean(neg_a < t):6.3f}")
    # keep every answerable question with a margin below the weakest one, decline as much as possible
    best = min(pos_a.min() - 0.03, float(np.percentile(pos_a, 2)))
    print(f"chosen threshold: {best:.2f} (answerable kept {np.mean(pos_a >= best):.3f}, "
          f"unanswerable declined {np.mean(neg_a < best):.3f})")


if __name__ == "__main__":
    main()
