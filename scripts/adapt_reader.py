"""Adapt the answer-span reader to news: more trees, boosted from the shipped reader's own scores,
learned from CRUD-RAG QA dev's training part read the way the product reads it.

    python scripts/adapt_reader.py --crud ../bench-index/crud ../shared/bench/crud_qa_dev.jsonl \
        --guard ../shared/bench/cmrc2018_dev.articles.jsonl ../shared/bench/cmrc2018_dev.qa.jsonl \
                ../shared/bench/drcd_dev.articles.jsonl ../shared/bench/drcd_dev.qa.jsonl \
        --cache ../bench-index/reader-news-cache

The reader was trained on Wikipedia (CMRC 2018, DRCD). Here every CRUD question of the training and
validation parts (split by story, ``rag.eval.split.story_parts``; the held-out part is never read)
is asked through ``Assistant.ask`` on the 68k-article index, and the candidate spans the reader
ranks there (the sentences of the passages retrieval and the reranker give it, with the span head's
scores) are recorded with their character F1 against the gold answers. LightGBM lambdarank then
grows trees on the training part's candidates starting from the shipped neural trees' scores
(``init_score``): the new trees learn only what news needs beyond what the reader already does.
The reader's own CMRC/DRCD validation questions (``--guard``: gold paragraph given, never trained
on by the shipped reader) are split in two by article: one half is trained on with the news (so
the new trees do not unlearn Wikipedia), the other is a guard. The number of trees is the best on
CRUD validation among those that cost the guard at most ``--guard-loss`` of top-1 F1. The neural
confidence calibration is refitted on CRUD validation and the guard. The new trees are appended
to ``trees_neural.npz`` (with ``--lexical`` also to ``trees.npz``); the span head, the word tables
and the lexical trees are unchanged. ``--rules`` measures the reader's rules and span shapes.
"""
from __future__ import annotations

import argparse
import json
import logging
import pickle
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from eval_reader import load_set, make_idf, passage_of, validation, held_out as reader_held_out
import rag
from rag.answering.assistant import Assistant
from rag.answering.extractive import select_sentences
from rag.answering.reader.features import FEATURE_NAMES, apply_lexical
from rag.answering.reader.neural import NEURAL_FEATURES
from rag.answering.reader.reader import MODEL_DIR, NeuralRanker, Reader, Trees, collect_candidates
from rag.answering.reader.rules import RULES, SHAPES, apply_rules, widen
from rag.config import Config
from rag.eval.evaluation import load_questions
from rag.eval.metrics import span_f1
from rag.eval.split import story_parts
from rag.query import Query
from rag.text import split_sentences

log = logging.getLogger("adapt_reader")


@dataclass
class Group:
    """One question's candidates as the reader ranks them: feature rows (lexical tables applied),
    the span head's columns (None without the encoder), spans, their F1 against the gold."""

    set: str
    part: str
    qid: str
    X: np.ndarray
    nn: np.ndarray | None
    spans: np.ndarray  # (n, 3): passage, start, end
    f1: np.ndarray
    question: str = ""
    passages: list = None  # the passages read (texts), for measuring the reader's rules
    answers: tuple = ()


class Recorder(Reader):
    """The shipped reader, recording the candidates of every question it reads."""

    def __init__(self, base: Reader):
        super().__init__(base.trees, base.lex, base.calibration, base.meta, base.max_sentences, base.neural)
        self.last = None
        self.read_passages: list[str] = []

    def read(self, question, passages, sentences=None, encoder=None):
        question = Query.of(question)
        cands = collect_candidates(question, passages, sentences, max_sentences=self.max_sentences)
        nn = None
        if len(cands) and encoder is not None and self.neural is not None:
            nn = self.neural_features(question, passages, cands, encoder)
        X = cands.features.copy()
        apply_lexical(X, cands.word_keys, self.lex)
        texts = [passages[p].text[a:b] for p, (a, b) in zip(cands.passage.tolist(), cands.spans.tolist())]
        spans = np.column_stack([cands.passage, cands.spans]) if len(cands) else np.zeros((0, 3), np.int64)
        self.last = (X, nn, spans, texts)
        self.read_passages = [p.text for p in passages]
        return super().read(question, passages, sentences, encoder)


def collect_crud(index: str, qa: str, recorder: Recorder) -> list[Group]:
    retriever = rag.Retriever.load(index)
    assistant = Assistant(retriever, reader=recorder)
    questions = load_questions(qa)
    parts = story_parts(questions)
    out = []
    for q in tqdm([q for q in questions if parts[q.id] in ("train", "validation")], desc="CRUD", unit="question"):
        recorder.last = None
        assistant.ask(q.question)
        if recorder.last is None or len(recorder.last[0]) == 0:
            continue
        X, nn, spans, texts = recorder.last
        f1 = np.array([span_f1(t, q.answers) for t in texts])
        out.append(Group("crud", parts[q.id], q.id, X, nn, spans, f1, q.question, recorder.read_passages, q.answers))
    return out


def collect_gold_paragraph(pairs: list[str], recorder: Recorder, part: str = "validation") -> list[Group]:
    """The reader's CMRC / DRCD questions of one part, gold paragraph given: ``validation`` (never
    trained on; the guard) or ``train`` (the reader's training questions, for ``train_extent.py``).
    ``pairs``: articles and questions files, alternating."""
    from rag.embedding import E5Int8Embedder

    encoder = E5Int8Embedder()
    config = Config()
    out = []
    for articles, qa in zip(pairs[::2], pairs[1::2]):
        name = Path(qa).name.split("_")[0]
        items = load_set(name, articles, qa)
        idf = make_idf(sorted({it.text for it in items if not reader_held_out(it.article)}))
        chosen = [it for it in items if validation(it.article) == (part == "validation") and not reader_held_out(it.article)]
        for it in tqdm(chosen, desc=name, unit="question"):
            q = Query.of(it.question)
            passages = [passage_of(it)]
            recorder.last = None
            recorder.read(q, passages, select_sentences(q, passages, idf, config), encoder=encoder)
            if recorder.last is None or len(recorder.last[0]) == 0:
                continue
            X, nn, spans, texts = recorder.last
            out.append(Group(name, part, it.id, X, nn, spans, np.array([span_f1(t, it.answers) for t in texts]),
                             it.question, recorder.read_passages, it.answers))
    return out


def _replay(g: Group) -> bool:
    """Half of the guard questions, by a hash of their article (CMRC ids are DEV_4_QUERY_0, DRCD
    ids 1149-6-1: the part before the question's number names the article's paragraph)."""
    import hashlib

    article = re.sub(r"(_QUERY_\d+|-\d+)$", "", g.qid)
    return int(hashlib.sha1(("replay:" + article).encode()).hexdigest(), 16) % 2 == 0


def grade(f1: np.ndarray) -> np.ndarray:
    return np.select([f1 >= 0.999, f1 >= 0.8, f1 >= 0.6, f1 >= 0.4], [4, 3, 2, 1], 0)


def rows(groups: list[Group], neural: bool):
    X = np.concatenate([np.hstack([g.X, g.nn]) if neural else g.X for g in groups])
    return X, np.concatenate([g.f1 for g in groups]), np.array([len(g.f1) for g in groups])


def top1_f1(scores: np.ndarray, sizes: np.ndarray, f1: np.ndarray) -> float:
    out, s = [], 0
    for n in sizes:
        out.append(f1[s + int(np.argmax(scores[s:s + n]))])
        s += n
    return float(np.mean(out)) if out else float("nan")


def boost(lgb, base: Trees, train: list[Group], val: list[Group], guard: list[Group], neural: bool, args):
    """Trees grown on top of ``base``'s scores; returns (new trees or None, record)."""
    Xtr, ftr, gtr = rows(train, neural)
    Xva, fva, gva = rows(val, neural)
    Xgu, fgu, ggu = rows(guard, neural)
    names = FEATURE_NAMES + (NEURAL_FEATURES if neural else [])
    itr, iva, igu = base.predict(Xtr), base.predict(Xva), base.predict(Xgu)
    params = {"objective": "lambdarank", "metric": "ndcg", "eval_at": [1], "lambdarank_truncation_level": 20,
              "learning_rate": args.lr, "num_leaves": args.leaves, "min_data_in_leaf": args.min_leaf,
              "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
              "verbose": -1, "num_threads": 2, "seed": args.seed, "max_bin": 63, "max_depth": args.depth}
    dtr = lgb.Dataset(Xtr, grade(ftr), group=gtr, init_score=itr, feature_name=names, free_raw_data=False)
    booster = lgb.train(params, dtr, args.rounds)
    record = {"params": {**params, "rounds_grown": args.rounds}, "curve": []}
    best_n, best = 0, (top1_f1(iva, gva, fva), 0.0)
    base_guard = top1_f1(igu, ggu, fgu)
    record["curve"].append({"trees": 0, "crud_validation": best[0], "guard": base_guard})
    sva, sgu = np.zeros(len(Xva)), np.zeros(len(Xgu))
    for n in range(args.step, args.rounds + 1, args.step):  # the new trees' scores, ten trees at a time
        sva += booster.predict(Xva, start_iteration=n - args.step, num_iteration=args.step, raw_score=True)
        sgu += booster.predict(Xgu, start_iteration=n - args.step, num_iteration=args.step, raw_score=True)
        va, gu = top1_f1(iva + sva, gva, fva), top1_f1(igu + sgu, ggu, fgu)
        record["curve"].append({"trees": n, "crud_validation": va, "guard": gu})
        if gu >= base_guard - args.guard_loss and va > best[0]:
            best_n, best = n, (va, gu)
    record.update(chosen_trees=best_n, crud_validation_top1_f1={"before": record["curve"][0]["crud_validation"],
                                                                "after": best[0]},
                  guard_top1_f1={"before": base_guard, "after": best[1] if best_n else base_guard})
    log.info("%s: %s", "neural" if neural else "lexical", json.dumps(record["curve"]))
    if not best_n:
        return None, record
    extra = Trees.from_lightgbm(booster.dump_model(num_iteration=best_n), names)
    return extra, record


def unadapted(reader: Reader) -> Reader:
    """The reader as it was before an earlier adaptation (its appended trees cut off), so that a
    rerun starts from the reader trained on CMRC / DRCD, never from its own output."""
    news = reader.meta.get("news")
    if not news:
        return reader
    meta = {k: v for k, v in reader.meta.items() if k != "news"}
    meta["calibration"] = news["base_calibration"]["lexical"]
    ncal = news["base_calibration"]["neural"]
    neural = NeuralRanker(reader.neural.head, reader.neural.trees.first(*news["base_size"]["neural"]),
                          (ncal["a"], ncal["b"], ncal["c"]))
    cal = meta["calibration"]
    return Reader(reader.trees.first(*news["base_size"]["lexical"]), reader.lex, (cal["a"], cal["b"], cal["c"]),
                  meta, reader.max_sentences, neural)


def calibrate(trees: Trees, groups: list[Group], neural: bool) -> tuple[tuple[float, float, float], list]:
    """The reader's confidence, sigmoid(a·best + b·(best − non-overlapping runner-up) + c), fitted
    to P(character F1 ≥ 0.8) on the validation questions."""
    from sklearn.linear_model import LogisticRegression

    xs, ys = [], []
    for g in groups:
        X = np.hstack([g.X, g.nn]) if neural else g.X
        sc = trees.predict(X)
        i = int(np.argmax(sc))
        p, a, b = g.spans[i]
        same = (g.spans[:, 0] == p) & (g.spans[:, 1] < b) & (g.spans[:, 2] > a)
        second = sc[~same].max() if (~same).any() else sc[i] - 5
        xs.append([sc[i], sc[i] - second])
        ys.append(g.f1[i] >= 0.8)
    model = LogisticRegression(C=1.0).fit(np.array(xs), np.array(ys))
    p = model.predict_proba(np.array(xs))[:, 1]
    bins = np.clip((p * 5).astype(int), 0, 4)
    ys = np.array(ys)
    calib = [(f"{k / 5:.1f}-{(k + 1) / 5:.1f}", int((bins == k).sum()),
              float(ys[bins == k].mean()) if (bins == k).any() else None) for k in range(5)]
    a, b = model.coef_[0]
    return (float(a), float(b), float(model.intercept_[0])), calib


@dataclass(frozen=True)
class _Text:
    text: str
    title: str = ""


def expansion_table(reader: Reader, groups: list[Group]) -> dict[str, dict[str, float]]:
    """Per kind of question (``Query.asked.kind``): the mean character F1 of the reader's answer
    widened to each of ``SHAPES``, and how many questions."""
    from types import SimpleNamespace

    by_kind: dict[str, dict[str, list]] = {}
    for g in groups:
        q = Query.of(g.question)
        passages = [_Text(t) for t in g.passages]
        cands = SimpleNamespace(passage=g.spans[:, 0], spans=g.spans[:, 1:])
        i = int(np.argmax(apply_rules(q, passages, cands, reader.neural.trees.predict(np.hstack([g.X, g.nn])))))
        p, a, b = g.spans[i].tolist()
        text = g.passages[p]
        s0, s1 = next(((s, e) for s, e in split_sentences(text) if s <= a < e), (a, b))
        row = by_kind.setdefault(q.asked.kind, {s: [] for s in SHAPES})
        for shape in SHAPES:
            x, y = widen(text, a, b, s0, s1, shape)
            row[shape].append(span_f1(g.passages[p][x:y], g.answers))
    return {k: {**{s: round(float(np.mean(v)), 3) for s, v in row.items()}, "n": len(row["span"])}
            for k, row in sorted(by_kind.items())}


def rule_table(reader: Reader, groups: list[Group]) -> dict[str, dict[str, float]]:
    """Top-1 character F1 of the reader on recorded questions with all its rules, without each, and
    with none; and the share of questions the assistant would say "文章未提及…" of (all of these
    questions are answerable: every one of those is a false decline)."""
    from types import SimpleNamespace

    from rag.answering.assistant import Assistant

    variants = {"all rules": tuple(RULES), "no rules": ()}
    variants |= {f"without {r}": tuple(x for x in RULES if x != r) for r in RULES}
    out: dict[str, dict[str, float]] = {}
    for name in sorted({g.set for g in groups}):
        mine = [g for g in groups if g.set == name and g.nn is not None]
        row = {}
        for label, rules in variants.items():
            f1 = []
            for g in mine:
                q = Query.of(g.question)
                passages = [_Text(t) for t in g.passages]
                cands = SimpleNamespace(passage=g.spans[:, 0], spans=g.spans[:, 1:])
                sc = apply_rules(q, passages, cands, reader.neural.trees.predict(np.hstack([g.X, g.nn])), rules)
                f1.append(g.f1[int(np.argmax(sc))])
            row[label] = float(np.mean(f1))
        for kind, shapes in expansion_table(reader, mine).items():
            row[f"shape {kind}"] = shapes
        row["said not mentioned"] = float(np.mean([bool(Assistant._missing(Query.of(g.question), [_Text(t) for t in g.passages]))
                                                   for g in mine]))
        row["questions"] = len(mine)
        out[name] = row
    return out


NEWS_SECTION = "## Adapted to news"


def write_card(base: Path, out: Path, news: dict, argv: list[str]) -> None:
    """The model card of ``base`` with a section on this adaptation (replacing an earlier one)."""
    card = (base / "README.md").read_text(encoding="utf-8") if (base / "README.md").exists() else ""
    card = card.split(NEWS_SECTION)[0].rstrip() + "\n\n"
    rec = news["neural"]
    card += f"""{NEWS_SECTION}
{rec['chosen_trees']} more trees (LightGBM lambdarank, up to {rec['params']['num_leaves']} leaves, learning rate
{rec['params']['learning_rate']}) appended to the neural trees, grown from their scores on the candidates the
reader ranks when the product answers CRUD-RAG QA dev questions (IAAR-Shanghai/CRUD_RAG, Apache-2.0) on the
68,177-article archive: {news['crud_questions']['train']} questions of the training part (split by story,
`rag.eval.split.story_parts`), with {news['replayed']} CMRC/DRCD validation questions (half, by article) so that
Wikipedia is not unlearnt. The weights stay CC BY-SA 4.0 (derived from CMRC/DRCD as before).
Chosen on CRUD's validation part ({news['crud_questions']['validation']} questions) and the other half of the
CMRC/DRCD validation questions ({news['guard_questions']}, the guard): top-1 character F1 of the reader's best
candidate, CRUD validation {rec['crud_validation_top1_f1']['before']:.3f} → {rec['crud_validation_top1_f1']['after']:.3f},
guard {rec['guard_top1_f1']['before']:.3f} → {rec['guard_top1_f1']['after']:.3f}. The neural confidence is refitted on
both. Held-out numbers through the product (CRUD held-out part, CMRC and DRCD held-out): `docs/benchmarks.md`,
"Reading news". Rerun (records the candidates once, ~35 min on 2 busy cores, then ~15 min):
```
.venv/bin/python scripts/adapt_reader.py {' '.join(argv).replace(str(Path('/work/shared').resolve()), '../shared')}
```
"""
    (out / "README.md").write_text(card, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crud", nargs=2, metavar=("INDEX", "QUESTIONS"), required=True)
    ap.add_argument("--guard", nargs="+", metavar="FILE", required=True,
                    help="ARTICLES QA pairs of the reader's training sets (CMRC, DRCD): their validation questions")
    ap.add_argument("--cache", required=True, help="folder for the recorded candidates")
    ap.add_argument("--base", default=str(MODEL_DIR), help="the reader to adapt (default: the shipped one)")
    ap.add_argument("--out", default=str(MODEL_DIR))
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--leaves", type=int, default=15)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--min-leaf", type=int, default=40)
    ap.add_argument("--guard-loss", type=float, default=0.005)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("--lexical", action="store_true", help="also adapt the lexical trees (used without the e5 encoder)")
    ap.add_argument("--rules", action="store_true", help="only measure the reader's rules on the validation questions")
    args = ap.parse_args(argv)
    if len(args.guard) % 2:
        ap.error("--guard takes ARTICLES QA pairs")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    base = unadapted(Reader.load(args.base))
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    path = cache / "crud.pkl"
    if path.exists():
        crud = pickle.loads(path.read_bytes())
    else:
        crud = collect_crud(*args.crud, Recorder(base))
        path.write_bytes(pickle.dumps(crud, protocol=5))
    gpath = cache / "guard.pkl"
    if gpath.exists():
        guard = pickle.loads(gpath.read_bytes())
    else:
        guard = collect_gold_paragraph(args.guard, Recorder(base))
        gpath.write_bytes(pickle.dumps(guard, protocol=5))
    log.info("candidates recorded: %d CRUD questions, %d guard questions (%.0f s)", len(crud), len(guard), time.time() - t0)
    if args.collect_only:
        return 0
    if args.rules:
        val = [g for g in crud if g.part == "validation"] + guard
        print(json.dumps(rule_table(Reader.load(args.out), val), ensure_ascii=False, indent=1))
        return 0
    import lightgbm as lgb

    train = [g for g in crud if g.part == "train" and g.nn is not None]
    val = [g for g in crud if g.part == "validation" and g.nn is not None]
    guard = [g for g in guard if g.nn is not None]
    # half of the Wikipedia validation questions (by a hash of the question's article, as recorded)
    # are trained on with the news, so that the new trees do not unlearn what the reader did well;
    # the other half is the guard
    replay = [g for g in guard if _replay(g)]
    guard = [g for g in guard if not _replay(g)]
    train = train + replay
    log.info("CRUD training %d questions (%d with a right candidate), validation %d (%d)", len(train),
             sum(g.f1.max() >= 0.8 for g in train), len(val), sum(g.f1.max() >= 0.8 for g in val))
    log.info("with %d Wikipedia questions replayed; guard %d", len(replay), len(guard))
    neural_extra, nrec = boost(lgb, base.neural.trees, train, val, guard, True, args)
    lexical_extra, lrec = (boost(lgb, base.trees, train, val, guard, False, args) if args.lexical
                           else (None, {"chosen_trees": 0, "skipped": "the lexical trees are kept as they were"}))
    trees = base.trees + lexical_extra if lexical_extra is not None else base.trees
    ntrees = base.neural.trees + neural_extra if neural_extra is not None else base.neural.trees
    # the lexical trees' confidence is refitted only when they changed
    cal, calib = calibrate(trees, val + guard, False) if lexical_extra is not None else (base.calibration, None)
    ncal, ncalib = calibrate(ntrees, val + guard, True)
    meta = dict(base.meta)
    meta["calibration"] = {"a": cal[0], "b": cal[1], "c": cal[2]}
    meta["news"] = {
        "trained_on": "CRUD-RAG QA dev (IAAR-Shanghai/CRUD_RAG, Apache-2.0), training part by story "
                      "(rag.eval.split.story_parts), read through Assistant.ask on the 68k-article index",
        "crud_questions": {"train": len(train) - len(replay), "validation": len(val)}, "guard_questions": len(guard),
        "replayed": len(replay),
        "neural": nrec, "lexical": lrec,
        "calibration_validation": {"lexical": calib, "neural": ncalib},
        "seconds": round(time.time() - t0),
        "base_size": {"lexical": [len(base.trees.feature), len(base.trees.roots)],
                      "neural": [len(base.neural.trees.feature), len(base.neural.trees.roots)]},
        "base_calibration": {"lexical": dict(zip("abc", base.calibration)),
                             "neural": dict(zip("abc", base.neural.calibration))},
    }
    reader = Reader(trees, base.lex, cal, meta, base.max_sentences,
                    NeuralRanker(base.neural.head, ntrees, ncal))
    reader.save(args.out, meta)
    write_card(Path(args.base), Path(args.out), meta["news"], argv if argv is not None else sys.argv[1:])
    for name, rec in (("neural", nrec), ("lexical", lrec)):
        if not rec["chosen_trees"]:
            print(f"{name}: no trees added")
            continue
        print(f"{name}: {rec['chosen_trees']} trees added; CRUD validation top-1 F1 "
              f"{rec['crud_validation_top1_f1']['before']:.3f} -> {rec['crud_validation_top1_f1']['after']:.3f}; "
              f"guard (CMRC/DRCD validation) {rec['guard_top1_f1']['before']:.3f} -> {rec['guard_top1_f1']['after']:.3f}")
    print(f"saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
