"""Time to first visible answer (p50/p95) on the seed questions, extractive and via a local OpenAI-protocol server.

    .venv/bin/python scripts/bench_chat.py --index index --repeats 5
"""
from __future__ import annotations

import argparse
import statistics
import time

import rag
from fake_openai import FakeOpenAI

QUESTIONS = [
    "江岸签约了哪些项目？",
    "宝钢黄石新港二期工程是哪一年开工的？",
    "三峡集团每年用于长江流域大保护的投资有多少？",
    "江岸簽約了哪些項目？",
    "宜昌市点军区集中开工了几个生态环保项目？",
    "三峡集团在宜昌累计投资了多少？",
]


def first_visible(assistant: rag.Assistant, q: str) -> tuple[float, float]:
    """Seconds to the first thing the chat can show, and to the final answer."""
    t0 = time.perf_counter()
    first = None
    for _ in assistant.stream(q):
        if first is None:
            first = time.perf_counter() - t0
    return first, time.perf_counter() - t0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index", default="index")
    ap.add_argument("--data", default="data")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--token-delay", type=float, default=0.02, help="fake server's seconds between streamed tokens")
    args = ap.parse_args()
    retriever = rag.Retriever.build(args.data, args.index) if rag.Retriever.is_stale(args.data, args.index) else rag.Retriever.load(args.index)
    with FakeOpenAI(delay=args.token_delay) as server:
        paths = {
            "extractive": rag.Assistant(retriever),
            f"LLM (local fake server, {args.token_delay * 1000:.0f} ms/token)": rag.Assistant(
                retriever, retriever.config.with_(llm_base_url=server.url, llm_model="fake")),
        }
        for a in paths.values():
            first_visible(a, QUESTIONS[0])  # warm-up: model load, caches
        print(f"{len(QUESTIONS)} questions × {args.repeats} repeats\n")
        print("| path | first visible p50 | p95 | full answer p50 | p95 |\n|---|---|---|---|---|")
        for name, a in paths.items():
            firsts, fulls = [], []
            for _ in range(args.repeats):
                for q in QUESTIONS:
                    f, t = first_visible(a, q)
                    firsts.append(f)
                    fulls.append(t)
            ms = lambda x: f"{x * 1000:.0f} ms"  # noqa: E731
            print(f"| {name} | {ms(statistics.median(firsts))} | {ms(pct(firsts, 0.95))} | "
                  f"{ms(statistics.median(fulls))} | {ms(pct(fulls, 0.95))} |")


if __name__ == "__main__":
    main()
