"""Evaluate the answer-span reader on the held-out questions, gold paragraph given.

    .venv/bin/python scripts/eval_reader.py \
        --cmrc /work/shared/bench/cmrc2018_dev.articles.jsonl /work/shared/bench/cmrc2018_dev.qa.jsonl \
        --drcd /work/shared/bench/drcd_dev.articles.jsonl /work/shared/bench/drcd_dev.qa.jsonl

Held out: the questions about articles with ``int(sha1(article_id), 16) % 4 == 0``. For each question
the passage is the gold article's text; the sentence baseline answers with the whole best sentence
of ``select_sentences``; the reader reads the top sentences of the same ranking. Prints EM / F1
(``rag.eval.metrics``), mean short-answer length and the reader's latency per question.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass

from rag.config import Config
from rag.eval.metrics import span_em, span_f1
from rag.answering.extractive import select_sentences
from rag.query import Query
from rag.answering.reader.reader import Reader
from rag.records import Passage
from rag.text import to_simplified, tokenize


@dataclass(frozen=True)
class Item:
    set: str
    id: str
    question: str
    answers: tuple[str, ...]
    article: str
    title: str
    text: str


def held_out(article_id: str) -> bool:
    """The split rule: an article is held out when sha1(id) % 4 == 0."""
    return int(hashlib.sha1(article_id.encode()).hexdigest(), 16) % 4 == 0


def validation(article_id: str) -> bool:
    """Training articles kept aside for early stopping and calibration (about 1 in 6)."""
    return int(hashlib.sha1(("val:" + article_id).encode()).hexdigest(), 16) % 6 == 0


def load_set(name: str, articles: str, qa: str) -> list[Item]:
    arts = {}
    with open(articles, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                a = json.loads(line)
                arts[a["id"]] = a
    items = []
    with open(qa, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            q = json.loads(line)
            aid = q["gold_docs"][0]
            a = arts[aid]
            items.append(Item(name, q["id"], q["question"], tuple(q["answers"]), aid, a.get("title") or "", a["text"]))
    return items


def make_idf(texts: list[str]):
    """BM25-style IDF over the given documents (what the retriever's keyword index would give)."""
    df = Counter()
    for t in texts:
        df.update(set(tokenize(t)))
    n = len(texts)
    table = {w: math.log((n - c + 0.5) / (c + 0.5) + 1.0) for w, c in df.items()}
    default = math.log((n + 0.5) / 0.5 + 1.0)
    return lambda w: table.get(w, default)


def passage_of(item: Item) -> Passage:
    return Passage(doc_id=item.article, title=item.title, date=None, source=None, text=item.text, score=1.0,
                   start=0, end=len(item.text))


def evaluate(reader: Reader, items: list[Item], idf, *, simplify_question: bool = False,
             all_sentences: bool = False, encoder=None) -> dict:
    config = Config()
    em = f1 = bem = bf1 = length = 0.0
    latencies = []
    for it in items:
        q = Query.of(to_simplified(it.question) if simplify_question else it.question)
        passages = [passage_of(it)]
        sents = select_sentences(q, passages, idf, config)
        base = passages[0].text[sents[0].start:sents[0].end].strip() if sents else ""
        bem += span_em(base, it.answers)
        bf1 += span_f1(base, it.answers)
        t0 = time.perf_counter()
        span = reader.read(q, passages, None if all_sentences else sents, encoder=encoder)
        latencies.append(time.perf_counter() - t0)
        pred = span.text if span else ""
        em += span_em(pred, it.answers)
        f1 += span_f1(pred, it.answers)
        length += len(pred)
    n = max(len(items), 1)
    latencies.sort()
    return {"n": len(items), "reader_em": em / n, "reader_f1": f1 / n, "sentence_em": bem / n, "sentence_f1": bf1 / n,
            "mean_short_chars": length / n, "latency_ms_mean": 1000 * sum(latencies) / n,
            "latency_ms_p95": 1000 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else 0.0}


def run(reader: Reader, sets: dict[str, list[Item]], limit: int | None = None, all_sentences: bool = False,
        neural: bool = True, on_validation: bool = False) -> dict:
    """Held-out results per set: CMRC, DRCD (Traditional questions), DRCD (Simplified questions);
    with the span head on e5's token states when the reader has one and ``neural``. With
    ``on_validation``: the validation questions instead (for choosing a setting)."""
    encoder = None
    if neural and reader.neural is not None:
        from rag.embedding import E5Int8Embedder

        encoder = E5Int8Embedder()
    out = {}
    for name, items in sets.items():
        idf = make_idf(sorted({it.text for it in items}))
        chosen = (lambda a: validation(a) and not held_out(a)) if on_validation else held_out
        held = [it for it in items if chosen(it.article)][:limit]
        out[name] = evaluate(reader, held, idf, all_sentences=all_sentences, encoder=encoder)
        if name == "drcd":
            out["drcd_simplified_questions"] = evaluate(reader, held, idf, simplify_question=True,
                                                        all_sentences=all_sentences, encoder=encoder)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cmrc", nargs=2, metavar=("ARTICLES", "QA"))
    ap.add_argument("--drcd", nargs=2, metavar=("ARTICLES", "QA"))
    ap.add_argument("--model", default=None, help="reader folder (default: the shipped rag/answering/reader/model)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many held-out questions per set")
    ap.add_argument("--all-sentences", action="store_true", help="read every sentence, not the top 8")
    ap.add_argument("--lexical-only", action="store_true", help="rank on the lexical features alone (no span head)")
    ap.add_argument("--validation", action="store_true", help="the validation questions instead of the held-out ones "
                    "(never trained on; for choosing settings)")
    args = ap.parse_args(argv)
    sets = {}
    if args.cmrc:
        sets["cmrc"] = load_set("cmrc", *args.cmrc)
    if args.drcd:
        sets["drcd"] = load_set("drcd", *args.drcd)
    if not sets:
        ap.error("give --cmrc and/or --drcd")
    reader = Reader.load(args.model)
    results = run(reader, sets, args.limit, args.all_sentences, neural=not args.lexical_only, on_validation=args.validation)
    print(f"{'set':28} {'n':>5} {'reader EM':>9} {'F1':>6} {'sentence EM':>11} {'F1':>6} {'short chars':>11} "
          f"{'ms/q':>6} {'p95':>6}")
    for name, r in results.items():
        print(f"{name:28} {r['n']:5d} {r['reader_em']:9.3f} {r['reader_f1']:6.3f} {r['sentence_em']:11.3f} "
              f"{r['sentence_f1']:6.3f} {r['mean_short_chars']:11.1f} {r['latency_ms_mean']:6.1f} "
              f"{r['latency_ms_p95']:6.1f}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
