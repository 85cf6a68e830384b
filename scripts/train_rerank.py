"""Train the reranking stage: gradient-boosted trees (LightGBM lambdarank) over what a question
shares with each fused passage and its article, exported to numpy arrays shipped in the package.

Questions and their candidates:
- CRUD-RAG QA dev (``--crud INDEX QUESTIONS``): the 68k news archive's index and
  ``crud_qa_dev.jsonl``, split by story (``rag.eval.splits``): train 60%, validation 15%
  (early stopping, settings), held-out 25% (measured once, below, never trained or tuned on).
- optionally CMRC 2018 / DRCD dev (``--extra NAME INDEX QUESTIONS``): their training part only
  (articles with ``sha1(id) % 4 != 0``, the reader's split); their held-out part is measured.

Candidates are what the reranking stage is handed in the product: the fused passages before any
stage, the ``depth`` best, caught by a search stage registered here (``rag.search.stages.STAGES``);
a candidate is relevant when its article is gold.

    python scripts/train_rerank.py --crud ../bench-index/crud ../shared/bench/crud_qa_dev.jsonl \
        --extra cmrc ../bench-index/cmrc ../shared/bench/cmrc2018_dev.qa.jsonl \
        --extra drcd ../bench-index/drcd ../shared/bench/drcd_dev.qa.jsonl --out rag/search/rerank_model
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import pickle
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import rag
from rag.eval.evaluation import Question, load_questions
from rag.eval.split import held_out, story_parts
from rag.search.rerank import DEPTH, Reranker, RerankModel
from rag.search.rerank_features import FEATURE_NAMES
from rag.search.stages import STAGES

log = logging.getLogger("train_rerank")


def reader_held_out(q: Question) -> bool:
    """The reader's split of CMRC and DRCD: questions about articles it never trains on."""
    return any(held_out(d) for d in q.gold_docs)


class Catch:
    """A search stage that keeps what it is handed (the fused passages) and passes it on."""

    last: list = []

    def __init__(self, retriever):
        pass

    def __call__(self, query, passages):
        Catch.last = list(passages)
        return passages


STAGES["catch"] = Catch


def load(index: str) -> rag.Retriever:
    return rag.Retriever.load(index, stages=("catch",), rerank=False)


def fused(retriever: rag.Retriever, query: rag.Query, depth: int) -> list:
    """The ``depth`` best fused passages for ``query``, before any stage and before duplicates are folded."""
    retriever.search(query, k=-(-depth // retriever.config.overfetch))
    return Catch.last[:depth]


def candidates(retriever: rag.Retriever, reranker: Reranker, questions: list[Question], depth: int, desc: str):
    """Per question: feature rows, relevance labels, and the fused passages."""
    out = []
    for q in tqdm(questions, desc=desc, unit="question"):
        query = rag.Query.of(q.question)
        ps = fused(retriever, query, depth)
        X = reranker.features(query, ps)
        gold = set(q.gold_docs)
        y = np.array([p.doc_id in gold for p in ps], np.int32)
        out.append((X, y, [p.doc_id for p in ps]))
    return out


def first_gold(order: np.ndarray, y: np.ndarray, docs: list[str]) -> int | None:
    """1-based article rank of the first relevant passage (each article counted once)."""
    seen: dict[str, int] = {}
    for i in order:
        rank = seen.setdefault(docs[i], len(seen) + 1)
        if y[i]:
            return rank
    return None


def recall(items, score=None) -> dict:
    ranks = []
    for X, y, docs in items:
        order = np.arange(len(y)) if score is None else np.argsort(-score(X), kind="stable")
        ranks.append(first_gold(order, y, docs))
    n = max(len(ranks), 1)
    return {f"R@{k}": round(sum(r is not None and r <= k for r in ranks) / n, 3) for k in (1, 5, 10)} | {"questions": len(ranks)}


def card(meta: dict, model: RerankModel) -> str:
    """The model card: provenance, licences, split, rerun command and held-out numbers."""
    rows = []
    for name, parts in meta["results"].items():
        for part, r in parts.items():
            f, g = r["fused"], r["reranked"]
            rows.append(f"| {name} | {part} | {f['questions']} | {f['R@1']:.3f} / {f['R@5']:.3f} / {f['R@10']:.3f} | "
                        f"**{g['R@1']:.3f}** / **{g['R@5']:.3f}** / {g['R@10']:.3f} |")
    gain = sorted(meta["feature_gain"].items(), key=lambda kv: -kv[1])
    p = meta["params"]
    return f"""# Reranker weights

Gradient-boosted trees (LightGBM, objective `lambdarank`, {p['trees']} trees of up to {p['num_leaves']} leaves,
learning rate {p['learning_rate']}, at least {p['min_data_in_leaf']} rows per leaf; chosen by validation R@1)
over {len(FEATURE_NAMES)} features of a question and each of its {meta['depth']} best fused passages
(`rag/search/rerank_features.py`), exported to numpy arrays (`trees.npz`) and `rerank.json`
(feature list, training record). Read by `rag.search.rerank.RerankModel.load()` with numpy only.
Weights: {sum(v.nbytes for v in model.trees.to_arrays().values()) / 1e3:.0f} kB.

## Provenance and licence
- CRUD-RAG QA dev questions (IAAR-Shanghai/CRUD_RAG, `src/quest_eval/QuestAnswer*_quest_gt_save.json`,
  Apache-2.0) matched to the CRUD-RAG news archive (68,177 articles, the same project, Apache-2.0),
  `../shared/bench/crud_qa_dev.jsonl`, searched on the whole archive's index.
- CMRC 2018 dev (ymcui/cmrc2018, CC BY-SA 4.0) and DRCD dev (DRCKnowledgeTeam/DRCD, CC BY-SA 3.0)
  when given with `--extra`, searched on their own indexes.
- The weights are derived in part from CC BY-SA data and are released under **CC BY-SA 4.0**.

## Split
- CRUD: by story (`rag.eval.split.story_parts`: questions that share a gold article are one story;
  sha1 of the story, 60% train, 15% validation, 25% held-out). Validation chose the tree settings
  and the early stopping; held-out was never trained or tuned on.
- CMRC / DRCD: the reader's split by article (`rag.eval.split.held_out`: sha1(id) % 4 == 0 held out;
  validation = training articles with sha1('val:' + id) % 6 == 0).
- Questions per part: {json.dumps(meta['training'], ensure_ascii=False)}

## Rerun
```
.venv/bin/python -m pip install -e '.[train]'
.venv/bin/rag build --data ../bench-data/crud --index ../bench-index/crud   # the 68k archive, see docs/benchmarks.md
{meta['rerun']}
```
Collecting the candidates and training took {meta['seconds']['total']:.0f} s on 2 CPU cores.

## Results (article-level recall of the gold story; fused = before the reranker, same candidates)
| set | part | questions | fused R@1 / R@5 / R@10 | reranked R@1 / R@5 / R@10 |
|---|---|---|---|---|
""" + "\n".join(rows) + """

## What the trees use most (gain)
""" + ", ".join(f"{k} {v:.0f}" for k, v in gain[:12]) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crud", nargs=2, metavar=("INDEX", "QUESTIONS"))
    ap.add_argument("--extra", nargs=3, action="append", default=[], metavar=("NAME", "INDEX", "QUESTIONS"))
    ap.add_argument("--depth", type=int, default=DEPTH, help=f"fused passages reranked per question (default {DEPTH})")
    ap.add_argument("--out", default="rag/search/rerank_model")
    ap.add_argument("--cache", help="folder keeping each set's candidates and features between runs")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--collect-only", action="store_true", help="fill --cache with the candidates and stop")
    ap.add_argument("--limit", type=int, help="at most this many questions of each file (a quick trial)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    t0 = time.time()
    jobs = ([("crud", *args.crud)] if args.crud else []) + [tuple(e) for e in args.extra]
    sets: dict[str, dict[str, list]] = {}
    for name, index, qa in jobs:
        cache = Path(args.cache) / f"{name}.pkl" if args.cache else None
        if cache is not None and cache.is_file():
            sets[name] = pickle.loads(cache.read_bytes())
            continue
        sets[name] = collect(name, index, qa, args.depth, args.limit)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(sets[name]))
    t_feat = time.time() - t0
    if args.collect_only:
        return
    train_and_save(args, sets, t0, t_feat)


def split(name: str, questions: list[Question]) -> dict[str, list[Question]]:
    """CRUD by story (rag.eval.split.story_parts); CMRC and DRCD by the reader's article split,
    its validation articles (sha1('val:' + id) % 6 == 0) for validation."""
    if name == "crud":
        parts = story_parts(questions)
        return {part: [q for q in questions if parts[q.id] == part] for part in ("train", "validation", "held-out")}
    train = [q for q in questions if not reader_held_out(q)]
    is_val = {q.id: any(int(hashlib.sha1(("val:" + d).encode()).hexdigest(), 16) % 6 == 0 for d in q.gold_docs)
              for q in train}
    return {"train": [q for q in train if not is_val[q.id]][:1500], "validation": [q for q in train if is_val[q.id]][:300],
            "held-out": [q for q in questions if reader_held_out(q)]}


def collect(name: str, index: str, qa: str, depth: int, limit: int | None) -> dict[str, list]:
    """One set's parts: per question the fused passages' features, labels and article ids."""
    retriever = load(index)
    reranker = Reranker.for_retriever(retriever, model=None)
    questions = [q for q in load_questions(qa, limit=limit) if q.gold_docs]
    return {part: candidates(retriever, reranker, qs, depth, f"{name} {part}") for part, qs in split(name, questions).items()}


def train_and_save(args, sets: dict[str, dict[str, list]], t0: float, t_feat: float) -> None:
    import lightgbm as lgb

    def stack(items):
        items = [it for it in items if len(it[1])]
        return (np.concatenate([X for X, _, _ in items]), np.concatenate([y for _, y, _ in items]),
                [len(y) for _, y, _ in items])

    train = [it for s in sets.values() for it in s["train"]]
    val = [it for s in sets.values() for it in s["validation"]]
    Xt, yt, gt = stack(train)
    Xv, yv, gv = stack(val)
    best = None
    for leaves, lr, min_child in ((7, 0.05, 20), (15, 0.05, 20), (15, 0.03, 40), (31, 0.03, 40)):
        params = dict(objective="lambdarank", metric="ndcg", eval_at=[1, 5], learning_rate=lr, num_leaves=leaves,
                      min_data_in_leaf=min_child, feature_fraction=0.8, bagging_fraction=0.8, bagging_freq=1,
                      lambdarank_truncation_level=20, seed=args.seed, verbose=-1, num_threads=2)
        booster = lgb.train(params, lgb.Dataset(Xt, yt, group=gt, feature_name=FEATURE_NAMES),
                            num_boost_round=600, valid_sets=[lgb.Dataset(Xv, yv, group=gv)],
                            callbacks=[lgb.early_stopping(60, verbose=False)])
        model = RerankModel.from_lightgbm(booster.dump_model(num_iteration=booster.best_iteration))
        r1 = float(np.mean([recall(parts["validation"], model.score)["R@1"] for parts in sets.values()]))  # each set alike
        log.info("leaves %d lr %.2f min_child %d: %d trees, validation R@1 %.3f (mean over the sets)", leaves, lr, min_child,
                 booster.best_iteration, r1)
        if best is None or r1 > best[0]:
            best = (r1, model, dict(num_leaves=leaves, learning_rate=lr, min_data_in_leaf=min_child,
                                    trees=booster.best_iteration))
    _, model, chosen = best
    results = {name: {part: {"fused": recall(items), "reranked": recall(items, model.score)}
                      for part, items in s.items()} for name, s in sets.items()}
    gain = dict(zip(FEATURE_NAMES, np.round(lgb.train(
        dict(objective="lambdarank", num_leaves=chosen["num_leaves"], learning_rate=chosen["learning_rate"],
             min_data_in_leaf=chosen["min_data_in_leaf"], verbose=-1, seed=args.seed, num_threads=2),
        lgb.Dataset(Xt, yt, group=gt, feature_name=FEATURE_NAMES), num_boost_round=chosen["trees"],
    ).feature_importance("gain"), 1).tolist()))
    meta = {
        "depth": args.depth,
        "params": chosen,
        "training": {name: {part: len(items) for part, items in s.items()} for name, s in sets.items()},
        "results": results,
        "feature_gain": gain,
        "seconds": {"candidates": round(t_feat, 1), "total": round(time.time() - t0, 1)},
        "rerun": "python scripts/train_rerank.py " + " ".join(
            (["--crud", *args.crud] if args.crud else []) + [x for e in args.extra for x in ("--extra", *e)] + ["--out", args.out]),
    }
    model.save(args.out, meta)
    (Path(args.out) / "README.md").write_text(card(meta, model), encoding="utf-8")
    print(json.dumps({"params": chosen, "results": results, "seconds": meta["seconds"]}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
