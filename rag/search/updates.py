"""Updates: add, remove and sync articles into a new index generation; staleness and integrity checks."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..reading.chunking import chunk_articles
from ..engines.base import engine_class, engine_of
from ..errors import IndexMissingError, QueryError, RagError, SourceError
from ..engines.indexing import UpdateReport, index_changes, rows_of
from ..records import Article
from ..embedding.factory import embedder_for
from ..reading.sources import file_fingerprints, formats_named, read_articles, read_file
from ..engines.store import IndexStore

if TYPE_CHECKING:
    from .retrieval import Retriever

__all__ = ["add", "remove", "sync", "check", "staleness"]

log = logging.getLogger(__name__)


def _live(r: "Retriever") -> "Retriever":
    if r.index_dir is None:
        raise IndexMissingError("this Retriever has no index folder: save() it first, or use Retriever.load(DIR)")
    return r.latest()


def _merge(base: "Retriever", incoming: list[Article], drop: set[str], report: UpdateReport) -> dict[str, Article]:
    """The articles after removing ``drop`` and adding/replacing ``incoming`` (same id = changed)."""
    merged = {i: a for i, a in base.articles.items() if i not in drop}
    for a in incoming:
        old = base.articles.get(a.id)
        if old is None:
            report.added.append(a.id)
        elif replace(old, origin=a.origin) == a:
            report.unchanged += 1
        else:
            report.changed.append(a.id)
        merged[a.id] = a
    report.removed = sorted(i for i in drop if i in base.articles and i not in merged)
    return merged


def _publish(base: "Retriever", merged: dict[str, Article], report: UpdateReport, sources: dict[str, str],
             changed: bool = True) -> UpdateReport:
    """Re-index only the articles that changed, save a new generation and put the new Retriever in
    the report (``base`` itself when nothing ``changed``)."""
    if not changed:
        report.retriever = base
        return report
    config = base.config
    stale = {i for i, a in base.articles.items() if merged.get(i) != a}
    fresh = [a for i, a in merged.items() if base.articles.get(i) != a]
    removed_chunks = [c for c in base.chunks if c.doc_id in stale]
    new_chunks = chunk_articles(fresh, config)
    known = {}
    if base.embedder is not None and new_chunks:  # vectors of identical chunks already in the index
        wanted = {c.id for c in new_chunks}
        rows = rows_of([c for c in base.chunks if c.id in wanted], base.articles, config)
        by_key = base.engine.vectors(r.key for r in rows)
        known = {r.chunk_id: by_key[r.key] for r in rows if r.key in by_key}
    engine, report.embedded, _ = index_changes(
        base.engine, removed_chunks=removed_chunks, new_chunks=new_chunks, articles=merged, config=config,
        embedder=base.embedder, known=known)
    # the engine keeps the remaining rows in order and appends the new ones: the chunk records
    # must be saved in that same order, since a loaded engine pairs them by position
    chunks = [c for c in base.chunks if c.doc_id not in stale] + new_chunks
    report.reused = len(chunks) - report.embedded  # every chunk not embedded now kept its vector
    manifest = dict(base.manifest)
    manifest.update({"counts": {"articles": len(merged), "chunks": len(chunks)}, "sources": sources,
                     "update": report.to_dict()})
    new = type(base)(config=config, embedder=base.embedder, articles=merged, chunks=chunks, engine=engine,
                     manifest=manifest, index_dir=base.index_dir)
    report.retriever = new.save(base.index_dir)
    return report


def _done(what: str, t0: float, report: UpdateReport) -> UpdateReport:
    report.seconds = time.perf_counter() - t0
    log.info("%s: %s", what, report.summary())
    return report


def add(r: "Retriever", paths) -> UpdateReport:
    t0 = time.perf_counter()
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    with IndexStore(_require_dir(r)).lock():
        base = _live(r)
        result = read_articles(paths)
        report = UpdateReport(errors=[str(e) for e in result.errors])
        merged = _merge(base, result.articles, set(), report)
        sources = dict(base.manifest.get("sources", {}))
        sources.update(file_fingerprints(paths))
        _publish(base, merged, report, sources, changed=bool(report.added or report.changed))
    return _done("add", t0, report)


def remove(r: "Retriever", doc_ids) -> UpdateReport:
    t0 = time.perf_counter()
    doc_ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
    with IndexStore(_require_dir(r)).lock():
        base = _live(r)
        report = UpdateReport(errors=[f"no article with id {i!r} in the index" for i in doc_ids if i not in base.articles])
        merged = _merge(base, [], set(doc_ids), report)
        if report.removed and not merged:
            raise QueryError(
                f"removing {len(report.removed)} article(s) would leave the index at {base.index_dir} empty; "
                "build a new index from your data instead (`rag build --data DATA_DIR --index DIR`)"
            )
        _publish(base, merged, report, dict(base.manifest.get("sources", {})), changed=bool(report.removed))
    return _done("remove", t0, report)


def sync(r: "Retriever", data_dir) -> UpdateReport:
    t0 = time.perf_counter()
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SourceError(str(data_dir), "not a folder: sync needs the data folder the index was built from")
    with IndexStore(_require_dir(r)).lock():
        base = _live(r)
        before = base.manifest.get("sources", {})
        now = file_fingerprints([data_dir])
        touched = sorted(o for o in now if before.get(o) != now[o])
        deleted = {o for o in before if o not in now}
        report = UpdateReport(retriever=base)
        if not touched and not deleted:
            report.unchanged = len(base.articles)
            report.seconds = time.perf_counter() - t0
            return report
        drop = {a.id for a in base.articles.values() if a.origin in deleted or a.origin in touched}
        owner = {a.id: a.origin for a in base.articles.values() if a.id not in drop}
        incoming: list[Article] = []
        for origin in touched:
            result = read_file(data_dir / origin, root=data_dir)
            report.errors += [str(e) for e in result.errors]
            for a in result.articles:
                if a.id in owner:
                    report.errors.append(str(SourceError(
                        str(data_dir / origin), f"duplicate article id {a.id!r} (already read from {owner[a.id]}); skipped")))
                    continue
                owner[a.id] = origin
                incoming.append(a)
        merged = _merge(base, incoming, drop, report)
        if not merged:
            reasons = "; ".join(report.errors) or f"no {formats_named()} files"
            raise SourceError(str(data_dir), f"no articles could be read ({reasons}); the index is left as it was")
        report.removed = sorted(i for i in drop if i not in {a.id for a in incoming})
        report.unchanged += len(base.articles) - len(drop)
        _publish(base, merged, report, now)
    return _done(f"sync {data_dir}", t0, report)


def _require_dir(r: "Retriever") -> Path:
    if r.index_dir is None:
        raise IndexMissingError("this Retriever has no index folder: save() it first, or use Retriever.load(DIR)")
    return r.index_dir


def staleness(data_dir: str | Path, index_dir: str | Path, config: Config) -> str | None:
    """Why the index needs a rebuild for this data and config, or None."""
    store = IndexStore(index_dir)
    if not store.exists():
        return "no index yet"
    try:
        manifest = store.manifest()
        store.current()
    except Exception as e:
        return f"index unreadable ({e})"
    engine = engine_of(manifest)
    if engine != config.engine:
        return f"engine changed ({engine} → {config.engine})"
    built = manifest.get("embedder_spec")
    if config.dense != (built is not None):
        return "dense vectors switched " + ("on" if config.dense else "off")
    if config.dense:
        if built != config.embedder:
            return f"embedder changed ({built} → {config.embedder})"
        identity = embedder_for(config).identity()
        old = manifest.get("embedder") or {}
        if identity != old:
            changed = sorted(k for k in set(identity) | set(old) if identity.get(k) != old.get(k))
            return f"embedder {config.embedder} is now different ({', '.join(changed)} changed)"
    chunking = manifest.get("chunking", {})
    for key in ("chunk_size", "chunk_overlap", "title_in_chunk"):
        if chunking.get(key) != getattr(config, key):
            return f"{key} changed"
    if manifest.get("sources") != file_fingerprints([data_dir]):
        return f"files in {data_dir} changed"
    return None


def check(index_dir: str | Path, config: Config | None = None) -> list[str]:
    """Problems found in the index at ``index_dir`` (empty when it is whole); ``config`` gives a
    Milvus index its token (and its uri, when set for the same engine)."""
    store = IndexStore(index_dir)
    try:
        gen = store.current()
        manifest = store.manifest()
        articles, chunks = store.read_records(gen)
    except RagError as e:
        return [str(e)]
    problems: list[str] = []
    counts = manifest.get("counts", {})
    if counts.get("articles") != len(articles) or counts.get("chunks") != len(chunks):
        problems.append(f"{gen / 'manifest.json'}: counts {counts} but {len(articles)} articles and {len(chunks)} chunks on disk")
    orphans = sorted({c.doc_id for c in chunks} - set(articles))
    if orphans:
        problems.append(f"{gen / 'chunks.jsonl'}: chunks of unknown articles {orphans[:5]}")
        return problems
    name = engine_of(manifest)
    uri = (manifest.get("engine") or {}).get("uri", "")
    if config is not None and config.engine == name and config.milvus_uri:
        uri = config.milvus_uri
    config = Config(engine=name, dense=manifest.get("dim") is not None,
                    milvus_uri=uri or ("-" if name == "milvus" else ""),
                    milvus_token=config.milvus_token if config is not None else "")
    rows = rows_of(chunks, articles, config)
    try:
        engine = engine_class(name).load(gen, rows, manifest, config)
    except RagError as e:
        return problems + [str(e)]
    if manifest.get("dim") is not None:
        dim = manifest.get("dim")
        got = next(iter(engine.vectors([rows[0].key]).values()), None) if rows else None
        if got is not None and len(got) != dim:
            problems.append(f"{gen}: vector dimension {len(got)}, manifest says {dim}")
    return problems + engine.check(rows, gen)
