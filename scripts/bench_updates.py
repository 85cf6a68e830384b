"""Daily growth: `rag remove` then `rag add` of N articles into a built index, while an app-like
process keeps searching it.

    python scripts/bench_updates.py --index ../bench-index/crud \
        --articles ../bench-data/crud/crud_news.articles.jsonl --sizes 100 1000 [--reload-trials 3]

``--reload-trials N`` first measures, N times, one process that searches without pause while a
thread of it reads the index again (what the app does when another process published a
generation), with nothing else running.

For each size N: the last N articles of ``--articles`` that are in the index are removed with
``rag remove`` and added back from a file of their own with ``rag add`` (so they are new to the
index and embedded again). Both run as CLI processes (their wall time includes loading the
index); the UpdateReport's own seconds (the change and the new generation, without the load)
are printed beside it. Meanwhile a separate process serves the index as the app does
(``rag.serving.service.Service``: it picks up each new generation in the background) and searches
without pause: its latency p50 / p95 before, during and after the updates is printed, with the
time at which it first served each new generation, and its slowest searches with what it was doing
meanwhile (loading a new generation in the background, a full garbage collection). The index ends
with the same articles as it started.
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
from rag.serving.service import Service
index, out, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
questions = json.loads(sys.argv[4])
import gc
events = []  # (start, end, what): the app's background reloads and full garbage collections
svc = Service(Path(index), Path(index), feedback_dir=out.parent / "feedback")
svc.retriever = __import__("rag").Retriever.load(index)
full = []
def collections(phase, info):
    if info["generation"] == 2:
        if phase == "start":
            full.append(time.time())
        else:
            events.append((full.pop(), time.time(), f"full garbage collection ({info['collected']} freed)"))
gc.callbacks.append(collections)
print("ready", flush=True)
rows, i, reload_from = [], 0, None
while not stop.exists() and i < 200000:
    q = questions[i % len(questions)]
    t0 = time.time()
    r = svc.live_retriever()
    r.search(q, k=5)
    rows.append((t0, time.time() - t0, r.generation))
    i += 1
    # a background reload begins in the search that notices the new generation and is seen to end
    # after the search in which it ended (the end is late by at most one search)
    if svc.reloading and reload_from is None:
        reload_from = t0
    elif not svc.reloading and reload_from is not None:
        events.append((reload_from, time.time(), "background reload of a new generation"))
        reload_from = None
out.write_text(json.dumps({"rows": rows, "events": events}))
"""


RELOADER = r"""
import json, sys, threading, time
from rag.search.retrieval import Retriever
index, trials, questions = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
r = Retriever.load(index)
for q in questions:
    r.search(q, k=5)
for trial in range(trials):
    done = threading.Event()
    def load():
        Retriever.load(index)
        done.set()
    lat = []
    t0 = time.perf_counter()
    threading.Thread(target=load).start()
    i = 0
    while not done.is_set():
        t = time.perf_counter()
        r.search(questions[i % len(questions)], k=5)
        lat.append(time.perf_counter() - t)
        i += 1
    lat.sort()
    print(f"| {trial + 1} | {time.perf_counter() - t0:.1f} s | {len(lat)} | {lat[len(lat) // 2] * 1000:.0f} | {lat[-1] * 1000:.0f} |", flush=True)
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
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--reload-trials", type=int, default=0,
                    help="first: searches in one process while a thread of it reads the index again, N times")
    ap.add_argument("--settle", type=float, default=20.0, help="seconds of searching before and after the updates")
    args = ap.parse_args()
    if args.reload_trials:
        print("| reload (searches of k = 5 meanwhile, in the same process) | load | searches | p50 ms | max ms |")
        print("|---|---|---|---|---|", flush=True)
        subprocess.run([sys.executable, "-c", RELOADER, str(args.index), str(args.reload_trials),
                        json.dumps(QUESTIONS, ensure_ascii=False)], check=True)
        print()
    if not args.sizes:
        return
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
    saved = json.loads(out.read_text())
    rows, events = saved["rows"], saved["events"]
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
    print()
    print("the slowest searches (seconds after the first search), and what the app was doing meanwhile:")
    for t, d, _ in sorted(rows, key=lambda r: -r[1])[:5]:
        during = [f"{what} {a - t0:.1f}-{b - t0:.1f} s" for a, b, what in events if a < t + d and b > t]
        print(f"- {t - t0:.1f} s: {d * 1000:.0f} ms; {'; '.join(during) or 'no reload or full collection'}")
    print("full garbage collections: %d, longest %.0f ms" % (
        sum("collection" in w for _, _, w in events), max([(b - a) * 1000 for a, b, w in events if "collection" in w] or [0])))


if __name__ == "__main__":
    main()
