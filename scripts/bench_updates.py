"""Daily growth: `rag remove` then `rag add` of N articles into a built index, while an app-like
process keeps searching it.

    python scripts/bench_updates.py --index ../bench-index/crud \
        --articles ../bench-data/crud/crud_news.articles.jsonl --sizes 100 1000

For each size N: the last N articles of ``--articles`` that are in the index are removed with
``rag remove`` and added back from a file of their own with ``rag add`` (so they are new to the
index and embedded again). Both run as CLI processes (their wall time includes loading the
index); the UpdateReport's own seconds (the change and the new generation, without the load)
are printed beside it. Meanwhile a separate process serves the index as the app does
(``rag.service.Service``: it picks up each new generation in the background) and searches
without pause: its latency p50 / p95 before, during and after the updates is printed, with the
time at which it first served each new generation. The index ends with the same articles as it
started.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTIONS = [
    "小女孩被困在哪里？", "江岸签约了哪些项目？", "新能源汽车销量增长了多少？", "暴雨造成了哪些损失？",
    "杭州亚运会什么时候开幕？", "哪家公司发布了新的大模型？", "高温天气持续多久？", "房地产政策有什么调整？",
]

SEARCHER = r"""
import json, sys, time
from pathlib import Path
from rag.service import Service
index, out, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
questions = json.loads(sys.argv[4])
svc = Service(Path(index), Path(index), feedback_dir=out.parent / "feedback")
svc.retriever = __import__("rag").Retriever.load(index)
print("ready", flush=True)
rows, i = [], 0
while not stop.exists() and i < 200000:
    q = questions[i % len(questions)]
    t0 = time.time()
    r = svc._retriever()
    r.search(q, k=5)
    rows.append((t0, time.time() - t0, r.generation))
    i += 1
out.write_text(json.dumps(rows))
"""


def ids_in(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as f:
        return [(json.loads(line)["id"], line) for line in f if line.strip()]


def run(cmd: list[str]) -> tuple[float, dict]:
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.time() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed: {done.stderr[-2000:]}")
    return wall, json.loads(done.stdout.strip().splitlines()[-1])


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--articles", type=Path, required=True, help="the .jsonl the index was built from")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--settle", type=float, default=20.0, help="seconds of searching before and after the updates")
    args = ap.parse_args()
    rag = [str(Path(sys.executable).with_name("rag"))]
    articles = ids_in(args.articles)
    work = Path(tempfile.mkdtemp(prefix="bench-updates-"))
    stop, out = work / "stop", work / "searches.json"
    searcher = subprocess.Popen([sys.executable, "-c", SEARCHER, str(args.index), str(out), str(stop), json.dumps(QUESTIONS, ensure_ascii=False)],
                                stdout=subprocess.PIPE, text=True)
    assert searcher.stdout.readline().strip() == "ready"
    marks = [("before", time.time())]
    time.sleep(args.settle)
    results = []
    for n in args.sizes:
        chosen = articles[-n:]
        marks.append((f"remove {n}", time.time()))
        wall_rm, rep_rm = run(rag + ["remove", "--index", str(args.index), "--json", *[i for i, _ in chosen]])
        batch = work / f"new-{n}.jsonl"
        batch.write_text("".join(line if line.endswith("\n") else line + "\n" for _, line in chosen), encoding="utf-8")
        marks.append((f"add {n}", time.time()))
        wall_add, rep_add = run(rag + ["add", "--index", str(args.index), "--json", str(batch)])
        results.append((n, wall_rm, rep_rm, wall_add, rep_add))
    marks.append(("after", time.time()))
    time.sleep(args.settle)
    stop.touch()
    searcher.wait(600)
    rows = json.loads(out.read_text())
    print("| change | CLI wall (load + change + save) | change + save (UpdateReport) | chunks embedded |")
    print("|---|---|---|---|")
    for n, wall_rm, rep_rm, wall_add, rep_add in results:
        print(f"| remove {n} articles | {wall_rm:.1f} s | {rep_rm['seconds']:.1f} s | {rep_rm['embedded']} |")
        print(f"| add {n} articles | {wall_add:.1f} s | {rep_add['seconds']:.1f} s | {rep_add['embedded']} |")
    print()
    print("| searches of the app-like process | n | p50 ms | p95 ms | max ms |")
    print("|---|---|---|---|---|")
    bounds = marks + [("end", float("inf"))]
    for (name, start), (_, end) in zip(bounds, bounds[1:]):
        lat = [d for t, d, _ in rows if start <= t < end]
        print(f"| {name} | {len(lat)} | {pct(lat, 0.5):.1f} | {pct(lat, 0.95):.1f} | {max(lat) * 1000 if lat else float('nan'):.1f} |")
    first_seen: dict[str, float] = {}
    for t, _, gen in rows:
        first_seen.setdefault(gen, t)
    t0 = marks[0][1]
    print()
    print("generations served (seconds after the first search):", ", ".join(f"{g} at {s - t0:.1f} s" for g, s in first_seen.items()))
    print("search latency over the whole run: p50 %.1f ms, mean %.1f ms" % (pct([d for _, d, _ in rows], 0.5), statistics.mean(d for _, d, _ in rows) * 1000))


if __name__ == "__main__":
    main()
