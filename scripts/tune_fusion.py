"""Tune hybrid fusion offline: collect both retrievers' candidates once, then score fusion variants.

Step 1 (slow, once per question set; embeds every question):

    python scripts/tune_fusion.py collect ../shared/bench/cmrc2018_dev.qa.jsonl --index IDX --out cmrc.pkl
    python scripts/tune_fusion.py collect ../shared/bench/drcd_dev.qa.jsonl --index IDX --simplify-questions --out drcd_s.pkl

Step 2 (milliseconds per variant): grid-search the fusion parameters on the questions of the
dev half (``sha1(question id) % 2 == 0``) of every cached set (to stderr), and print R@1 / R@5 of
the keyword, dense, old hybrid (RRF) and the best (or ``--report``) settings on the dev half,
the test half and all:

    python scripts/tune_fusion.py tune cmrc.pkl drcd_t.pkl drcd_s.pkl crud.pkl --report 0.8,0.08

Step 3 (a minute per setting): extractive answer hit rate of RRF and of chosen settings, per half,
since the answers are drawn from the top passages and depend on the fused order too:

    python scripts/tune_fusion.py answers ../shared/bench/cmrc2018_dev.qa.jsonl --index IDX --setting 0.8,0.08

Ranks are measured as ``rag eval`` does: the top ``3 * 30`` fused chunks, near-duplicate
stories folded, the first 30 kept, articles counted once. One difference: ``rag eval`` also folds a
passage that repeats the text of a shown one (the caches hold no texts). On the four sets this
changes no R@1 or R@5; CRUD's R@10 is 0.735 there against 0.706 here.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import pickle
import sys
import time
from pathlib import Path

POOL = 30  # rag eval: k=10 -> chunk_pool max(30, 3 * k)


# --- step 1: candidates ----------------------------------------------------------------------
def collect(args) -> None:
    import numpy as np

    from rag import Retriever
    from rag.eval import load_questions
    from rag.eval.split import held_out
    from rag.query import Query

    r = Retriever.load(args.index)
    questions = [q for q in load_questions(args.questions) if q.has_gold and not q.no_answer]
    if args.held_out:
        questions = [q for q in questions if q.gold_docs and all(held_out(d) for d in q.gold_docs)]
    if args.simplify_questions:
        questions = [q.simplified() for q in questions]
    n = max(r.config.dense_candidates, r.config.keyword_candidates, 3 * POOL)
    out = []
    t0 = time.perf_counter()
    for i, q in enumerate(questions):
        text = f"{q.turns[-1]} {q.question}" if q.turns else q.question
        query = Query.of(text)
        vec = r.embedder.embed_queries([query.folded[:512]])[0]
        dense = r.engine.dense_search(vec, n, None)
        keyword = r.engine.keyword_search(query.tokens, n, None)
        union = list(dict.fromkeys([k for k, _ in dense] + [k for k, _ in keyword]))
        vecs = r.engine.vectors(union)
        cos = {k: float(np.dot(vecs[k], vec)) for k in union}
        deep = dict(r.engine.keyword_search(query.tokens, 1000, None))
        docs = sorted({r.article_of(k) for k in union})
        dups = [(a, b) for a, b in itertools.combinations(docs, 2) if r.near_duplicates(a, b)]
        out.append({
            "id": q.id, "gold": tuple(q.gold_docs), "question": text,
            "dense": dense, "keyword": keyword,
            "cos": cos, "bm25": {k: deep.get(k, 0.0) for k in union},
            "doc": {k: r.article_of(k) for k in union}, "dups": dups,
        })
        if (i + 1) % 200 == 0:
            print(f"{i + 1}/{len(questions)} questions, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    Path(args.out).write_bytes(pickle.dumps({"index": str(args.index), "questions": out}))
    print(f"{len(out)} questions -> {args.out}")


# --- step 2: fusion variants -----------------------------------------------------------------
def dev_half(qid: str) -> bool:
    return int(hashlib.sha1(qid.encode("utf-8")).hexdigest(), 16) % 2 == 0


def article_rank(order: list[str], q: dict) -> int | None:
    """1-based rank of the first gold article in a fused chunk order, the way ``rag eval`` counts."""
    dup = set(q["dups"]) | {(b, a) for a, b in q["dups"]}
    kept: list[str] = []
    story: dict[str, set[str]] = {}  # kept article → the articles folded into it (the same story)
    for key in order[: 3 * POOL]:
        d = q["doc"][key]
        home = next((k for k in dict.fromkeys(kept) if k != d and (k, d) in dup), None)
        if home is not None:
            story.setdefault(home, set()).add(d)
            continue
        kept.append(d)
        if len(kept) == POOL:
            break
    seen: list[str] = list(dict.fromkeys(kept))
    gold = set(q["gold"])
    for i, d in enumerate(seen, 1):
        if d in gold or not gold.isdisjoint(story.get(d, ())):
            return i
    return None


def recall(ranks: list[int | None], c: int) -> float:
    return sum(1 for x in ranks if x is not None and x <= c) / len(ranks) if ranks else 0.0


def evaluate(questions: list[dict], ranker) -> tuple[float, float]:
    ranks = [article_rank(ranker(q), q) for q in questions]
    return recall(ranks, 1), recall(ranks, 5)


GRID = {"dense_share": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "dense_scale": [0.04, 0.05, 0.06, 0.08, 0.1, 0.12]}


def tune(args) -> None:
    from rag.config import Config
    from rag.search.fusion import fuse

    sets = {Path(p).stem: pickle.loads(Path(p).read_bytes())["questions"] for p in args.caches}
    depth = min(Config().dense_candidates, Config().keyword_candidates)

    def score_fusion(**params):
        return lambda q: [c.key for c in fuse(q["dense"], q["keyword"], method="score", depth=depth, **params)]

    rankers = {
        "keyword": lambda q: [k for k, _ in q["keyword"]],
        "dense": lambda q: [k for k, _ in q["dense"]],
        "hybrid before (rrf)": lambda q: [c.key for c in fuse(q["dense"], q["keyword"], method="rrf", rrf_k=60)],
    }
    dev = {name: [q for q in qs if dev_half(q["id"])] for name, qs in sets.items()}
    singles = {name: [evaluate(qs, rankers[m]) for m in ("keyword", "dense")] for name, qs in dev.items()}
    grid = [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]
    print(f"{len(grid)} settings on the dev half of {', '.join(sets)}", file=sys.stderr)
    scored = []
    for params in grid:
        margin, total = 1.0, 0.0
        for name, qs in dev.items():
            r1, r5 = evaluate(qs, score_fusion(**params))
            (k1, k5), (d1, d5) = singles[name]
            margin = min(margin, r1 - max(k1, d1), r5 - max(k5, d5))
            total += r1 + r5
        # first: never below the better single retriever on any set; then the best sum of R@1 and R@5
        scored.append(((round(min(margin, 0.0), 6), round(total, 6)), params))
        print(f"  {params}: worst margin {margin:+.3f}, sum {total:.3f}", file=sys.stderr)
    (margin, _), best = max(scored, key=lambda s: s[0])
    print(f"best retrieval on the dev halves: {best} (worst margin over the better single retriever {margin:+.3f})")
    for setting in args.report or [f"{best['dense_share']},{best['dense_scale']}"]:
        share, scale = (float(x) for x in setting.split(","))
        rankers[f"score {share},{scale}"] = score_fusion(dense_share=share, dense_scale=scale)
    print("| set | half | questions | " + " | ".join(f"{m} R@1 / R@5" for m in rankers) + " |")
    print("|---|---|---|" + "---|" * len(rankers))
    for name, qs in sets.items():
        halves = (("dev", dev[name]), ("test", [q for q in qs if not dev_half(q["id"])]), ("all", qs))
        for half, sel in halves:
            cells = [f"{r1:.3f} / {r5:.3f}" for r1, r5 in (evaluate(sel, f) for f in rankers.values())]
            print(f"| {name} | {half} | {len(sel)} | " + " | ".join(cells) + " |")


def answers(args) -> None:
    """Extractive answer hit rate of each setting, on the dev and test halves of a question set."""
    from rag import Retriever
    from rag.eval import evaluate as run, load_questions

    base = Retriever.load(args.index)
    questions = [q for q in load_questions(args.questions) if not q.no_answer]
    halves = {"dev": [q for q in questions if dev_half(q.id)], "test": [q for q in questions if not dev_half(q.id)]}
    settings = [{"fusion": "rrf"}] + [
        {"fusion": "score", "dense_share": float(a), "dense_scale": float(b)}
        for a, b in (s.split(",") for s in args.setting)
    ]
    print("| setting | " + " | ".join(f"answer hit rate, {h} half" for h in halves) + " |")
    print("|---|" + "---|" * len(halves))
    for setting in settings:
        r = Retriever(config=base.config.with_(**setting), embedder=base.embedder, articles=base.articles,
                      chunks=base.chunks, engine=base.engine, manifest=base.manifest)
        cells = []
        for qs in halves.values():
            a = run(r, qs, modes=[], answers=True).answers
            cells.append(f"{a.hit_rate:.3f} ({a.hits}/{a.answerable})")
        print(f"| {setting} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="cache both retrievers' candidates for a question set")
    c.add_argument("questions")
    c.add_argument("--index", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--simplify-questions", action="store_true")
    c.add_argument("--held-out", action="store_true")
    t = sub.add_parser("tune", help="choose fusion parameters on the dev half and report every half")
    t.add_argument("caches", nargs="+")
    t.add_argument("--report", action="append", metavar="SHARE,SCALE",
                   help="settings to report on every half (repeat; default: the best on the dev halves)")
    a = sub.add_parser("answers", help="extractive answer hit rate of fusion settings (and rrf), per half")
    a.add_argument("questions")
    a.add_argument("--index", required=True)
    a.add_argument("--setting", action="append", default=[], metavar="SHARE,SCALE",
                   help="a score-fusion setting, e.g. 0.7,0.06 (repeat)")
    args = p.parse_args()
    {"collect": collect, "tune": tune, "answers": answers}[args.cmd](args)


if __name__ == "__main__":
    main()
