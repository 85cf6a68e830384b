"""Vector storage at archive size: float32 (IndexFlatIP) against float16 and 8-bit scalar
quantization, on the vectors of a built index and real questions.

    python scripts/bench_vectors.py --index ../bench-index/crud ../shared/bench/crud_news_dev.qa.jsonl \
        ../shared/bench/cmrc2018_dev.qa.jsonl --questions 300

Prints, per storage: bytes per vector and in all, dense search p50 / p95 (k = 50, one query
at a time, as the app searches), and agreement with float32: the same best row, and the
overlap of the top 10 and top 50. Then hybrid search through ``Retriever.search`` at k = 5, 10
and 30, with the default folding of stories and with articles folded only. ``--soak``: resident
memory while every question is searched once (k = 30), as a long-running app meets more articles.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    import faiss

    from rag import Retriever
    from rag.engines.indexing import row_key

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("questions", nargs="+")
    ap.add_argument("--questions", dest="n", type=int, default=300, help="questions per file at most")
    ap.add_argument("--soak", action="store_true",
                    help="instead: every question once through Retriever.search (k = 30), resident memory every 500")
    args = ap.parse_args()
    r = Retriever.load(args.index)
    qs = []
    for path in args.questions:
        with open(path, encoding="utf-8") as f:
            qs += [json.loads(line)["question"] for line, _ in zip(f, range(args.n))]
    if args.soak:
        return soak(r, qs)
    stored = r.engine.vectors(row_key(c) for c in r.chunks)  # float16-rounded when the index stores float16
    vectors = np.stack(list(stored.values())).astype(np.float32)
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    queries = r.embedder.embed_queries(qs)
    variants = {"float32 (IndexFlatIP)": flat}
    for name, qt in (("float16 (SQ fp16)", faiss.ScalarQuantizer.QT_fp16), ("int8 (SQ8)", faiss.ScalarQuantizer.QT_8bit)):
        index = faiss.IndexScalarQuantizer(vectors.shape[1], qt, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
        index.add(vectors)
        variants[name] = index
    truth = flat.search(queries, 50)[1]
    print(f"{flat.ntotal:,} vectors of {vectors.shape[1]} dimensions; {len(qs)} questions")
    print("| storage | bytes / vector | all vectors | search p50 / p95 ms | same best | top-10 overlap | top-50 overlap |")
    print("|---|---|---|---|---|---|---|")
    for name, index in variants.items():
        lat, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            found.append(index.search(q[None, :], 50)[1][0])
            lat.append(time.perf_counter() - t0)
        found = np.array(found)
        same = float(np.mean(found[:, 0] == truth[:, 0]))
        o10 = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(found, truth)])
        o50 = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(found, truth)])
        per = index.code_size if hasattr(index, "code_size") else 4 * vectors.shape[1]
        lat.sort()
        print(f"| {name} | {per} | {per * index.ntotal / 2**20:,.0f} MiB | {lat[len(lat) // 2] * 1000:.1f} / {lat[int(0.95 * len(lat))] * 1000:.1f} "
              f"| {same:.3f} | {o10:.3f} | {o50:.3f} |")
    hybrid(r, qs)


def _rss_mb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) // 1024


def soak(r, qs: list[str]) -> None:
    """A long-running app's memory: resident size as searches meet ever more articles."""
    print(f"| searches | resident MB | seconds |\n|---|---|---|\n| 0 (loaded) | {_rss_mb():,} | |")
    t0 = time.perf_counter()
    for i, q in enumerate(qs, 1):
        r.search(q, 30)
        if i % 500 == 0 or i == len(qs):
            print(f"| {i:,} | {_rss_mb():,} | {time.perf_counter() - t0:.0f} |", flush=True)


def hybrid(r, qs: list[str]) -> None:
    """``Retriever.search`` (embedding the question, both retrievers, fusion, folding stories) p50 / p95
    at the app's k and rag eval's, with the repeated-text fold and without it (articles only), the
    second of two passes."""
    folds = {"articles and repeated passages (default)": r,
             "articles only": r.with_folding(repeated_text=False)}
    print(f"\nHybrid search, {len(qs)} questions one at a time, second pass")
    print("| fold | k = 5 | k = 10 | k = 30 (rag eval's) |\n|---|---|---|---|")
    for _ in range(2):
        rows = []
        for name, searcher in folds.items():
            cells = []
            for k in (5, 10, 30):
                lat = []
                for q in qs:
                    t0 = time.perf_counter()
                    searcher.search(q, k)
                    lat.append(time.perf_counter() - t0)
                lat.sort()
                cells.append(f"{lat[len(lat) // 2] * 1000:.1f} / {lat[int(0.95 * len(lat))] * 1000:.1f}")
            rows.append(f"| {name} | " + " | ".join(cells) + " |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
