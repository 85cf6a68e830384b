"""Train the reader's extent stage (``rag/answering/reader/extent.py``): how much of its sentence the
answer takes.

    python scripts/train_extent.py \
        --cmrc ../shared/bench/cmrc2018_dev.articles.jsonl ../shared/bench/cmrc2018_dev.qa.jsonl \
        --drcd ../shared/bench/drcd_dev.articles.jsonl ../shared/bench/drcd_dev.qa.jsonl \
        --crud ../shared/bench/crud_qa_dev.jsonl --cache ../bench-index/reader-news-cache

Data (nothing about a held-out article or story is read):

- the question model (``LongAnswerOdds``) learns the gold answer's length from the questions of the
  reader's training articles (CMRC/DRCD, ``eval_reader.held_out`` and ``validation`` excluded) and
  of CRUD QA dev's training part (``rag.eval.split.story_parts``); the training questions of the
  trees get its out-of-fold probability (5 folds by article or story);
- the trees rank, per question, the reader's best span and the candidates of its sentence holding it,
  recorded as the product reads them: ``--cache``'s ``train.pkl`` (the reader's CMRC/DRCD training
  questions, gold paragraph given; recorded by ``--collect``), ``guard.pkl`` and ``crud.pkl``
  (``scripts/adapt_reader.py``'s recordings: the CMRC/DRCD validation questions and CRUD's training and
  validation parts through ``Assistant.ask`` on the 68k index);
- training: ``train.pkl``, CRUD train and the half of the guard that ``adapt_reader.py`` trained on;
  validation (early stopping, and whether the stage ships at all): the other half of the guard and
  CRUD validation.

The stage is written to the reader's model folder (``extent.npz``) only when ``--write`` is given.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import pickle
import sys
from pathlib import Path

import numpy as np

from adapt_reader import Group, _replay, grade  # noqa: F401  (Group: for unpickling the recordings)
from eval_reader import held_out, load_set, validation
from rag.answering.extractive import sentence_spans
from rag.answering.reader.extent import (EXTENT_FEATURES, KINDS, LONG_ANSWER_CHARS, SHORT_KINDS, Extent,
                                         LongAnswerOdds, extent_features, extent_options)
from rag.answering.reader.reader import MODEL_DIR, Reader
from rag.eval.evaluation import load_questions
from rag.eval.split import story_parts
from rag.query import Query
from rag.trees import Trees

log = logging.getLogger("train_extent")
FOLDS = 5


def _fold(key: str) -> int:
    return int(hashlib.sha1(f"extent:{key}".encode()).hexdigest(), 16) % FOLDS


def collect(pairs: list[list[str]], out: Path) -> None:
    """Record the reader's candidates on its own CMRC/DRCD training questions (gold paragraph given)."""
    from adapt_reader import Recorder, collect_gold_paragraph

    groups = collect_gold_paragraph([f for pair in pairs for f in pair], Recorder(Reader.load()), "train")
    with open(out, "wb") as f:
        pickle.dump(groups, f)


def question_sets(args) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    """(key for folds, question, gold answer) of the question model's training questions; and the
    article or story of every question id (the fold key of the trees' groups)."""
    rows, key_of = [], {}
    for name, (articles, qa) in (("cmrc2018", args.cmrc), ("drcd", args.drcd)):
        for it in load_set(name, articles, qa):
            key_of[it.id] = it.article
            if not held_out(it.article) and not validation(it.article):
                rows.append((it.article, it.question, it.answers[0]))
    questions = load_questions(args.crud)
    parts = story_parts(questions)
    for q in questions:
        key_of[q.id] = q.id  # CRUD questions are split by story already; a question is its own fold key
        if parts[q.id] == "train":
            rows.append((q.id, q.question, q.answers[0]))
    return rows, key_of


def fit_odds(rows, C: float) -> tuple[LongAnswerOdds, object]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    X = vec.fit_transform([LongAnswerOdds.prepare(q) for _, q, _ in rows])
    y = np.array([len(a) >= LONG_ANSWER_CHARS for _, _, a in rows])
    model = LogisticRegression(C=C, max_iter=3000).fit(X, y)
    grams = sorted(vec.vocabulary_, key=vec.vocabulary_.get)
    odds = LongAnswerOdds(grams, vec.idf_, model.coef_[0], float(model.intercept_[0]))
    return odds, (vec, model)


def pruned_scores(reader: Reader, g: Group) -> np.ndarray:
    """The trees' scores as ``Reader.score`` gives them (all trees on the first trees' best 64)."""
    return reader.predict(np.hstack([g.X, g.nn]) if g.nn is not None else g.X, g.nn is not None)


def sentences_of(g: Group) -> np.ndarray:
    """The sentence (start, end) of each candidate, as ``collect_candidates`` cuts them."""
    out = np.zeros((len(g.spans), 2), np.int64)
    cache = {}
    for r, (p, a, b) in enumerate(g.spans.tolist()):
        if p not in cache:
            cache[p] = sentence_spans(g.passages[p])
        out[r] = next(((s, e) for s, e in cache[p] if s <= a and b <= e), (a, b))
    return out


def options_of(reader: Reader, g: Group, p_long: float):
    scores = pruned_scores(reader, g)
    best = int(np.argmax(scores))
    sentence = sentences_of(g)
    passage = g.spans[:, 0]
    spans = g.spans[:, 1:]
    opts = extent_options(g.passages, passage, sentence, spans, scores, best)
    q = Query.of(g.question)
    X = extent_features(p_long, q.asked.kind, q.text, g.passages, passage, sentence, spans, scores, opts, g.X, g.nn)
    return X, g.f1[opts]


def report(name: str, groups, picks) -> dict:
    out = {}
    for band, (lo, hi) in {"under 20": (0, 20), "20+": (20, 10**6), "all": (0, 10**6)}.items():
        f = [f1[p] for (g, X, f1), p in zip(groups, picks) if lo <= len(g.answers[0]) < hi]
        out[band] = (len(f), round(float(np.mean(f)), 4) if f else None)
    log.info("%s: %s", name, out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cmrc", nargs=2, metavar=("ARTICLES", "QA"), required=True)
    ap.add_argument("--drcd", nargs=2, metavar=("ARTICLES", "QA"), required=True)
    ap.add_argument("--crud", required=True, help="crud_qa_dev.jsonl (its training part trains the question model)")
    ap.add_argument("--cache", required=True, help="folder with train.pkl, guard.pkl and crud.pkl")
    ap.add_argument("--collect", action="store_true", help="first record train.pkl (about 25 minutes on 2 cores)")
    ap.add_argument("--C", type=float, default=1.0, help="the question model's inverse regularisation")
    ap.add_argument("--rounds", type=int, default=400)
    ap.add_argument("--leaves", type=int, default=7)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--write", action="store_true", help=f"write extent.npz into {MODEL_DIR}")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import lightgbm as lgb

    cache = Path(args.cache)
    if args.collect:
        collect([args.cmrc, args.drcd], cache / "train.pkl")
    rows, key_of = question_sets(args)
    log.info("question model: %d training questions, %.3f long", len(rows),
             np.mean([len(a) >= LONG_ANSWER_CHARS for *_, a in rows]))
    odds, (vec, model) = fit_odds(rows, args.C)
    probe = [q for _, q, _ in rows[:300]]
    gap = max(abs(odds.probability(q) - model.predict_proba(vec.transform([LongAnswerOdds.prepare(q)]))[0, 1])
              for q in probe)
    log.info("question model: numpy vs scikit-learn, largest difference %.2e on 300 questions", gap)
    if gap > 1e-6:
        raise SystemExit("the numpy question model does not reproduce scikit-learn's")
    # out-of-fold probabilities for the trees' training questions
    oof = {}
    for k in range(FOLDS):
        fold_odds, _ = fit_odds([r for r in rows if _fold(r[0]) != k], args.C)
        for key, q, _ in rows:
            if _fold(key) == k:
                oof[q] = fold_odds.probability(q)

    def load(name):
        with open(cache / name, "rb") as f:
            return pickle.load(f)

    reader = Reader.load()
    train_groups = load("train.pkl") if (cache / "train.pkl").is_file() else []
    if not train_groups:
        log.warning("no train.pkl in %s (record it with --collect): training on the recordings of adapt_reader.py alone", cache)
    crud = load("crud.pkl")
    guard = load("guard.pkl")
    train = train_groups + [g for g in crud if g.part == "train"] + [g for g in guard if _replay(g)]
    val = [g for g in guard if not _replay(g)] + [g for g in crud if g.part == "validation"]
    train, val = [g for g in train if g.nn is not None], [g for g in val if g.nn is not None]  # the stage needs the head

    def built(groups, in_sample: bool):
        out = []
        for g in groups:
            p = oof.get(g.question) if in_sample else None
            X, f1 = options_of(reader, g, p if p is not None else odds.probability(g.question))
            out.append((g, X, f1))
        return out

    tr, va = built(train, True), built(val, False)
    log.info("options per question: train %.2f, validation %.2f; with a longer option: %.3f / %.3f",
             np.mean([len(x[1]) for x in tr]), np.mean([len(x[1]) for x in va]),
             np.mean([len(x[1]) > 1 for x in tr]), np.mean([len(x[1]) > 1 for x in va]))
    # each longer option: how much it gains (or loses) in F1 over the best span
    def deltas(data):
        X = np.vstack([x[1][1:] for x in data if len(x[1]) > 1])
        y = np.concatenate([x[2][1:] - x[2][0] for x in data if len(x[1]) > 1])
        return X, y

    Xtr, ytr = deltas(tr)
    Xva, yva = deltas(va)
    params = dict(objective="regression", learning_rate=args.lr, num_leaves=args.leaves, min_data_in_leaf=40,
                  feature_fraction=0.9, bagging_fraction=0.8, bagging_freq=1, verbose=-1, seed=7, num_threads=2)
    booster = lgb.train(params, lgb.Dataset(Xtr, ytr, feature_name=EXTENT_FEATURES), args.rounds,
                        valid_sets=[lgb.Dataset(Xva, yva)], callbacks=[lgb.early_stopping(50, verbose=False)])
    trees = Trees.from_lightgbm(booster.dump_model(num_iteration=booster.best_iteration), EXTENT_FEATURES)
    log.info("trees: %d (best iteration)", booster.best_iteration)

    kind = EXTENT_FEATURES.index("kind")

    def picks(data, margin=0.0, short_kinds=SHORT_KINDS):
        """What the stage picks (as ``Extent.choose``: not for the kinds in ``short_kinds``)."""
        out = []
        for _, X, _ in data:
            if KINDS[int(X[0, kind])] in short_kinds:
                out.append(0)
                continue
            gain = trees.predict(X[1:]) if len(X) > 1 else np.zeros(0)
            out.append(int(np.argmax(gain)) + 1 if len(gain) and gain.max() > margin else 0)
        return out

    margins = (-0.05, -0.02, 0.0, 0.02, 0.05, 0.1)
    results = {}
    for name, data in (("validation: guard half", [x for x in va if x[0].set != "crud"]),
                       ("validation: CRUD", [x for x in va if x[0].set == "crud"])):
        results[name, None] = report(f"{name}, the best span", data, [0] * len(data))
        for m in margins:
            results[name, m] = report(f"{name}, extent (margin {m})", data, picks(data, m))
        report(f"{name}, extent (margin 0) also for {'/'.join(SHORT_KINDS)}", data, picks(data, 0.0, ()))
        report(f"{name}, oracle", data, [int(np.argmax(f1)) for _, _, f1 in data])

    def total(m):  # F1 summed over all the validation questions
        return sum(n * f for (name, mm), r in results.items() if mm == m for n, f in [r["all"]])

    margin = max(margins, key=total)
    log.info("margin %.2f: validation F1 %.4f, the best span alone %.4f", margin, total(margin) / len(va),
             total(None) / len(va))
    report("training, the best span", tr, [0] * len(tr))
    report("training, extent", tr, picks(tr))
    imp = sorted(zip(booster.feature_importance("gain"), EXTENT_FEATURES), reverse=True)
    log.info("gain: %s", ", ".join(f"{n} {v:.0f}" for v, n in imp))
    if args.write and total(margin) <= total(None):
        log.warning("the stage does not gain on the validation questions: not written")
    elif args.write:
        Extent(odds, trees, margin).save(MODEL_DIR)
        log.info("wrote %s", MODEL_DIR / "extent.npz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
