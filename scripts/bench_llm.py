"""A local GGUF language model against the extractive answers, in the same run: short EM / F1 and hit,
citation checks, first-token and total latency, memory.

    # one line per (question, use) in --out; a rerun skips what is there (checkpoint), --report prints
    python scripts/bench_llm.py ../shared/bench/cmrc2018_dev.qa.jsonl --index ../bench-index/cmrc --held-out \\
        --limit 200 --gguf /work/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --uses extractive,short \\
        --out runs/cmrc.jsonl
    python scripts/bench_llm.py --report runs/cmrc.jsonl

Uses (Config.llm_use): ``extractive`` (no model), ``hint``, ``compose``, ``short``. Each "X" is also
reported as "X@unsure" (Config.llm_when "unsure"): the extractive answer where the reader gave a short
answer, X's elsewhere; derived from the same lines, since the code path of a question is the same.
Follow-ups (seed format ``turns``) are asked after their turns, with that history, as ``rag eval`` does.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rag.answering.assistant import LLM_DOWN_NOTE, LLM_UNCITED_NOTE
from rag.eval.evaluation import answer_hit
from rag.eval.metrics import span_em, span_f1

USES = ("extractive", "hint", "compose", "short")


def rss_mb() -> float:
    """This process's resident memory now (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Timed:
    """Wraps a model's ``stream`` and records each call: first delta, total seconds, the raw reply."""

    def __init__(self, model) -> None:
        self.model = model
        self.default_use = model.default_use
        self.calls: list[dict] = []

    def stream(self, messages: list[dict]):
        t0 = time.perf_counter()
        call = {"first": None, "total": None, "reply": "", "error": "", "prompt_chars": sum(len(m["content"]) for m in messages)}
        try:
            for piece in self.model.stream(messages):
                if call["first"] is None:
                    call["first"] = time.perf_counter() - t0
                call["reply"] += piece
                yield piece
        except Exception as e:
            call["error"] = f"{type(e).__name__}: {e}"
            raise
        finally:
            call["total"] = time.perf_counter() - t0
            self.calls.append(call)


def select(args) -> list:
    from rag.eval import load_questions
    from rag.eval.split import select as select_part

    questions = select_part(load_questions(args.questions), held_out_only=args.held_out, part=args.part)
    questions = questions[args.start:]
    return questions[: args.limit] if args.limit else questions


def run(args) -> None:
    import rag
    from rag.answering.assistant import shared_reader
    from rag.answering.llm import check_citations
    from rag.answering.local_llm import LocalModel

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            if "use" in r:
                done.add((r["id"], r["use"]))
    uses = args.uses.split(",")
    questions = select(args)
    todo = [(q, u) for u in uses for q in questions if (q.id, u) not in done]  # use by use: no prompt cache across uses
    print(f"{len(questions)} questions x {len(uses)} uses: {len(todo)} to run ({len(done)} in {out})", flush=True)
    if not todo:
        return
    config = rag.Config.from_env()
    retriever = rag.Retriever.load(args.index, config=config)
    reader = shared_reader()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
    mem = {"rss_before_model_mb": rss_mb(), "commit": head, "tree_changed": sorted(l[3:] for l in dirty.splitlines())}
    model = None
    if any(u != "extractive" for u in uses):
        t0 = time.perf_counter()
        local = LocalModel(args.gguf, threads=args.threads, context=args.context, timeout=args.timeout,
                           max_tokens=args.max_tokens)
        local.load()
        mem |= {"load_s": time.perf_counter() - t0, "rss_with_model_mb": rss_mb(), "gguf": Path(args.gguf).name,
                "threads": local.threads, "timeout": args.timeout}
        model = Timed(local)
    assistants = {}
    for u in uses:
        if u == "extractive":
            assistants[u] = rag.Assistant(retriever, config, reader=reader)
        else:
            assistants[u] = rag.Assistant(retriever, config.with_(llm_use=u, llm_timeout=args.timeout), llm=model,
                                          reader=reader)
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps({"meta": mem | {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:]}},
                           ensure_ascii=False) + "\n")
        for i, (q, u) in enumerate(todo, 1):
            a = assistants[u]
            history: list[dict] = []
            for turn in q.turns:
                prev = a.ask(turn, history=list(history))
                history += [{"role": "user", "content": turn}, {"role": "assistant", "content": prev.text}]
            if model is not None:
                model.calls.clear()
            t0 = time.perf_counter()
            first = None
            final = None
            for item in a.stream(q.question, history=history or None):
                if first is None:
                    first = time.perf_counter() - t0
                final = item
            total = time.perf_counter() - t0
            calls = list(model.calls) if model is not None and u != "extractive" else []
            answer_calls = [c for c in calls if c["prompt_chars"] > 400] or calls  # not the follow-up rewrite
            raw = answer_calls[-1]["reply"] if answer_calls else ""
            checked = check_citations(raw, args.passages) if raw and u in ("hint", "compose") else None
            rec = {
                "id": q.id, "use": u, "question": q.question, "turns": list(q.turns), "answers": list(q.answers),
                "must_include": list(q.must_include), "no_answer": q.no_answer,
                "grounded": final.grounded, "text": final.text, "short": final.short, "note": final.note,
                "citations": [{"title": p.title, "text": p.text} for p in final.citations],
                "hit": answer_hit(final.text, q) if (q.answers or q.must_include) else None,
                "short_hit": bool(final.short) and answer_hit(final.short, q) if (q.answers or q.must_include) else None,
                "em": span_em(final.short, q.answers) if q.answers else None,
                "f1": span_f1(final.short, q.answers) if q.answers else None,
                "first_s": first, "total_s": total, "model_calls": len(calls),
                "model_first_s": answer_calls[-1]["first"] if answer_calls else None,
                "model_s": sum(c["total"] for c in calls), "raw": raw,
                "model_error": "; ".join(c["error"] for c in calls if c["error"]),
                "fell_back": final.note in (LLM_DOWN_NOTE, LLM_UNCITED_NOTE),
                "removed": checked.removed if checked else None, "unsourced": checked.unsourced if checked else None,
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            f.flush()
            if i % 10 == 0 or i == len(todo):
                print(f"{i}/{len(todo)} {time.strftime('%H:%M:%S')} rss {rss_mb():.0f} MB", flush=True)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))] if xs else float("nan")


def report(paths: list[str]) -> None:
    recs, metas = [], []
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            (metas if "meta" in r else recs).append(r.get("meta", r))
    by = {}
    for r in recs:
        by.setdefault(r["use"], {})[r["id"]] = r
    ext = by.get("extractive", {})
    rows = {}
    for u, rs in by.items():
        rows[u] = rs
        if u != "extractive" and ext:  # the same use only where the reader gave no short answer
            rows[f"{u}@unsure"] = {i: (r if not ext[i]["short"] else dict(ext[i], model_calls=0, model_s=0.0,
                                                                           model_first_s=None, raw=""))
                                   for i, r in rs.items() if i in ext}
    ids = set.intersection(*(set(rs) for rs in rows.values())) if rows else set()
    print(f"{len(ids)} questions answered by every use; files: {', '.join(paths)}")
    for m in metas:
        if "rss_with_model_mb" in m:
            print(f"model {m['gguf']}: load {m['load_s']:.1f} s, threads {m['threads']}, budget {m['timeout']} s, "
                  f"RSS {m['rss_before_model_mb']:.0f} MB before the model, {m['rss_with_model_mb']:.0f} MB with it")
    print("\n| use | n | hit | short EM / F1 | short holds gold | declined | model called | fell back (budget/uncited) "
          "| cites a source not given | uncited sentence | first visible p50 / p95 s | total p50 / p95 s | model first token p50 / p95 s |")
    print("|---" * 13 + "|")
    for u in sorted(rows, key=lambda x: (x.split("@")[0] != "extractive", x)):
        rs = [rows[u][i] for i in sorted(ids)]
        ans = [r for r in rs if not r["no_answer"] and r["hit"] is not None]
        em = [r["em"] for r in ans if r["em"] is not None]
        f1 = [r["f1"] for r in ans if r["f1"] is not None]
        called = [r for r in rs if r["model_calls"]]
        composed = [r for r in called if r["removed"] is not None and not r["fell_back"]]
        firsts = [r["model_first_s"] for r in called if r["model_first_s"] is not None]
        fmt = lambda xs: f"{pct(xs, .5):.2f} / {pct(xs, .95):.2f}" if xs else "–"  # noqa: E731
        print(f"| {u} | {len(rs)} | {sum(r['hit'] for r in ans) / max(1, len(ans)):.3f} "
              f"| {statistics.mean(em) if em else float('nan'):.3f} / {statistics.mean(f1) if f1 else float('nan'):.3f} "
              f"| {sum(bool(r['short_hit']) for r in ans) / max(1, len(ans)):.3f} "
              f"| {sum(not r['grounded'] for r in rs)} | {len(called)} "
              f"| {sum(r['fell_back'] or bool(r['model_error']) for r in called)} "
              f"| {sum(r['removed'] > 0 for r in composed) if composed else '–'} "
              f"| {sum(r['unsourced'] > 0 for r in composed) if composed else '–'} "
              f"| {fmt([r['first_s'] for r in rs])} | {fmt([r['total_s'] for r in rs])} | {fmt(firsts)} |")
    paired(rows, ids)


def paired(rows: dict, ids: set) -> None:
    """Each use against the extractive answer, question by question: short answers changed, better and
    worse by F1 and EM, and the mean F1 change with a bootstrap 95% interval (2,000 resamples, seed 0)."""
    ext = rows.get("extractive")
    if not ext:
        return
    print("\n| use | short answers changed | F1 better / worse | EM better / worse | mean F1 change [95% interval] |")
    print("|---|---|---|---|---|")
    for u in sorted(r for r in rows if r != "extractive"):
        pairs = [(ext[i], rows[u][i]) for i in sorted(ids) if ext[i]["f1"] is not None]
        if not pairs:
            continue
        d = [b["f1"] - a["f1"] for a, b in pairs]
        de = [b["em"] - a["em"] for a, b in pairs]
        rng = random.Random(0)
        means = sorted(statistics.mean(rng.choices(d, k=len(d))) for _ in range(2000))
        print(f"| {u} | {sum(a['short'] != b['short'] for a, b in pairs)} of {len(pairs)} "
              f"| {sum(x > 0 for x in d)} / {sum(x < 0 for x in d)} | {sum(x > 0 for x in de)} / {sum(x < 0 for x in de)} "
              f"| {statistics.mean(d):+.3f} [{means[50]:+.3f}, {means[1949]:+.3f}] |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("questions", nargs="?", help="question file (*.qa.jsonl or the seed format)")
    ap.add_argument("--index", help="index folder")
    ap.add_argument("--gguf", help="GGUF model file")
    ap.add_argument("--uses", default="extractive,short", help=f"comma-separated, from {', '.join(USES)}")
    ap.add_argument("--held-out", action="store_true", help="CMRC/DRCD held-out articles only (rag eval --held-out)")
    ap.add_argument("--part", choices=["train", "validation", "held-out"], help="news story part (rag eval --part)")
    ap.add_argument("--start", type=int, default=0, help="skip the first N selected questions")
    ap.add_argument("--limit", type=int, help="then take N")
    ap.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0: half the cores)")
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--timeout", type=float, default=20.0, help="time budget of one model reply (llm_timeout), s")
    ap.add_argument("--max-tokens", type=int, default=160, help="longest reply, tokens (LocalModel default)")
    ap.add_argument("--passages", type=int, default=3, help="answer_passages (for the citation check)")
    ap.add_argument("--out", help="JSONL checkpoint to append to")
    ap.add_argument("--report", nargs="+", metavar="JSONL", help="print the table of these runs and stop")
    args = ap.parse_args()
    if args.report:
        report(args.report)
        return
    if not (args.questions and args.index and args.out):
        ap.error("questions, --index and --out are needed (or --report)")
    if any(u not in USES for u in args.uses.split(",")):
        ap.error(f"--uses takes {', '.join(USES)}")
    if args.uses != "extractive" and not args.gguf:
        ap.error("--gguf is needed for a use other than extractive")
    run(args)


if __name__ == "__main__":
    main()
