"""The app as users meet it: start `app.py` on an index, ask questions through `POST /api/ask`, print
ask latency p50 / p95 and the app's resident memory (VmHWM, VmRSS).

    .venv/bin/python scripts/bench_app.py --index ../bench-index/crud --data ../bench-data/crud \
        --questions ../shared/bench/crud_qa_dev.jsonl --limit 200
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app_process import free_port

from rag.eval.evaluation import load_questions

ROOT = Path(__file__).resolve().parent.parent


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, help="index folder the app serves")
    ap.add_argument("--data", help="its data folder (default: the app's default)")
    ap.add_argument("--questions", required=True, help="question file (*.qa.jsonl or the seed format)")
    ap.add_argument("--limit", type=int, default=200, help="questions asked (default 200)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for the app to be ready")
    args = ap.parse_args()
    questions = [q.question for q in load_questions(args.questions, limit=args.limit)]
    port = free_port()
    cmd = [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--index", args.index]
    if args.data:
        cmd += ["--data", args.data]
    app = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "RAG_ADMIN_TOKEN": ""})
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        with httpx.Client(timeout=60) as client:
            while time.perf_counter() - t0 < args.timeout:
                try:
                    if client.get(f"{base}/api/health").json().get("ready"):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            else:
                raise SystemExit(f"the app was not ready within {args.timeout:.0f} s")
            ready_s = time.perf_counter() - t0
            started = memory_kb(app.pid)
            lat = []
            for q in questions:
                t = time.perf_counter()
                r = client.post(f"{base}/api/ask", json={"question": q})
                r.raise_for_status()
                lat.append(time.perf_counter() - t)
            mem = memory_kb(app.pid)
    finally:
        app.terminate()
        app.wait(30)
    q = statistics.quantiles(lat, n=20) if len(lat) > 1 else lat * 19
    print(json.dumps({
        "index": args.index, "questions": len(lat), "ready_s": round(ready_s, 1),
        "ask_p50_ms": round(statistics.median(lat) * 1000, 1), "ask_p95_ms": round(q[18] * 1000, 1),
        "rss_after_start_mib": round(started["VmRSS"] / 1024), "peak_mib": round(mem["VmHWM"] / 1024),
        "rss_mib": round(mem["VmRSS"] / 1024),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
