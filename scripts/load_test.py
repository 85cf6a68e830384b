"""Bounded load test: N concurrent users against the REST API (POST /api/search, /api/ask) and the chat.

Usage (with the app running, e.g. ``./run app``)::

    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:7860 --users 20 --seconds 60
    .venv/bin/python scripts/load_test.py --requests 400 --ask-share 0.4 --chat-share 0.2 --out docs/benchmarks.md

Each user sends one request at a time until the duration or the total request count is
reached: a chat turn through Gradio's HTTP queue API (``POST /gradio_api/call/ask``, then the
event stream until ``complete``) with probability ``--chat-share``, else ``/api/ask`` with
probability ``--ask-share``, else ``/api/search``. Prints latency percentiles, throughput and
errors by status, and appends a Markdown table to ``--out`` when given. Only talks to 127.0.0.1
unless ``--allow-remote`` is passed. ``load(...)`` is the same run from Python (tests use it).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

QUERIES = [
    "江岸签约了哪些项目？",
    "宝钢黄石新港二期工程是哪一年开工的？",
    "江岸簽約了哪些項目？",
    "江阴绿色发展有哪些举措",
    "南粤赣商如何助力江西环保产业",
    "长江经济带高质量发展座谈会在哪里举办",
    "宜昌点军区集中开工了几个项目",
    "月球上有没有长江",
]


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"search": [], "ask": [], "chat": []})
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


ENDPOINT = {"search": "/api/search", "ask": "/api/ask", "chat": "/gradio_api/call/ask (chat)"}


async def chat_turn(client: httpx.AsyncClient, question: str) -> str:
    """One chat turn through Gradio's queue API; the final event's name (``complete`` when it worked)."""
    r = await client.post("/gradio_api/call/ask", json={"data": [question, [], [], "", "", 3]})
    if r.status_code != 200:
        return f"{r.status_code}"
    event_id = r.json()["event_id"]
    last = "no events"
    async with client.stream("GET", f"/gradio_api/call/ask/{event_id}") as stream:
        if stream.status_code != 200:
            return f"{stream.status_code}"
        event = None
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "complete" and question == QUERIES[0] and "等6个项目签约江岸" not in str(json.loads(line[5:])):
                    return "complete without the expected answer"
                last = event if event == "complete" else f"error {line[5:].strip()[:80]}"
                break
    return last


async def user(client: httpx.AsyncClient, uid: int, args, deadline: float, budget: list[int], res: Result) -> None:
    rnd = random.Random(uid)
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        q = rnd.choice(QUERIES)
        x = rnd.random()
        kind = "chat" if x < args.chat_share else "ask" if x < args.chat_share + args.ask_share else "search"
        t0 = time.perf_counter()
        try:
            if kind == "chat":
                outcome = await chat_turn(client, q)
                status = "200" if outcome == "complete" else outcome
            else:
                body = {"question": q} if kind == "ask" else {"query": q, "k": 5}
                r = await client.post(f"/api/{kind}", json=body)
                status = str(r.status_code)
            res.statuses[f"{kind} {status}"] += 1
            if status == "200":
                res.latencies[kind].append(time.perf_counter() - t0)
        except (httpx.HTTPError, ValueError, KeyError) as e:
            res.errors[f"{kind} {type(e).__name__}"] += 1


async def run(args) -> tuple[Result, float]:
    res = Result()
    limits = httpx.Limits(max_connections=args.users * 2, max_keepalive_connections=args.users * 2)
    async with httpx.AsyncClient(base_url=args.url, timeout=args.timeout, limits=limits) as client:
        deadline = time.monotonic() + args.seconds
        budget = [args.requests]
        t0 = time.perf_counter()
        await asyncio.gather(*(user(client, i, args, deadline, budget, res) for i in range(args.users)))
        return res, time.perf_counter() - t0


def ok(res: Result) -> bool:
    """No transport errors and every request answered 200 (chat: its event stream completed)."""
    return not res.errors and all(k.endswith(" 200") for k in res.statuses)


def load(url: str, *, users: int = 4, seconds: float = 5, requests: int = 100, ask_share: float = 0.4,
         chat_share: float = 0.2, timeout: float = 60) -> tuple[Result, float]:
    """Run the load from Python; (Result, wall seconds). Bounded by both ``seconds`` and ``requests``."""
    args = argparse.Namespace(url=url, users=users, seconds=seconds, requests=requests, ask_share=ask_share,
                              chat_share=chat_share, timeout=timeout)
    return asyncio.run(run(args))


def report(args, res: Result, wall: float) -> str:
    lines = [
        f"## {time.strftime('%Y-%m-%d %H:%M')} — {args.users} users, {wall:.0f} s, "
        f"ask share {args.ask_share}, chat share {args.chat_share}",
        "",
        "| endpoint | ok | req/s | p50 s | p95 s | p99 s | max s | mean s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, lat in res.latencies.items():
        if lat:
            lines.append(
                f"| {ENDPOINT[kind]} | {len(lat)} | {len(lat) / wall:.2f} | {pct(lat, 50):.2f} | {pct(lat, 95):.2f} "
                f"| {pct(lat, 99):.2f} | {max(lat):.2f} | {statistics.mean(lat):.2f} |"
            )
    ok = sum(len(v) for v in res.latencies.values())
    lines += ["", f"Throughput: {ok / wall:.2f} ok requests/s. Statuses: {dict(res.statuses)}. "
              f"Transport errors: {dict(res.errors) or 'none'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60, help="stop after this long (default 60)")
    p.add_argument("--requests", type=int, default=2000, help="stop after this many requests in all (default 2000)")
    p.add_argument("--ask-share", type=float, default=0.4, help="fraction of requests that are /api/ask")
    p.add_argument("--chat-share", type=float, default=0.2, help="fraction that are chat turns via Gradio's queue API")
    p.add_argument("--timeout", type=float, default=60)
    p.add_argument("--out", help="append the Markdown result to this file")
    p.add_argument("--allow-remote", action="store_true")
    args = p.parse_args(argv)
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1") and not args.allow_remote:
        p.error(f"{host}: only 127.0.0.1 is load-tested unless --allow-remote is given")
    if not (1 <= args.users <= 200 and args.seconds > 0 and args.requests > 0 and 0 <= args.ask_share
            and 0 <= args.chat_share and args.ask_share + args.chat_share <= 1):
        p.error("users must be 1..200, seconds and requests positive, ask-share + chat-share 0..1")
    res, wall = asyncio.run(run(args))
    text = report(args, res, wall)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(text + "\n")
    return 0 if ok(res) else 1


if __name__ == "__main__":
    sys.exit(main())
