"""An experiment (not shipped): a questions' own copy of e5-small's top layers, adapted to news.

Measured on the 68 CRUD questions it made retrieval worse (``docs/benchmarks.md``, "A question encoder
adapted to news"), so the product embeds questions with e5's own layers. The script stays so that
the result can be checked and the idea taken further.

Documents keep the vectors they were indexed with: only a question's path changes. Its layer-8
token states come from the index's int8 graph as before; a copy of layers 9-11 (initialised from
e5's weights) turns them into the question's vector. The copy learns to put a question near the
stored vector of the passage that answers it, against the passages the current copy ranks near it
(hard negatives from the whole index) and the other questions' passages.

Training questions:
- news (``--news INDEX``): made from the archive's own text, no question set needed. A sentence of a
  passage, one of its names, places, times, numbers or nouns replaced by a question word
  (谁 / 哪里 / 什么时候 / 多少 / 什么), cut to the words around it: "…服务局什么时候发布联合声明称？". Its
  passage is the positive; other passages of its article, and passages of other articles that
  repeat the words the question was made from (syndicated copies), are neither positive nor negative.
  ``--exclude QA.jsonl`` keeps the gold articles of a question set out of training.
- reading-comprehension questions (``--qa INDEX QA.jsonl``, CMRC 2018 / DRCD dev): only questions
  about articles outside the held-out split (``rag.eval.split.held_out``) and outside the validation
  split (``validation`` below); the positive is a passage of the gold article holding the answer.
Validation, printed after every epoch: dense R@1 / R@5 of the validation split's questions of each
``--qa`` set, and of news questions made from 1 in 50 articles never trained on.

    .venv/bin/python -m pip install -e '.[train]'
    .venv/bin/python scripts/train_query_layers.py --news ../bench-index/crud \\
        --exclude ../shared/bench/crud_news_dev.qa.jsonl \\
        --qa ../bench-index/cmrc ../shared/bench/cmrc2018_dev.qa.jsonl \\
        --qa ../bench-index/drcd ../shared/bench/drcd_dev.qa.jsonl \\
        --test ../shared/bench/crud_news_dev.qa.jsonl
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.engines.indexing import row_key
from rag.eval.split import held_out
from rag.query import Query
from rag.search.retrieval import Retriever
from rag.text import fold, pos_tag

log = logging.getLogger("train_query_layers")

_SENTENCE = re.compile(r"[^。！？!?；;\n]+[。！？!?；;]?")
_QWORD = {"nr": "谁", "nrt": "谁", "nrfg": "谁", "ns": "哪里", "nt": "哪个机构", "t": "什么时候", "m": "多少"}
_ANSWER_TAGS = {"nr", "nrt", "nrfg", "ns", "nt", "nz", "t", "m", "n", "vn", "eng"}
_HAN = re.compile(r"[\u4e00-\u9fff]")


def validation(article_id: str) -> bool:
    """Training articles kept aside for choosing the epochs (about 1 in 6; the reader's rule)."""
    return int(hashlib.sha1(("val:" + article_id).encode()).hexdigest(), 16) % 6 == 0


def news_validation(article_id: str) -> bool:
    return int(hashlib.sha1(("qval:" + article_id).encode()).hexdigest(), 16) % 50 == 0


@dataclass
class Example:
    question: str           # folded question text, without the prompt
    positives: list[int]    # rows of the corpus that answer it
    masked: set[int]        # rows that are neither (same article)
    copy_text: str = ""     # a row holding this text is a copy of the positive: masked
    corpus: str = ""
    states: np.ndarray | None = field(default=None, repr=False)


def make_question(sentence: str, rng: random.Random, short: bool = False) -> tuple[str, str] | None:
    """(question, the source words it was made from) or None when the sentence has no answer word."""
    words = pos_tag(sentence)
    spots = [i for i, (w, t) in enumerate(words) if t in _ANSWER_TAGS and len(w) >= 2 and (t != "m" or any(c.isdigit() for c in w)
                                                                                               or _HAN.search(w))]
    if not spots:
        return None
    i = rng.choice(spots)
    w, t = words[i]
    q = _QWORD.get(t, "什么")
    if t == "m" and ("年" in w or "月" in w or "日" in w):
        q = "什么时候"
    if short:  # like "谁被扣押了？": a few words on each side, a third of the time none before it
        before, after = (0 if rng.random() < 1 / 3 else rng.randint(1, 5)), rng.randint(1, 5)
    else:
        before, after = rng.randint(3, 8), rng.randint(3, 8)
    lo, hi = max(0, i - before), min(len(words), i + 1 + after)
    left = "".join(x for x, _ in words[lo:i]).strip("，,、：: ")
    right = "".join(x for x, _ in words[i + 1:hi]).strip("，,、：: 。！？!?；;")
    question = f"{left}{q}{right}？"
    source = "".join(x for x, _ in words[lo:hi]).strip()
    if len(_HAN.findall(question)) < (5 if short else 6):
        return None
    return question, source


def news_examples(retriever: Retriever, exclude: set[str], per_article: int, limit: int, seed: int, short: bool):
    rng = random.Random(seed)
    rows = retriever.engine.rows
    by_doc: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_doc.setdefault(r.doc_id, []).append(i)
    docs = [d for d in by_doc if d not in exclude]
    rng.shuffle(docs)
    train, val = [], []
    for d in docs:
        target = val if news_validation(d) else train
        if len(train) >= limit and target is train:
            continue
        for _ in range(per_article):
            row = rng.choice(by_doc[d])
            text = rows[row].text
            sentences = [s for s in _SENTENCE.findall(text) if 12 <= len(s) <= 120]
            if not sentences:
                continue
            made = make_question(rng.choice(sentences), rng, short)
            if made is None:
                continue
            question, source = made
            target.append(Example(fold(question), [row], set(by_doc[d]) - {row}, fold(source), "news"))
        if len(train) >= limit and len(val) >= limit // 50:
            break
    return train, val


def qa_examples(name: str, retriever: Retriever, qa_path: str):
    rows = retriever.engine.rows
    by_doc: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_doc.setdefault(r.doc_id, []).append(i)
    train, val = [], []
    for line in open(qa_path, encoding="utf-8"):
        q = json.loads(line)
        gold = q["gold_docs"][0]
        if held_out(gold) or gold not in by_doc:
            continue
        answers = [fold(a) for a in q["answers"] if a.strip()]
        pos = [i for i in by_doc[gold] if any(a in fold(rows[i].text) for a in answers)]
        if not pos:
            continue
        ex = Example(Query.of(q["question"]).folded, pos, set(by_doc[gold]) - set(pos), "", name)
        (val if validation(gold) else train).append(ex)
    return train, val


def add_states(examples: list[Example], embedder) -> None:
    enc = embedder.encoder()
    dim = enc.dim
    prompt = embedder.prompts[0]

    def states(ex: Example):
        ids = enc.windows([prompt + ex.question[:512]])[1][0]
        return enc.token_states(ids)[:, dim:2 * dim].astype(np.float16)

    t = time.time()
    for start in range(0, len(examples), 2000):
        part = examples[start:start + 2000]
        for ex, s in zip(part, enc.map(states, part)):
            ex.states = s
        log.info("layer-8 states: %d/%d (%.0f s)", start + len(part), len(examples), time.time() - t)


def stored_vectors(r: Retriever) -> np.ndarray:
    """The index's chunk vectors in the order of ``r.chunks``."""
    keys = [row_key(c) for c in r.chunks]
    by_key = r.engine.vectors(keys)
    return np.stack([by_key[k] for k in keys])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--news", required=True, help="an index of news articles to make questions from")
    ap.add_argument("--exclude", action="append", default=[], help="a QA file whose gold articles are never trained on")
    ap.add_argument("--qa", nargs=2, action="append", default=[], metavar=("INDEX", "QA"))
    ap.add_argument("--news-questions", type=int, default=30000)
    ap.add_argument("--short", action="store_true", help="news questions of 1-5 words around the question word (else 3-8)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.02)
    ap.add_argument("--hard", type=int, default=32, help="hard negatives per question from its whole index")
    ap.add_argument("--keep", type=float, default=0.0, help="weight of staying near e5's own question vector")
    ap.add_argument("--test", action="append", default=[], metavar="QA",
                    help="after training: retrieval on the --news index for these questions (never trained on), "
                         "hybrid / keyword / dense with e5's own layers and with the trained copy")
    ap.add_argument("--test-only", metavar="NPZ", help="skip training: evaluate these trained layers")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", default=str(Path.home() / ".cache" / "rag" / "query_layers" / "top_layers.npz"))
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "rag" / "query_layers"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    import pickle

    import torch
    import torch.nn.functional as F

    from span_head import _model

    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    exclude = set()
    for path in args.exclude:
        for line in open(path, encoding="utf-8"):
            exclude.update(json.loads(line)["gold_docs"])

    if args.test_only:
        test(args.news, args.test, Path(args.test_only))
        return 0
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    news = Retriever.load(args.news)
    corpora: dict[str, tuple[Retriever, np.ndarray]] = {"news": (news, stored_vectors(news))}
    for index, _ in args.qa:
        r = Retriever.load(index)
        corpora[Path(index).name] = (r, stored_vectors(r))
    key = hashlib.sha1(json.dumps([args.news, sorted(exclude), args.qa, args.news_questions, args.seed, args.short]).encode()).hexdigest()[:12]
    data_path = cache / f"examples-{key}.pkl"
    if data_path.is_file():
        train, val = pickle.loads(data_path.read_bytes())
    else:
        train, val = news_examples(news, exclude, 1, args.news_questions, args.seed, args.short)
        val = {"news": val}
        for index, qa in args.qa:
            name = Path(index).name
            tr, va = qa_examples(name, corpora[name][0], qa)
            train += tr
            val[name] = va
        add_states(train + [e for v in val.values() for e in v], news.embedder)
        data_path.write_bytes(pickle.dumps((train, val), protocol=5))
    log.info("training questions: %s; validation: %s",
             {c: sum(e.corpus == c for e in train) for c in corpora}, {c: len(v) for c, v in val.items()})
    V = {c: torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32)) for c, (_, m) in corpora.items()}
    news_texts = [fold(r.text) for r in news.engine.rows]  # to tell syndicated copies of a news passage

    def blocked(e: Example, row: int, c: str) -> bool:
        """Neither positive nor negative: the question's own passage or article, or a copy of it."""
        if row in e.positives or row in e.masked:
            return True
        return c == "news" and bool(e.copy_text) and e.copy_text in news_texts[row]

    model, H = _model(Path(news.embedder.folder))
    layers = model.layers

    def encode(batch: list[Example]):
        T = max(len(e.states) for e in batch)
        X = torch.zeros(len(batch), T, H)
        M = torch.zeros(len(batch), T, dtype=torch.bool)
        for j, e in enumerate(batch):
            X[j, :len(e.states)] = torch.from_numpy(e.states.astype(np.float32))
            M[j, :len(e.states)] = True
        bias = torch.zeros(M.shape).masked_fill(~M, -1e9)[:, None, None, :]
        h = X
        for layer in layers:
            h = layer(h, bias)
        pooled = (h * M[..., None]).sum(1) / M.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1)

    @torch.no_grad()
    def recall(examples: list[Example], c: str) -> tuple[float, float]:
        layers.eval()
        hit1 = hit5 = 0
        rows = corpora[c][0].engine.rows
        for s in range(0, len(examples), 256):
            b = examples[s:s + 256]
            top = (encode(b) @ V[c].T).topk(5, dim=1).indices.numpy()
            for e, t in zip(b, top):
                docs = [rows[int(i)].doc_id for i in t]
                gold = rows[e.positives[0]].doc_id
                hit1 += docs[0] == gold
                hit5 += gold in docs
        return hit1 / max(1, len(examples)), hit5 / max(1, len(examples))

    def report(tag: str) -> dict:
        out = {c: recall(v, c) for c, v in val.items()}
        log.info("%s validation dense R@1 / R@5: %s", tag, {c: f"{a:.3f} / {b:.3f}" for c, (a, b) in out.items()})
        return out

    history = [("e5", report("e5's own layers"))]
    init = {}  # e5's own vector of each training question, for --keep
    with torch.no_grad():
        layers.eval()
        for s in range(0, len(train), 512) if args.keep else ():
            for e, v in zip(train[s:s + 512], encode(train[s:s + 512])):
                init[id(e)] = v
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    steps = args.epochs * (len(train) // args.batch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, 1 - s / steps))
    rng = random.Random(args.seed)
    step = 0
    for epoch in range(args.epochs):
        by_corpus: dict[str, list[Example]] = {}
        for e in train:
            by_corpus.setdefault(e.corpus, []).append(e)
        batches = []
        for c, exs in by_corpus.items():
            rng.shuffle(exs)
            batches += [(c, exs[s:s + args.batch]) for s in range(0, len(exs) - args.batch + 1, args.batch)]
        rng.shuffle(batches)
        t0 = time.time()
        total = 0.0
        for c, batch in batches:
            layers.train()
            q = encode(batch)
            with torch.no_grad():
                scores = q.detach() @ V[c].T
                top = scores.topk(args.hard + 64, dim=1).indices.numpy()
            cand: list[int] = []
            own: list[int] = []
            for e in batch:
                own.append(len(cand))
                cand.append(e.positives[0])
            negs = []
            for j, e in enumerate(batch):
                picked = []
                for i in top[j]:
                    i = int(i)
                    if blocked(e, i, c):
                        continue
                    picked.append(i)
                    if len(picked) == args.hard:
                        break
                negs.append(picked)
            for picked in negs:
                cand += picked
            C = V[c][torch.tensor(cand)]
            logits = q @ C.T / args.temperature
            mask = torch.zeros_like(logits, dtype=torch.bool)
            for j, e in enumerate(batch):
                for col, row in enumerate(cand):
                    if col != own[j] and blocked(e, row, c):
                        mask[j, col] = True
            logits = logits.masked_fill(mask, -1e4)
            loss = F.cross_entropy(logits, torch.tensor(own))
            if args.keep:
                ref = torch.stack([init[id(e)] for e in batch])
                loss = loss + args.keep * (1 - (q * ref).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            total += loss.item()
            if step % 50 == 0:
                log.info("epoch %d step %d/%d loss %.3f (%.0f s)", epoch + 1, step, steps, total / 50, time.time() - t0)
                total = 0.0
        history.append((f"epoch {epoch + 1}", report(f"epoch {epoch + 1}")))
        tensors = {}
        for layer in layers:
            tensors.update(layer.tensors())
        path = cache / f"top_layers-epoch{epoch + 1}.npz"
        np.savez_compressed(path, **{k: v.astype(np.float16) for k, v in tensors.items()})
        log.info("wrote %s", path)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **{k: v.astype(np.float16) for k, v in tensors.items()})
    meta = {"args": vars(args), "history": history, "training_questions": {c: sum(e.corpus == c for e in train) for c in corpora}}
    out.with_suffix(".json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    log.info("wrote %s", out)
    test(args.news, args.test, out)
    return 0


class TrainedQuestions:
    """The index's embedder with questions through the trained copy of the top layers (documents,
    and everything else, as they were)."""

    def __init__(self, base, layers: Path) -> None:
        self._base, self._layers = base, layers

    def embed_queries(self, texts):
        return self._base.question_vectors(list(texts), self._layers)

    def __getattr__(self, name):
        return getattr(self._base, name)


def test(index: str, qa_files: list[str], layers: Path) -> None:
    """Retrieval tables (``rag eval --no-answers``) for each question file, e5's own layers first."""
    from rag.eval.evaluation import evaluate, load_questions

    retriever = Retriever.load(index)
    own = retriever.embedder
    for qa in qa_files:
        questions = load_questions(qa)
        for name, embedder in (("e5's own layers", own), (f"trained copy {layers}", TrainedQuestions(own, layers))):
            retriever.embedder = embedder
            report = evaluate(retriever, questions, answers=False)
            print(f"\n{qa}, questions through {name}:\n{report.table()}", flush=True)
    retriever.embedder = own


if __name__ == "__main__":
    raise SystemExit(main())
