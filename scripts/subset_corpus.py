"""Write a reproducible subset of an *.articles.jsonl corpus that always contains the gold articles.

    python scripts/subset_corpus.py ../shared/bench/crud_news.articles.jsonl \
        ../shared/bench/crud_news_dev.qa.jsonl --size 20000 --out /tmp/crud20k/crud20k.articles.jsonl

Every article named in a question's ``gold_docs`` is kept; the rest of the subset is a
seeded random sample of the other articles, written in the corpus's original order.
Reads ``.jsonl`` or ``.jsonl.xz``.
"""
from __future__ import annotations

import argparse
import json
import lzma
import random
from pathlib import Path


def open_text(path: Path):
    return lzma.open(path, "rt", encoding="utf-8") if path.suffix == ".xz" else open(path, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("articles", type=Path)
    ap.add_argument("questions", type=Path)
    ap.add_argument("--size", type=int, required=True, help="articles in the subset (gold ones included)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    gold = set()
    with open_text(args.questions) as f:
        for line in f:
            gold.update(json.loads(line).get("gold_docs") or [])
    with open_text(args.articles) as f:
        lines = f.readlines()
    ids = [json.loads(line)["id"] for line in lines]
    missing = gold - set(ids)
    if missing:
        raise SystemExit(f"{len(missing)} gold articles are not in {args.articles}, e.g. {sorted(missing)[:3]}")
    others = [i for i, doc_id in enumerate(ids) if doc_id not in gold]
    keep = {i for i, doc_id in enumerate(ids) if doc_id in gold}
    keep.update(random.Random(args.seed).sample(others, max(0, min(len(others), args.size - len(keep)))))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(lines[i] for i in sorted(keep))
    chars = sum(len(json.loads(lines[i]).get("text", "")) for i in keep)
    print(f"{len(keep)} of {len(lines)} articles ({len(gold)} gold), {chars:,} characters of text -> {args.out}")


if __name__ == "__main__":
    main()
