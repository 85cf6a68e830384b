"""Train the answer-span reader (``rag/answering/reader/model/``) on CMRC 2018 dev and DRCD dev.

    .venv/bin/python -m pip install -e '.[train]'
    .venv/bin/python scripts/train_reader.py \
        --cmrc /work/shared/bench/cmrc2018_dev.articles.jsonl /work/shared/bench/cmrc2018_dev.qa.jsonl \
        --drcd /work/shared/bench/drcd_dev.articles.jsonl /work/shared/bench/drcd_dev.qa.jsonl

Questions about held-out articles (``sha1(id) % 4 == 0``) are never trained on; about 1 in 6 of the
other articles are a validation split for early stopping and the confidence calibration. Candidate
features are cached in ``--cache``. The trees are exported to numpy arrays (no lightgbm at run
time); the held-out evaluation (``scripts/eval_reader.py``) is written into the model card.
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import pickle
import platform
import sys
import time
from pathlib import Path

import numpy as np

from eval_reader import held_out, load_set, make_idf, passage_of, run, validation
from rag.config import Config
from rag.eval.metrics import span_f1
from rag.answering.extractive import select_sentences
from rag.query import Query
from rag.answering.reader.reader import MODEL_DIR, NeuralRanker, Reader, Trees, collect_candidates
from rag.answering.reader.features import FEATURE_NAMES, LEX_SIZE, LEX_TABLES, QTYPES, aligned_fold
from rag.answering.reader.neural import NEURAL_FEATURES

ROOT = Path(__file__).resolve().parent.parent
FOLDS = 5
_STRIP = " \t\n\u3000，,。.；;：:！!？?、"


def gold_spans(text: str, answers) -> list[tuple[int, int]]:
    """Where the answers occur in the folded passage text (answers stripped of edge punctuation)."""
    folded = aligned_fold(text)
    out = set()
    for a in answers:
        g = aligned_fold(a).strip(_STRIP)
        if not g:
            continue
        i = folded.find(g)
        while i >= 0:
            out.add((i, i + len(g)))
            i = folded.find(g, i + 1)
    return sorted(out)


def offset_f1(spans: np.ndarray, golds: list[tuple[int, int]]) -> np.ndarray:
    best = np.zeros(len(spans))
    A, B = spans[:, 0], spans[:, 1]
    for g0, g1 in golds:
        ov = np.clip(np.minimum(B, g1) - np.maximum(A, g0), 0, None)
        p, r = ov / np.maximum(B - A, 1), ov / (g1 - g0)
        best = np.maximum(best, np.where(ov > 0, 2 * p * r / np.maximum(p + r, 1e-9), 0))
    return best


def extract(items, idf_by_set, rng, max_neg: int, keep_all: bool, neural: dict | None = None):
    """Features of the questions' candidates: rows, labels, groups, lexical counts per fold.
    ``neural``: per question id, the span head's scores of its sentences (``--neural``): the
    ``NEURAL_FEATURES`` columns follow the lexical ones."""
    config = Config()
    Xs, keys, labels, groups, qids = [], [], [], [], []
    counts = np.zeros((FOLDS, len(LEX_TABLES), 2, len(QTYPES) * LEX_SIZE), np.float64)
    ceiling = []
    t0 = time.time()
    for n, it in enumerate(items):
        q = Query.of(it.question)
        passages = [passage_of(it)]
        sents = select_sentences(q, passages, idf_by_set[it.set], config)
        c = collect_candidates(q, passages, sents)
        golds = gold_spans(it.text, it.answers)
        if len(c) == 0:
            ceiling.append((0.0, 0.0))
            continue
        f1 = offset_f1(c.spans, golds)
        ceiling.append((float(f1.max()), float((f1 >= 0.999).any())))
        fold = int(hashlib.sha1(it.id.encode()).hexdigest(), 16) % FOLDS
        starts = {g[0] for g in golds}
        ends = {g[1] for g in golds}
        ok_start = np.isin(c.spans[:, 0], list(starts))
        ok_end = np.isin(c.spans[:, 1], list(ends))
        for t, ok in enumerate((ok_start, ok_end, ok_start, ok_end)):
            k = c.word_keys[:, t]
            counts[fold, t, 0] += np.bincount(k, minlength=counts.shape[-1])
            counts[fold, t, 1] += np.bincount(k, weights=ok, minlength=counts.shape[-1])
        X = c.features
        if neural is not None:
            X = np.hstack([X, c.neural_features(neural.get(it.id, {}))])
        idx = np.arange(len(c))
        if not keep_all:
            pos = idx[f1 > 0]
            neg = idx[f1 == 0]
            if len(neg) > max_neg:
                neg = rng.choice(neg, max_neg, replace=False)
            idx = np.sort(np.concatenate([pos, neg]))
        Xs.append(X[idx])
        keys.append(c.word_keys[idx])
        labels.append(f1[idx])
        groups.append(np.full(len(idx), fold))
        qids.append(np.full(len(idx), n))
        if n % 500 == 0:
            print(f"  {n}/{len(items)} questions, {time.time() - t0:.0f} s", flush=True)
    return {"X": np.concatenate(Xs), "keys": np.concatenate(keys), "f1": np.concatenate(labels),
            "fold": np.concatenate(groups), "qid": np.concatenate(qids), "counts": counts,
            "ceiling": np.array(ceiling)}


def lex_tables(counts: np.ndarray, smooth: float = 20.0) -> dict[str, np.ndarray]:
    """Smoothed log-odds per hashed word against the table's overall rate."""
    out = {}
    for t, name in enumerate(LEX_TABLES):
        tot, pos = counts[t, 0], counts[t, 1]
        prior = max(pos.sum() / max(tot.sum(), 1), 1e-6)
        rate = (pos + smooth * prior) / (tot + smooth)
        out[name] = np.log(rate / prior).astype(np.float32)
    return out


def fill_lex(X: np.ndarray, keys: np.ndarray, tables: dict[str, np.ndarray]) -> None:
    for col, name in enumerate(LEX_TABLES):
        X[:, FEATURE_NAMES.index(name)] = tables[name][keys[:, col]]


def grade(f1: np.ndarray) -> np.ndarray:
    return np.select([f1 >= 0.999, f1 >= 0.8, f1 >= 0.6, f1 >= 0.4], [4, 3, 2, 1], 0)


def top1(scores: np.ndarray, qid: np.ndarray):
    """Index of the best-scored row of every question (rows grouped by question, in order)."""
    bounds = np.flatnonzero(np.diff(qid)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(qid)]])
    return [s + int(np.argmax(scores[s:e])) for s, e in zip(starts, ends)], starts, ends


def fit_trees(lgb, tr: dict, va: dict, names: list[str], args, counts: np.ndarray):
    """LambdaRank trees over the rows of ``tr`` (word tables out of fold), early-stopped on ``va``."""
    keep = np.ones(len(tr["X"]), bool)
    if args.train_fraction < 1.0:  # learning curve: keep a fraction of the training questions
        qs = np.unique(tr["qid"])
        chosen = np.random.default_rng(args.seed).choice(qs, int(len(qs) * args.train_fraction), replace=False)
        keep = np.isin(tr["qid"], chosen)
    Xtr, keys_tr, f1_tr, fold_tr, qid_tr = (tr[k][keep] for k in ("X", "keys", "f1", "fold", "qid"))
    Xtr = Xtr.copy()
    for k in range(FOLDS):  # out-of-fold word tables for the training rows
        rows = np.flatnonzero(fold_tr == k)
        sub = Xtr[rows]
        fill_lex(sub, keys_tr[rows], lex_tables(counts[np.arange(FOLDS) != k].sum(0)))
        Xtr[rows] = sub
    Xva = va["X"].copy()
    fill_lex(Xva, va["keys"], lex_tables(counts.sum(0)))
    dropped = [f for f in args.drop.split(",") if f]
    for f in dropped:
        Xtr[:, names.index(f)] = 0
        Xva[:, names.index(f)] = 0
    params = {"learning_rate": args.lr, "num_leaves": args.leaves, "min_data_in_leaf": 40, "feature_fraction": 0.8,
              "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "verbose": -1, "num_threads": 2,
              "seed": args.seed, "max_bin": 63, "max_depth": args.depth}
    if args.objective == "lambdarank":
        params.update(objective="lambdarank", metric="ndcg", eval_at=[1], lambdarank_truncation_level=20)
        ytr, yva = grade(f1_tr), grade(va["f1"])
        gtr = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(qid_tr)) + 1, [len(qid_tr)]]))
        gva = np.diff(np.concatenate([[0], np.flatnonzero(np.diff(va["qid"])) + 1, [len(va["qid"])]]))
        dtr = lgb.Dataset(Xtr, ytr, group=gtr, feature_name=names, free_raw_data=False)
        dva = lgb.Dataset(Xva, yva, group=gva, reference=dtr)
    else:
        params.update(objective="binary", metric="binary_logloss")
        dtr = lgb.Dataset(Xtr, (f1_tr >= 0.8).astype(float), feature_name=names)
        dva = lgb.Dataset(Xva, (va["f1"] >= 0.8).astype(float), reference=dtr)
    t0 = time.time()
    booster = lgb.train(params, dtr, args.rounds, valid_sets=[dva],
                        callbacks=[lgb.early_stopping(60, verbose=False), lgb.log_evaluation(100)])
    print(f"best iteration {booster.best_iteration}, training {time.time() - t0:.0f} s")
    trees = Trees.from_lightgbm(booster.dump_model(num_iteration=booster.best_iteration), names)
    sva = booster.predict(Xva, num_iteration=booster.best_iteration, raw_score=True)
    assert np.allclose(trees.predict(Xva[:3000]), sva[:3000], atol=1e-5), "numpy trees disagree with lightgbm"
    best, starts, ends = top1(sva, va["qid"])
    f1s = va["f1"][best]
    print(f"validation top-1 offset F1 {np.mean(f1s):.3f}, share >= 0.8: {(f1s >= 0.8).mean():.3f}")
    pruned = []
    for s, e in zip(starts, ends):
        sc = sva[s:e]
        if e - s > Reader.PRUNE_KEEP:
            first = trees.predict(Xva[s:e], 0, Reader.PRUNE_TREES)
            top = np.argpartition(-first, Reader.PRUNE_KEEP)[:Reader.PRUNE_KEEP]
            sc = np.full(e - s, -np.inf)
            sc[top] = sva[s:e][top]
        pruned.append(va["f1"][s + int(np.argmax(sc))])
    print(f"validation top-1 offset F1 with pruning to {Reader.PRUNE_KEEP} after {Reader.PRUNE_TREES} trees: "
          f"{np.mean(pruned):.3f}")
    gain = booster.feature_importance("gain", iteration=booster.best_iteration)
    importance = sorted(zip(names, gain.tolist()), key=lambda x: -x[1])
    print("top features by gain:", [(n, round(g)) for n, g in importance[:15]])
    record = {"params": {**params, "rounds": booster.best_iteration, "max_neg": args.max_neg, "objective": args.objective,
                         "dropped_features": dropped, "train_fraction": args.train_fraction},
              "questions_trained": int(len(np.unique(qid_tr))), "top1_offset_f1": float(np.mean(f1s)),
              "feature_gain": importance[:20]}
    return trees, record


def calibrate(reader: Reader, val_items, idf_by_set, neural: dict | None):
    """Fit the confidence (P(character F1 >= 0.8) from the best score and its margin over the best
    non-overlapping runner-up, the reader's own rule) on the validation questions."""
    from sklearn.linear_model import LogisticRegression

    config = Config()
    conf_x, conf_y = [], []
    for it in val_items:
        q = Query.of(it.question)
        passages = [passage_of(it)]
        sents = select_sentences(q, passages, idf_by_set[it.set], config)
        cands = collect_candidates(q, passages, sents)
        if len(cands) == 0:
            continue
        nn = None
        if neural is not None:
            nn = cands.neural_features(neural.get(it.id, {}))
        sc = reader.score(cands, nn)
        i = int(np.argmax(sc))
        same = (cands.spans[:, 0] < cands.spans[i, 1]) & (cands.spans[:, 1] > cands.spans[i, 0])
        rest = ~same & np.isfinite(sc)
        second = sc[rest].max() if rest.any() else sc[i] - 5
        a_, b_ = cands.spans[i]
        conf_x.append([sc[i], sc[i] - second])
        conf_y.append(span_f1(it.text[a_:b_], it.answers) >= 0.8)
    conf_x, conf_y = np.array(conf_x), np.array(conf_y)
    model = LogisticRegression(C=1.0).fit(conf_x, conf_y)
    a, b = model.coef_[0]
    c = model.intercept_[0]
    p = model.predict_proba(conf_x)[:, 1]
    bins = np.clip((p * 5).astype(int), 0, 4)
    calib = [(f"{k / 5:.1f}-{(k + 1) / 5:.1f}", int((bins == k).sum()), float(conf_y[bins == k].mean()) if (bins == k).any() else None)
             for k in range(5)]
    print("calibration on validation (bin, n, share right):", calib)
    return (float(a), float(b), float(c)), calib


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cmrc", nargs=2, metavar=("ARTICLES", "QA"), required=True)
    ap.add_argument("--drcd", nargs=2, metavar=("ARTICLES", "QA"), required=True)
    ap.add_argument("--out", default=str(MODEL_DIR))
    ap.add_argument("--cache", default="/tmp/rd")
    ap.add_argument("--objective", default="lambdarank", choices=["lambdarank", "binary"])
    ap.add_argument("--rounds", type=int, default=600)
    ap.add_argument("--leaves", type=int, default=31)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--max-neg", type=int, default=300)
    ap.add_argument("--train-fraction", type=float, default=1.0, help="learning curve: use part of the training questions")
    ap.add_argument("--drop", default="", help="comma-separated features to ablate (set to 0)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--neural", action="store_true", help="also train the span head on e5's token states and "
                    "the trees that use it (the reader uses them when the index runs e5-small)")
    ap.add_argument("--head-epochs", type=int, default=1, help="epochs of the span head alone on e5's own layers")
    ap.add_argument("--tune-epochs", type=int, default=2, help="then epochs of the head and e5's top layers together")
    ap.add_argument("--tune-lr", type=float, default=1.5e-4, help="learning rate of the top layers")
    ap.add_argument("--head-folds", type=int, default=3)
    ap.add_argument("--eval-limit", type=int, default=None)
    ap.add_argument("--no-eval", action="store_true")
    args = ap.parse_args(argv)
    import lightgbm as lgb

    t_start = time.time()
    sets = {"cmrc": load_set("cmrc", *args.cmrc), "drcd": load_set("drcd", *args.drcd)}
    items = [it for s in sets.values() for it in s if not held_out(it.article)]
    train_items = [it for it in items if not validation(it.article)]
    val_items = [it for it in items if validation(it.article)]
    print(f"training questions {len(train_items)}, validation {len(val_items)}, held out "
          f"{sum(held_out(it.article) for s in sets.values() for it in s)}")
    # IDF from the articles that are not held out (what a keyword index over them would give)
    idf_by_set = {name: make_idf(sorted({it.text for it in s if not held_out(it.article)})) for name, s in sets.items()}
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    code = Path(ROOT / "rag/answering/reader/features.py").read_text() + inspect.getsource(collect_candidates)
    stamp = hashlib.sha1((code + str(args.max_neg) + str(args.seed)).encode()).hexdigest()[:12]
    path = cache / f"features-{stamp}.pkl"
    if path.exists():
        tr, va = pickle.loads(path.read_bytes())
        print(f"features from {path}")
    else:
        rng = np.random.default_rng(args.seed)
        t0 = time.time()
        tr = extract(train_items, idf_by_set, rng, args.max_neg, keep_all=False)
        va = extract(val_items, idf_by_set, rng, args.max_neg, keep_all=True)
        print(f"features: {time.time() - t0:.0f} s, {len(tr['X'])} training rows, {len(va['X'])} validation rows")
        path.write_bytes(pickle.dumps((tr, va), protocol=5))
    ceil = np.concatenate([tr["ceiling"], va["ceiling"]])
    print(f"candidate ceiling (top-8 sentences, training+validation questions): best F1 {ceil[:, 0].mean():.3f}, "
          f"exact span present {ceil[:, 1].mean():.3f}")
    trees, record = fit_trees(lgb, tr, va, FEATURE_NAMES, args, tr["counts"])
    tables = lex_tables(tr["counts"].sum(0))
    calibration, calib = calibrate(Reader(trees, tables, (1.0, 0.0, 0.0)), val_items, idf_by_set, None)
    reader = Reader(trees, tables, calibration)
    meta = {
        "trained_on": {"cmrc2018_dev": "ymcui/cmrc2018 (CC BY-SA 4.0)", "drcd_dev": "DRCKnowledgeTeam/DRCD (CC BY-SA 3.0)"},
        "split": "held out: int(sha1(article_id), 16) % 4 == 0; validation: int(sha1('val:' + article_id), 16) % 6 == 0",
        "questions": {"train": record["questions_trained"], "validation": len(val_items)},
        "params": record["params"],
        "lightgbm": lgb.__version__, "python": platform.python_version(),
        "candidate_ceiling": {"best_f1": float(ceil[:, 0].mean()), "exact": float(ceil[:, 1].mean())},
        "validation": {"top1_offset_f1": record["top1_offset_f1"], "calibration": calib},
        "feature_gain": record["feature_gain"],
    }
    if args.neural:
        from span_head import collect, head_alone_f1, head_logits, out_of_fold, train

        from rag.embedding import E5Int8Embedder
        from rag.embedding.e5_folder import resolve_e5_small

        t0 = time.time()
        nstamp = hashlib.sha1((stamp + Path(ROOT / "scripts/span_head.py").read_text()
                               + Path(ROOT / "rag/answering/reader/neural.py").read_text()
                               + f"{args.head_epochs}/{args.tune_epochs}/{args.tune_lr}/{args.head_folds}").encode()).hexdigest()[:12]
        npath = cache / f"neural-{nstamp}.pkl"
        hpath = cache / f"head-{nstamp}.pkl"
        if npath.exists():
            head, layers, neural, head_f1, trn, van = pickle.loads(npath.read_bytes())
            print(f"span head and its features from {npath}")
        else:
            if hpath.exists():
                head, layers, neural, head_f1 = pickle.loads(hpath.read_bytes())
                print(f"span head from {hpath}")
            else:
                encoder = E5Int8Embedder()
                train_ex = collect(train_items, idf_by_set, passage_of, gold_spans, encoder)
                val_ex = collect(val_items, idf_by_set, passage_of, gold_spans, encoder)
                print(f"token states: {len(train_ex)} training sentences ({sum(e.start > 0 for e in train_ex)} holding "
                      f"the answer), {len(val_ex)} validation, {time.time() - t0:.0f} s", flush=True)
                folder = resolve_e5_small().path
                kw = dict(head_epochs=args.head_epochs, tune_epochs=args.tune_epochs, tune_lr=args.tune_lr)
                neural = out_of_fold(train_ex, args.head_folds, folder, **kw)
                trained = train(train_ex, folder, **kw)
                val_logits = head_logits(trained, val_ex)
                head_f1 = head_alone_f1(val_logits, {it.id: it for it in val_items}, span_f1)
                print(f"span head alone, validation F1 {head_f1:.3f}", flush=True)
                neural.update(val_logits)
                head, layers = trained.head, trained.layers
                del train_ex, val_ex, trained
                hpath.write_bytes(pickle.dumps((head, layers, neural, head_f1), protocol=5))
            rng = np.random.default_rng(args.seed)
            trn = extract(train_items, idf_by_set, rng, args.max_neg, keep_all=False, neural=neural)
            van = extract(val_items, idf_by_set, rng, args.max_neg, keep_all=True, neural=neural)
            npath.write_bytes(pickle.dumps((head, layers, neural, head_f1, trn, van), protocol=5))
        print(f"span head: {time.time() - t0:.0f} s")
        top_path = cache / f"top_layers-{nstamp}.npz"
        np.savez_compressed(top_path, **{k: v.astype(np.float16) for k, v in layers.items()})
        head.top_layers = top_path
        ntrees, nrecord = fit_trees(lgb, trn, van, FEATURE_NAMES + NEURAL_FEATURES, args, trn["counts"])
        reader.neural = NeuralRanker(head, ntrees, (1.0, 0.0, 0.0))
        ncal, ncalib = calibrate(reader, val_items, idf_by_set, neural)
        reader.neural = NeuralRanker(head, ntrees, ncal)
        meta["neural"] = {"head": f"LayerNorm({head.width}), Conv1d(256, width 3), GELU, {'residual Conv1d(256, width 3), GELU, ' if 'conv_mid_weight' in head.w else ''}Conv1d(2, width 3) over the reader's fine-tuned copy of e5-small's layers 9-11 and layer 8",
                          "head_epochs": args.head_epochs, "tune_epochs": args.tune_epochs, "tune_lr": args.tune_lr,
                          "head_folds": args.head_folds, "head_alone_validation_f1": head_f1,
                          "params": nrecord["params"],
                          "validation": {"top1_offset_f1": nrecord["top1_offset_f1"], "calibration": ncalib},
                          "feature_gain": nrecord["feature_gain"]}
    meta["train_seconds"] = round(time.time() - t_start)
    out = Path(args.out)
    reader.meta = meta
    reader.save(out, meta)
    print(f"saved to {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB)")
    if args.no_eval:
        return 0
    results = run(Reader.load(out), sets, args.eval_limit, neural=args.neural)
    meta["held_out"] = results
    if args.neural:
        meta["held_out_lexical_only"] = run(Reader.load(out), sets, args.eval_limit, neural=False)
    reader.save(out, meta)
    for name, r in results.items():
        print(f"{name:28} n={r['n']} reader EM {r['reader_em']:.3f} F1 {r['reader_f1']:.3f} | sentence EM "
              f"{r['sentence_em']:.3f} F1 {r['sentence_f1']:.3f} | short {r['mean_short_chars']:.1f} chars | "
              f"{r['latency_ms_mean']:.1f} ms/q")
    if out.resolve() == MODEL_DIR.resolve():
        write_card(out, meta, results, argv if argv is not None else sys.argv[1:])
    return 0


def write_card(out: Path, meta: dict, results: dict, argv: list[str]) -> None:
    size = sum(f.stat().st_size for f in out.iterdir() if f.suffix == ".npz") / 1e6
    rows = "\n".join(
        f"| {name} | {r['n']} | {r['reader_em']:.3f} | {r['reader_f1']:.3f} | {r['sentence_em']:.3f} | "
        f"{r['sentence_f1']:.3f} | {r['mean_short_chars']:.1f} | {r['latency_ms_mean']:.1f} |"
        for name, r in results.items())
    ceil = meta["candidate_ceiling"]
    neural = meta.get("neural")
    lexical = meta.get("held_out_lexical_only")
    if lexical:
        rows += "\n" + "\n".join(
            f"| {name}, lexical features only | {r['n']} | {r['reader_em']:.3f} | {r['reader_f1']:.3f} | {r['sentence_em']:.3f} | "
            f"{r['sentence_f1']:.3f} | {r['mean_short_chars']:.1f} | {r['latency_ms_mean']:.1f} |"
            for name, r in lexical.items())
    head = "" if not neural else f"""
## Span head (`span_head.npz`, `top_layers.npz`, `trees_neural.npz`)
{neural['head']}: start and end scores of every token of the sentences read, with the question read
alongside (`<s> query: question </s></s> sentence </s>`, `Int8Embedder.pair_states`). The int8 e5-small
graph the index runs gives layer 8's token states; the reader's own copy of e5-small's layers 9–11
(`top_layers.npz`, float16, initialised from e5's weights and fine-tuned with the head) runs on them as
a second int8 ONNX graph (`rag.embedding.int8_graph.TopLayers`, built once and cached); the head reads that
copy's last layer and layer 8 side by side, with numpy. Trained with torch (`scripts/span_head.py`:
{neural['head_epochs']} epoch(s) of the head alone on e5's own layers, AdamW 1e-3, then {neural.get('tune_epochs', 0)} epoch(s) of
the layers (learning rate {neural.get('tune_lr', 0)}, warm-up and linear decay) and the head together; softmax over each
sentence's tokens and its start token, which stands for "not here"). The head alone (its best span per
question) scores character F1 {neural.get('head_alone_validation_f1', float('nan')):.3f} on the validation questions.
Training questions get scores from models trained without them ({neural['head_folds']} folds), validation
and held-out questions from the model trained on all training questions. A second set of trees
({neural['params']['rounds']} trees) ranks candidates on the lexical features plus `NEURAL_FEATURES`; the
reader uses it when the index runs e5-small (`Retriever.reader_encoder`), the lexical trees otherwise.
Validation top-1 offset F1: {neural['validation']['top1_offset_f1']:.3f} (lexical trees:
{meta['validation']['top1_offset_f1']:.3f}). Calibration on validation: {neural['validation']['calibration']}.
"""
    text = f"""# Answer-span reader weights

Gradient-boosted trees (LightGBM {meta['lightgbm']}, objective `{meta['params']['objective']}`,
{meta['params']['rounds']} trees of up to {meta['params']['num_leaves']} leaves) exported to numpy arrays
(`trees.npz`), hashed word tables (`lexicon.npz`, crc32 keys, float16) and `reader.json` (feature list,
confidence calibration, training record). Read by `rag.answering.reader.reader.Reader.load()` with numpy and jieba only.
Weights: {size:.2f} MB.

## Provenance and licence
- Trained on CMRC 2018 dev (ymcui/cmrc2018, CC BY-SA 4.0) and DRCD dev (DRCKnowledgeTeam/DRCD,
  CC BY-SA 3.0; Traditional script, folded to Simplified by the features).
- The weights are derived from CC BY-SA data and are released under **CC BY-SA 4.0**.

## Split
- Held out (never trained on, never used to choose settings): the questions about articles with
  `int(hashlib.sha1(article_id.encode()).hexdigest(), 16) % 4 == 0`.
- Validation (early stopping, confidence calibration): training articles with
  `int(sha1(('val:' + article_id).encode()).hexdigest(), 16) % 6 == 0`.
- Questions: {meta['questions']['train']} training, {meta['questions']['validation']} validation.

## Rerun
```
.venv/bin/python -m pip install -e '.[train]'
.venv/bin/python scripts/train_reader.py {' '.join(argv).replace(str(Path('/work/shared').resolve()), '../shared')}
.venv/bin/python scripts/eval_reader.py --cmrc ../shared/bench/cmrc2018_dev.articles.jsonl ../shared/bench/cmrc2018_dev.qa.jsonl --drcd ../shared/bench/drcd_dev.articles.jsonl ../shared/bench/drcd_dev.qa.jsonl
```
Training took {meta['train_seconds']} s on 2 CPU cores (feature extraction included unless cached).

## Held-out results (gold paragraph given, the reader reads the top 8 sentences of `select_sentences`)
| set | questions | reader EM | reader F1 | sentence EM | sentence F1 | short answer chars | reader ms/question |
|---|---|---|---|---|---|---|---|
{rows}

`sentence` = the baseline answering with the whole best sentence. `drcd` asks the Traditional questions,
`drcd_simplified_questions` the same questions converted to Simplified.
Candidate ceiling (training + validation questions): the best candidate's character F1 averages
{ceil['best_f1']:.3f}; the exact answer is among the candidates for {ceil['exact']:.3f} of the questions.

`confidence` = sigmoid(a·score + b·(score − best non-overlapping runner-up) + c), fitted on the validation
questions to P(character F1 ≥ 0.8); calibration on validation (bin, questions, share right):
{meta['validation']['calibration']}.
{head}"""
    (out / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
