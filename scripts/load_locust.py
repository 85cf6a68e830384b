"""Load test at the reader's cost: start `app.py` on the seed data, measure the CPU seconds of each kind of
request one user at a time, then run locust (scripts/locustfile.py) with 50 users and compare the
throughput with the ideal, the machine's cores fully used: cores / (CPU seconds per request).

    .venv/bin/pip install -e '.[load]'      # locust
    .venv/bin/python scripts/load_locust.py                        # 50 users, 150 s, ~4 min in all
    .venv/bin/python scripts/load_locust.py --users 5 --seconds 10 --sequential 5   # a smoke run

The single-user cost is the app process's CPU time (utime + stime of /proc/PID/stat, all its threads)
over ``--sequential`` requests of each kind after a warm-up, so it includes the HTTP and Gradio layers.
The mix's ideal throughput is cores / (the weighted mean of those costs); the issue's own yardstick,
cores / (CPU seconds per question), is printed beside it. Only 127.0.0.1 is loaded.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app_process import cpu_seconds, free_port, rss_mib, stop
from load_test import QUERIES

ROOT = Path(__file__).resolve().parent.parent

# scripts/load_test.py's questions (the first checked in every reply; the last declined) and one more
QUESTIONS = [*QUERIES[:-1], "三峡集团每年用于长江流域大保护的投资有多少？", QUERIES[-1]]
SEARCHES = ["宝钢黄石新港二期", "长江生态环保", "江岸 签约", "三峡集团 投资", "绿道", "观鸟台", "江阴绿色发展"]
# the first question's answer is checked in every reply to it: a wrong answer under load is an error
CHECKED = ("江岸签约了哪些项目？", "等6个项目签约江岸")
NAMES = {"ask": "POST /api/ask", "search": "POST /api/search", "chat": "chat (/gradio_api/call/ask + events)"}


def weights(spec: str) -> dict[str, int]:
    """``"ask:4,search:4,chat:2"`` as {kind: weight}; ValueError naming the part that is wrong."""
    out = {}
    for part in spec.split(","):
        kind, _, w = part.partition(":")
        if kind.strip() not in NAMES or not w.strip().isdigit():
            raise ValueError(f"weights part {part!r}: expected kind:weight with kind ask, search or chat")
        out[kind.strip()] = int(w)
    return out




def one_request(client: httpx.Client, kind: str, i: int) -> None:
    """One request of ``kind`` (ask, search, chat), as the locust users send it; raises unless it worked."""
    if kind == "ask":
        client.post("/api/ask", json={"question": QUESTIONS[i % len(QUESTIONS)]}).raise_for_status()
    elif kind == "search":
        client.post("/api/search", json={"query": SEARCHES[i % len(SEARCHES)], "k": 5}).raise_for_status()
    else:
        r = client.post("/gradio_api/call/ask", json={"data": [QUESTIONS[i % len(QUESTIONS)], [], [], "", "", 3]})
        r.raise_for_status()
        with client.stream("GET", f"/gradio_api/call/ask/{r.json()['event_id']}") as s:
            events = [line[6:].strip() for line in s.iter_lines() if line.startswith("event:")]
        if "complete" not in events:
            raise RuntimeError(f"chat turn ended with {events[-3:]}")


def single_user_cost(pid: int, base: str, kinds: list[str], n: int, warmup: int) -> dict[str, dict]:
    """CPU seconds of the app and wall seconds per request of each kind, one request at a time."""
    out = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        for kind in kinds:
            for i in range(warmup):
                one_request(client, kind, i)
            time.sleep(0.5)
            c0, t0 = cpu_seconds(pid), time.perf_counter()
            for i in range(n):
                one_request(client, kind, i)
            out[kind] = {"cpu_s": (cpu_seconds(pid) - c0) / n, "wall_s": (time.perf_counter() - t0) / n, "n": n}
    return out


def locust_stats(prefix: Path) -> dict[str, dict]:
    """The rows of locust's ``<prefix>_stats.csv`` by name: requests, failures, req/s, p50, p95, max (ms)."""
    rows = {}
    with open(f"{prefix}_stats.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[row["Name"]] = {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
                                 "rps": float(row["Requests/s"]), "p50_ms": float(row["50%"] or "nan"),
                                 "p95_ms": float(row["95%"] or "nan"), "max_ms": float(row["Max Response Time"] or "nan")}
    return rows


def locust_failures(prefix: Path) -> list[str]:
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [f"{r['Name']}: {r['Error']} ×{r['Occurrences']}" for r in csv.DictReader(f)]


def wait_ready(app: subprocess.Popen, base: str, log: Path, timeout: float = 900) -> float:
    t0 = time.perf_counter()
    with httpx.Client(timeout=10) as probe:
        while time.perf_counter() - t0 < timeout:
            if app.poll() is not None:
                raise SystemExit(f"the app exited; its log: {log}")
            try:
                if probe.get(f"{base}/api/health").json().get("ready"):
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise SystemExit(f"the app was not ready within {timeout:.0f} s; its log: {log}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=50, help="concurrent users (default 50)")
    ap.add_argument("--seconds", type=int, default=150, help="length of the locust run (default 150)")
    ap.add_argument("--weights", default="ask:4,search:4,chat:2", help="the mix (default ask:4,search:4,chat:2)")
    ap.add_argument("--sequential", type=int, default=40, help="requests of each kind for the single-user cost (default 40)")
    ap.add_argument("--data", default=str(ROOT / "data"), help="articles (copied; default data/)")
    ap.add_argument("--index", help="serve this index folder as it is (default: a new one built from --data)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores of the ideal (default: this machine's)")
    ap.add_argument("--app-arg", action="append", default=[], help="extra argument for app.py (repeatable)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the app")
    ap.add_argument("--json", metavar="FILE", help="also write the numbers here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (app log, locust CSVs)")
    args = ap.parse_args(argv)
    if not (1 <= args.users <= 200 and 1 <= args.seconds <= 900 and 1 <= args.sequential <= 1000):
        ap.error("users must be 1..200, seconds 1..900, sequential 1..1000")
    mix = {k: w for k, w in weights(args.weights).items() if w > 0}
    locust = shutil.which("locust", path=str(Path(sys.executable).parent)) or shutil.which("locust")
    if locust is None:
        raise SystemExit("locust is not installed: .venv/bin/pip install -e '.[load]' (or pip install locust)")

    tmp = Path(tempfile.mkdtemp(prefix="load-locust-"))
    index = args.index or str(tmp / "index")
    if not args.index:
        shutil.copytree(args.data, tmp / "data", ignore=shutil.ignore_patterns(".trash"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "RAG_ADMIN_TOKEN": "", "RAG_LLM_BASE_URL": "", "RAG_LLM_GGUF": "",
           "RAG_FEEDBACK_DIR": str(tmp / "feedback"), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    env.update(kv.split("=", 1) for kv in args.env)
    log_path = tmp / "app.log"
    cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port), "--index", index,
           *(["--data", str(tmp / "data")] if not args.index else []), *args.app_arg]
    with open(log_path, "w") as log:
        app = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = wait_ready(app, base, log_path)
        print(f"app ready in {ready:.0f} s ({rss_mib(app.pid):.0f} MiB); load average {os.getloadavg()[0]:.2f}", flush=True)
        cost = single_user_cost(app.pid, base, list(mix), args.sequential, warmup=5)
        for kind, c in cost.items():
            print(f"single user, {kind:6}: {c['cpu_s'] * 1000:6.1f} ms CPU, {c['wall_s'] * 1000:6.1f} ms wall per request "
                  f"({c['n']} requests)", flush=True)
        mean_cpu = sum(w * cost[k]["cpu_s"] for k, w in mix.items()) / sum(mix.values())
        ideal_mix = args.cores / mean_cpu
        ideal_ask = args.cores / cost["ask"]["cpu_s"] if "ask" in cost else float("nan")

        prefix = tmp / "locust"
        load0, c0, t0 = os.getloadavg()[0], cpu_seconds(app.pid), time.perf_counter()
        k0 = os.times()  # locust is a child: its CPU shows in our children's times once it was waited for
        run = subprocess.run([locust, "-f", str(Path(__file__).resolve().parent / "locustfile.py"), "--headless",
                              "-u", str(args.users), "-r", str(args.users), "-t", f"{args.seconds}s", "--host", base,
                              "--csv", str(prefix), "--only-summary", "--stop-timeout", "60", "--loglevel", "WARNING"],
                             env={**os.environ, "LOAD_WEIGHTS": args.weights}, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        app_cores = (cpu_seconds(app.pid) - c0) / wall
        k1 = os.times()
        locust_cores = (k1.children_user + k1.children_system - k0.children_user - k0.children_system) / wall
        peak = rss_mib(app.pid)
    finally:
        stop(app)
    stats = locust_stats(prefix)
    failures = locust_failures(prefix)
    total = stats.get("Aggregated", {})
    lines = [f"{args.users} users, {args.seconds} s, mix {args.weights}; load average {load0:.2f} at the start",
             "", "| endpoint | requests | failures | req/s | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in stats.items():
        lines.append(f"| {name} | {s['requests']} | {s['failures']} | {s['rps']:.2f} | {s['p50_ms']:.0f} | {s['p95_ms']:.0f} "
                     f"| {s['max_ms']:.0f} |")
    rps = total.get("rps", 0.0)
    lines += ["",
              "single-user CPU per request: " + ", ".join(f"{k} {c['cpu_s'] * 1000:.1f} ms" for k, c in cost.items())
              + f"; the mix's mean {mean_cpu * 1000:.1f} ms",
              f"throughput {rps:.2f} req/s; ideal for the mix {args.cores} / {mean_cpu:.4f} s = {ideal_mix:.2f} req/s: "
              f"{rps / ideal_mix:.0%} of it (issue's yardstick {args.cores} / CPU per question = {ideal_ask:.2f} req/s: "
              f"{rps / ideal_ask:.0%})",
              f"app used {app_cores:.2f} cores during the run, locust {locust_cores:.2f}; app resident {peak:.0f} MiB at the end",
              f"failures: {'; '.join(failures) or 'none'}; locust exit code {run.returncode}"]
    print("\n".join(lines))
    if run.returncode not in (0, 1):
        print(run.stderr[-2000:], file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"users": args.users, "seconds": args.seconds, "mix": args.weights,
                                               "single_user": cost, "mean_cpu_s": mean_cpu, "ideal_mix_rps": ideal_mix,
                                               "ideal_ask_rps": ideal_ask, "stats": stats, "failures": failures,
                                               "app_cores": app_cores, "locust_cores": locust_cores,
                                               "load_average_start": load0}, indent=1, ensure_ascii=False))
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if total.get("requests") and not failures and total.get("failures") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
