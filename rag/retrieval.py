"""Retrieval: the Retriever façade that builds, saves, loads and searches the hybrid index."""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from . import __version__
from .chunking import chunk_articles, embed_text
from .config import Config
from .embedding import Embedder, make_embedder
from .errors import IndexCorruptError, IndexMismatchError, IndexMissingError, QueryError, RagError, SourceError
from .keyword_index import KeywordIndex
from .records import Article, Chunk, Passage
from .sources import SUPPORTED_SUFFIXES, iter_source_files, read_articles, read_file
from .store import FORMAT_VERSION, IndexStore
from .text import fold, normalize, tokenize
from .vector_index import VectorIndex

__all__ = ["Retriever", "Hit", "BuildReport", "UpdateReport", "MAX_QUERY_CHARS", "clean_query"]

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")


def clean_query(query: object) -> str:
    """The query with control characters removed and whitespace collapsed; QueryError if nothing is left."""
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, got {type(query).__name__}")
    q = _CONTROL.sub(" ", query)
    q = re.sub(r"\s+", " ", q).strip()
    if not q:
        raise QueryError("query is empty: type a question or some keywords")
    if len(q) > MAX_QUERY_CHARS:
        log.info("query of %d characters cut to %d", len(q), MAX_QUERY_CHARS)
        q = q[:MAX_QUERY_CHARS]
    return q


@dataclass(frozen=True)
class Hit:
    """One fused result: a chunk row with the evidence each retriever gave it."""

    row: int
    score: float
    dense_score: float | None
    dense_rank: int | None
    keyword_score: float | None
    keyword_rank: int | None


@dataclass
class BuildReport:
    """What a build or update did."""

    articles: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    errors: list[str] | None = None

    def summary(self) -> str:
        return (
            f"{self.articles} articles, {self.chunks} chunks ({self.embedded} embedded, {self.reused} reused) "
            f"in {self.seconds:.1f} s" + (f"; {len(self.errors)} file error(s)" if self.errors else "")
        )


@dataclass
class UpdateReport:
    """What ``Retriever.add`` / ``remove`` / ``sync`` changed (article ids) and what it cost."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    embedded: int = 0
    reused: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.changed)} changed, {len(self.removed)} removed, "
            f"{self.unchanged} unchanged; {self.embedded} chunks embedded, {self.reused} reused in {self.seconds:.1f} s"
            + (f"; {len(self.errors)} error(s)" if self.errors else "")
        )


def _locked_update(method):
    """Run an update holding the index lock, on the live generation (reloaded if another
    process changed it since), so concurrent writers never undo each other's changes."""

    @functools.wraps(method)
    def wrapper(self: "Retriever", *args, **kwargs):
        if self.index_dir is None:
            raise IndexMissingError("this Retriever has no index folder: save() it first, or use Retriever.load(DIR)")
        with IndexStore(self.index_dir).lock():
            self.reload_if_changed()
            return method(self, *args, **kwargs)

    return wrapper


def file_fingerprints(paths: Iterable[str | Path]) -> dict[str, str]:
    """origin → sha256 of the bytes, for every supported file under the given paths."""
    out: dict[str, str] = {}
    for f, root in iter_source_files(paths):
        if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES:
            origin = str(f.relative_to(root)) if root else f.name
            out[origin] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _rrf(rank_lists: list[tuple[np.ndarray, float]], k: int) -> dict[int, float]:
    fused: dict[int, float] = {}
    for rows, weight in rank_lists:
        for rank, row in enumerate(rows):
            fused[int(row)] = fused.get(int(row), 0.0) + weight / (k + rank + 1)
    return fused


class Retriever:
    """Hybrid (dense + BM25) search over a persisted index of news articles.

    Example::

        r = Retriever.build("data", "index")      # or Retriever.load("index")
        for p in r.search("江岸签约了哪些项目？", k=3):
            print(p.score, p.title, p.source, p.date, p.text[:40])
    """

    def __init__(
        self,
        *,
        config: Config,
        embedder: Embedder,
        articles: dict[str, Article],
        chunks: list[Chunk],
        vectors: VectorIndex,
        keywords: KeywordIndex,
        manifest: dict,
        index_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.articles = articles
        self.chunks = chunks
        self.vectors = vectors
        self.keywords = keywords
        self.manifest = manifest
        self.index_dir = index_dir
        self._token = IndexStore(index_dir).generation_token() if index_dir is not None else None
        self._shingle_cache: dict[str, frozenset[str]] = {}
        self._duplicate_cache: dict[tuple[tuple[str, str], float], bool] = {}

    # --- building ----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        data_dir: str | Path,
        index_dir: str | Path,
        *,
        config: Config | None = None,
        show_progress: bool = False,
        **options,
    ) -> "Retriever":
        """Read, clean, chunk and embed every article under ``data_dir``; save to ``index_dir``.

        ``options`` override config fields (``embedder="st:/models/x"``, ``chunk_size=200``).
        Files that cannot be read are logged and listed in ``manifest["errors"]``; the rest
        are indexed. Vectors of chunks already in ``index_dir`` (same embedder) are reused.
        """
        config = (config or Config.from_env()).with_(**options) if options else (config or Config.from_env())
        t0 = time.perf_counter()
        result = read_articles([data_dir])
        if not result.articles:
            reasons = "; ".join(str(e) for e in result.errors) or "no .txt, .md, .html or .jsonl files"
            raise SourceError(str(data_dir), f"no articles could be read ({reasons})")
        retriever, report = cls._from_articles(
            result.articles, config, index_dir=Path(index_dir), show_progress=show_progress
        )
        report.errors = [str(e) for e in result.errors]
        report.seconds = time.perf_counter() - t0
        retriever.manifest.update(
            {
                "sources": file_fingerprints([data_dir]),
                "data_dir": str(Path(data_dir).resolve()),
                "errors": report.errors,
                "build": asdict(report),
            }
        )
        retriever.save(index_dir)
        log.info("built index at %s: %s", index_dir, report.summary())
        return retriever

    @classmethod
    def _reusable_vectors(cls, index_dir: Path | None, identity: dict) -> dict[str, np.ndarray]:
        """chunk id → vector from the index already at ``index_dir`` when it used the same embedder."""
        if index_dir is None:
            return {}
        store = IndexStore(index_dir)
        if not store.exists():
            return {}
        try:
            manifest = store.manifest()
            if manifest.get("embedder") != identity:
                return {}
            gen = store.current()
            ids = [json.loads(line)["id"] for line in open(gen / "chunks.jsonl", encoding="utf-8")]
            vecs = VectorIndex.load(gen).vectors()
        except Exception as e:  # a damaged old index only means nothing to reuse
            log.warning("not reusing vectors from %s: %s", index_dir, e)
            return {}
        return dict(zip(ids, vecs))

    @classmethod
    def _from_articles(
        cls,
        articles: list[Article],
        config: Config,
        *,
        index_dir: Path | None,
        show_progress: bool,
        embedder: Embedder | None = None,
        reuse: dict[str, np.ndarray] | None = None,
    ) -> tuple["Retriever", BuildReport]:
        embedder = embedder or make_embedder(config.embedder)
        chunks = chunk_articles(articles, config)
        known = reuse if reuse is not None else cls._reusable_vectors(index_dir, embedder.identity())
        todo: dict[str, str] = {}
        for c in chunks:
            if c.id not in known and c.id not in todo:
                todo[c.id] = fold(embed_text(c, title_in_chunk=config.title_in_chunk))
        fresh: dict[str, np.ndarray] = {}
        if todo:
            log.info("embedding %d chunks (%d reused)", len(todo), len(chunks) - len(todo))
            vecs = embedder.embed_documents(list(todo.values()), show_progress=show_progress)
            fresh = dict(zip(todo.keys(), vecs))
        dim = embedder.dim
        matrix = np.zeros((len(chunks), dim), dtype=np.float32)
        for i, c in enumerate(chunks):
            matrix[i] = fresh[c.id] if c.id in fresh else known[c.id]
        tokens = [tokenize(embed_text(c, title_in_chunk=config.title_in_chunk)) for c in chunks]
        manifest = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "embedder_spec": config.embedder,
            "embedder": embedder.identity(),
            "dim": dim,
            "counts": {"articles": len(articles), "chunks": len(chunks)},
            "chunking": {
                "chunk_size": config.chunk_size,
                "chunk_overlap": config.chunk_overlap,
                "title_in_chunk": config.title_in_chunk,
            },
        }
        retriever = cls(
            config=config,
            embedder=embedder,
            articles={a.id: a for a in articles},
            chunks=chunks,
            vectors=VectorIndex.from_vectors(matrix),
            keywords=KeywordIndex.build(tokens),
            manifest=manifest,
            index_dir=index_dir,
        )
        report = BuildReport(
            articles=len(articles), chunks=len(chunks), embedded=len(todo), reused=len(chunks) - len(todo)
        )
        return retriever, report

    # --- persistence -------------------------------------------------------------------------
    def save(self, index_dir: str | Path) -> None:
        """Write the index as a new generation and make it live atomically."""
        store = IndexStore(index_dir)
        self.manifest["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with store.writer() as gen:
            with open(gen / "articles.jsonl", "w", encoding="utf-8") as f:
                for a in self.articles.values():
                    f.write(json.dumps(a.to_dict(), ensure_ascii=False) + "\n")
            with open(gen / "chunks.jsonl", "w", encoding="utf-8") as f:
                for c in self.chunks:
                    f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
            self.vectors.save(gen)
            self.keywords.save(gen)
            with open(gen / "manifest.json", "w", encoding="utf-8") as f:
                json.dump(self.manifest, f, ensure_ascii=False, indent=2)
        self.index_dir = Path(index_dir)
        self._token = store.generation_token()

    @classmethod
    def load(cls, index_dir: str | Path, *, config: Config | None = None, **options) -> "Retriever":
        """Load a saved index.

        The embedder asked for (``config.embedder``, ``RAG_EMBEDDER`` or the default) must
        be the one that built the index; otherwise IndexMismatchError says how to rebuild.
        """
        config = (config or Config.from_env()).with_(**options) if options else (config or Config.from_env())
        store = IndexStore(index_dir)
        manifest = store.manifest()
        gen = store.current()
        built_with = manifest.get("embedder_spec")
        rebuild = f"rebuild it with `rag build --data DATA_DIR --index {index_dir} --embedder {config.embedder}`"
        if built_with != config.embedder:
            raise IndexMismatchError(
                f"index at {index_dir} was built with embedder {built_with!r} but {config.embedder!r} is configured; "
                f"{rebuild}, or load it with embedder={built_with!r} (RAG_EMBEDDER={built_with})"
            )
        embedder = make_embedder(config.embedder)
        if embedder.identity() != manifest.get("embedder"):
            raise IndexMismatchError(
                f"index at {index_dir} was made by {manifest.get('embedder')} but the embedder now is "
                f"{embedder.identity()}; {rebuild}"
            )
        chunking = manifest.get("chunking", {})
        config = config.with_(**{k: v for k, v in chunking.items() if hasattr(config, k)})
        try:
            with open(gen / "articles.jsonl", encoding="utf-8") as f:
                articles = {a.id: a for a in (Article.from_dict(json.loads(line)) for line in f)}
            with open(gen / "chunks.jsonl", encoding="utf-8") as f:
                chunks = [Chunk.from_dict(json.loads(line)) for line in f]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise IndexCorruptError(f"{gen}: damaged article or chunk records ({e}); {rebuild}") from e
        try:
            vectors = VectorIndex.load(gen)
            keywords = KeywordIndex.load(gen)
        except IndexCorruptError as e:
            raise IndexCorruptError(f"{e}; {rebuild}") from e
        if vectors.size != len(chunks) or keywords.n_docs != len(chunks):
            raise IndexCorruptError(
                f"{gen}: {len(chunks)} chunk records but {vectors.size} vectors and {keywords.n_docs} keyword rows; {rebuild}"
            )
        loaded = cls(
            config=config,
            embedder=embedder,
            articles=articles,
            chunks=chunks,
            vectors=vectors,
            keywords=keywords,
            manifest=manifest,
            index_dir=Path(index_dir),
        )
        loaded._token = gen.name  # the generation actually read, even if a newer one went live meanwhile
        return loaded

    @staticmethod
    def is_stale(data_dir: str | Path, index_dir: str | Path, config: Config | None = None) -> str | None:
        """Why the index needs a rebuild for this data and config (missing, changed files, embedder), or None."""
        config = config or Config.from_env()
        store = IndexStore(index_dir)
        if not store.exists():
            return "no index yet"
        try:
            manifest = store.manifest()
            store.current()
        except Exception as e:
            return f"index unreadable ({e})"
        if manifest.get("embedder_spec") != config.embedder:
            return f"embedder changed ({manifest.get('embedder_spec')} → {config.embedder})"
        identity = make_embedder(config.embedder).identity()
        if identity != manifest.get("embedder"):
            changed = sorted(k for k in set(identity) | set(manifest.get("embedder") or {}) if identity.get(k) != (manifest.get("embedder") or {}).get(k))
            return f"embedder {config.embedder} is now different ({', '.join(changed)} changed)"
        chunking = manifest.get("chunking", {})
        for key in ("chunk_size", "chunk_overlap", "title_in_chunk"):
            if chunking.get(key) != getattr(config, key):
                return f"{key} changed"
        if manifest.get("sources") != file_fingerprints([data_dir]):
            return f"files in {data_dir} changed"
        return None

    # --- searching ---------------------------------------------------------------------------
    def _allowed(self, sources: Iterable[str] | None, date_from: str | None, date_to: str | None) -> np.ndarray | None:
        if not sources and not date_from and not date_to:
            return None
        wanted = {s for s in (sources or []) if s}
        ok_docs = set()
        for a in self.articles.values():
            if wanted and (a.source or "") not in wanted:
                continue
            if date_from or date_to:
                d = a.date or ""
                if not re.fullmatch(r"\d{4}(-\d{2}-\d{2})?", d):
                    continue  # no year stated: cannot be placed in a date range
                if date_from and d < date_from:
                    continue
                if date_to and d[: len(date_to)] > date_to:
                    continue
            ok_docs.add(a.id)
        return np.array([c.doc_id in ok_docs for c in self.chunks], dtype=bool)

    def hits(
        self,
        query: str,
        k: int = 5,
        *,
        sources: Iterable[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        mode: str = "hybrid",
        prefer_year: int | None = None,
    ) -> list[Hit]:
        """Fused results with each retriever's evidence. ``mode``: hybrid, dense or keyword.

        ``prefer_year`` lifts chunks of articles dated that year, or that mention it
        (``2024年``), by about half a first place in one ranking.
        """
        q = clean_query(query)
        if k < 1:
            raise QueryError(f"k must be at least 1, got {k}")
        if mode not in ("hybrid", "dense", "keyword"):
            raise QueryError(f"mode must be hybrid, dense or keyword, got {mode!r}")
        if not self.chunks:
            return []
        allowed = self._allowed(sources, date_from, date_to)
        cfg = self.config
        dense: dict[int, tuple[float, int]] = {}
        kw: dict[int, tuple[float, int]] = {}
        lists: list[tuple[np.ndarray, float]] = []
        if mode in ("hybrid", "dense"):
            qv = self.embedder.embed_queries([fold(q)[:512]])
            n = max(cfg.dense_candidates, k)
            scores, rows = self.vectors.search(qv, n, allowed=allowed)
            valid = rows[0] >= 0
            drows, dscores = rows[0][valid], scores[0][valid]
            dense = {int(r): (float(s), i) for i, (r, s) in enumerate(zip(drows, dscores))}
            lists.append((drows, cfg.dense_weight if mode == "hybrid" else 1.0))
        if mode in ("hybrid", "keyword"):
            n = max(cfg.keyword_candidates, k)
            kscores, krows = self.keywords.search(tokenize(q), n, allowed=allowed)
            kw = {int(r): (float(s), i) for i, (r, s) in enumerate(zip(krows, kscores))}
            lists.append((krows, cfg.keyword_weight if mode == "hybrid" else 1.0))
        fused = _rrf(lists, cfg.rrf_k)
        if prefer_year:
            bonus = 0.5 / (cfg.rrf_k + 1)
            mark = f"{prefer_year}年"
            for row in fused:
                c = self.chunks[row]
                if (self.articles[c.doc_id].date or "").startswith(str(prefer_year)) or mark in c.text:
                    fused[row] += bonus
        ranked = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        return [
            Hit(
                row=row,
                score=score,
                dense_score=dense[row][0] if row in dense else None,
                dense_rank=dense[row][1] if row in dense else None,
                keyword_score=kw[row][0] if row in kw else None,
                keyword_rank=kw[row][1] if row in kw else None,
            )
            for row, score in ranked
        ]

    def passage(self, hit: Hit) -> Passage:
        c = self.chunks[hit.row]
        a = self.articles[c.doc_id]
        return Passage(
            doc_id=c.doc_id,
            title=a.title,
            date=a.date,
            source=a.source,
            text=c.text,
            score=round(float(hit.score), 6),
            chunk_id=c.id,
            url=a.url,
            start=c.start,
            end=c.end,
        )

    def search(
        self,
        query: str,
        k: int = 5,
        *,
        sources: Iterable[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        mode: str = "hybrid",
    ) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first (reciprocal rank fusion score).

        Filters: ``sources`` (publication names), ``date_from`` / ``date_to`` (ISO dates,
        inclusive). Raises QueryError for an empty query.
        """
        hits = self.hits(query, k * 3, sources=sources, date_from=date_from, date_to=date_to, mode=mode)
        return self._fold_duplicates([self.passage(h) for h in hits])[:k]

    def _shingles(self, doc_id: str) -> frozenset[str]:
        cache = self._shingle_cache
        if doc_id not in cache:
            t = re.sub(r"\W+", "", normalize(self.articles[doc_id].text))
            cache[doc_id] = frozenset(t[i : i + 3] for i in range(max(1, len(t) - 2)))
        return cache[doc_id]

    def near_duplicates(self, a: str, b: str, threshold: float = 0.8) -> bool:
        """True when two articles tell the same story in (almost) the same words (3-gram Jaccard)."""
        key = (a, b) if a < b else (b, a)
        known = self._duplicate_cache.get((key, threshold))
        if known is not None:
            return known
        sa, sb = self._shingles(a), self._shingles(b)
        small, large = sorted((len(sa), len(sb)))
        # Jaccard <= small / large: most pairs are settled by their sizes, without a set operation.
        same = bool(small) and small >= threshold * large and len(sa & sb) / len(sa | sb) >= threshold
        if len(self._duplicate_cache) > 200_000:
            self._duplicate_cache.clear()
        self._duplicate_cache[(key, threshold)] = same
        return same

    def _fold_duplicates(self, passages: list[Passage]) -> list[Passage]:
        """Show each story once: a passage of a near-identical article from another outlet is dropped
        and its outlet (or id when it has none) listed in ``also_in`` of the better-ranked one."""
        kept: list[Passage] = []
        for p in passages:
            for i, q in enumerate(kept):
                if q.doc_id != p.doc_id and self.near_duplicates(q.doc_id, p.doc_id):
                    label = p.source or p.doc_id
                    if label not in q.also_in and label != q.source:
                        kept[i] = replace(q, also_in=q.also_in + (label,))
                    break
            else:
                kept.append(p)
        return kept

    def sources(self) -> list[str]:
        """Publications present in the index, for filters."""
        return sorted({a.source for a in self.articles.values() if a.source})

    # --- changing the corpus without a full rebuild -------------------------------------------
    def _replace_articles(self, articles: list[Article], report: UpdateReport, sources: dict[str, str]) -> UpdateReport:
        """Re-index ``articles`` reusing every known vector, save, and swap in the new state."""
        if self.index_dir is None:
            raise IndexMissingError("this Retriever has no index folder: save() it first, or use Retriever.load(DIR)")
        reuse = dict(zip((c.id for c in self.chunks), self.vectors.vectors())) if self.chunks else {}
        new, build = type(self)._from_articles(
            articles, self.config, index_dir=self.index_dir, show_progress=False, embedder=self.embedder, reuse=reuse
        )
        new.manifest.update({k: v for k, v in self.manifest.items() if k not in new.manifest})
        new.manifest["sources"] = sources
        report.embedded, report.reused = build.embedded, build.reused
        new.manifest["update"] = asdict(report)
        new.save(self.index_dir)
        self.__dict__.update(new.__dict__)
        self._token = IndexStore(self.index_dir).generation_token()
        return report

    def _merge(self, incoming: list[Article], drop: set[str], report: UpdateReport) -> list[Article]:
        """The article list after removing ``drop`` and adding/replacing ``incoming`` (same id = changed)."""
        merged = {i: a for i, a in self.articles.items() if i not in drop}
        for a in incoming:
            old = self.articles.get(a.id)
            if old is None:
                report.added.append(a.id)
            elif replace(old, origin=a.origin) == a or old == a:
                report.unchanged += 1
            else:
                report.changed.append(a.id)
            merged[a.id] = a
        report.removed = sorted(i for i in drop if i in self.articles and i not in merged)
        return list(merged.values())

    @_locked_update
    def add(self, paths: str | Path | Iterable[str | Path]) -> UpdateReport:
        """Index the articles of these files or folders (an article whose id exists replaces it).

        Only new or changed chunks are embedded; the index is saved before this returns.
        Unreadable files are listed in ``report.errors`` and the rest is added.
        """
        t0 = time.perf_counter()
        paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
        result = read_articles(paths)
        report = UpdateReport(errors=[str(e) for e in result.errors])
        articles = self._merge(result.articles, set(), report)
        sources = dict(self.manifest.get("sources", {}))
        sources.update(file_fingerprints(paths))
        self._replace_articles(articles, report, sources)
        report.seconds = time.perf_counter() - t0
        log.info("add: %s", report.summary())
        return report

    @_locked_update
    def remove(self, doc_ids: Iterable[str]) -> UpdateReport:
        """Remove articles by id; ids not in the index are listed in ``report.errors``."""
        t0 = time.perf_counter()
        doc_ids = [doc_ids] if isinstance(doc_ids, str) else list(doc_ids)
        report = UpdateReport(errors=[f"no article with id {i!r} in the index" for i in doc_ids if i not in self.articles])
        articles = self._merge([], set(doc_ids), report)
        if report.removed and not articles:
            raise QueryError(
                f"removing {len(report.removed)} article(s) would leave the index at {self.index_dir} empty; "
                "build a new index from your data instead (`rag build --data DATA_DIR --index DIR`)"
            )
        if report.removed:
            self._replace_articles(articles, report, dict(self.manifest.get("sources", {})))
        report.seconds = time.perf_counter() - t0
        log.info("remove: %s", report.summary())
        return report

    @_locked_update
    def sync(self, data_dir: str | Path) -> UpdateReport:
        """Apply what changed in ``data_dir`` since the index was built or synced: new, edited and
        deleted files (compared by sha256 with ``manifest["sources"]``). Saves when anything changed."""
        t0 = time.perf_counter()
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise SourceError(str(data_dir), "not a folder: sync needs the data folder the index was built from")
        before = self.manifest.get("sources", {})
        now = file_fingerprints([data_dir])
        touched = sorted(o for o in now if before.get(o) != now[o])
        deleted = {o for o in before if o not in now}
        report = UpdateReport()
        drop = {a.id for a in self.articles.values() if a.origin in deleted or a.origin in touched}
        incoming: list[Article] = []
        owner = {a.id: a.origin for a in self.articles.values() if a.id not in drop}
        for origin in touched:
            r = read_file(data_dir / origin, root=data_dir)
            report.errors += [str(e) for e in r.errors]
            for a in r.articles:
                if a.id in owner:
                    report.errors.append(
                        str(SourceError(str(data_dir / origin), f"duplicate article id {a.id!r} (already read from {owner[a.id]}); skipped"))
                    )
                    continue
                owner[a.id] = origin
                incoming.append(a)
        if not touched and not deleted:
            report.unchanged = len(self.articles)
            report.seconds = time.perf_counter() - t0
            return report
        articles = self._merge(incoming, drop, report)
        if not articles:
            reasons = "; ".join(report.errors) or "no .txt, .md, .html or .jsonl files"
            raise SourceError(str(data_dir), f"no articles could be read ({reasons}); the index is left as it was")
        report.removed = sorted(i for i in drop if i not in {a.id for a in incoming})
        report.unchanged += len(self.articles) - len(drop)
        self._replace_articles(articles, report, now)
        report.seconds = time.perf_counter() - t0
        log.info("sync %s: %s", data_dir, report.summary())
        return report

    def latest(self) -> "Retriever":
        """This Retriever, or a freshly loaded one when another process published a new generation
        since it was loaded. Race-free for a server: swap its reference to the result, and requests
        in flight finish on the object they started with. A damaged new generation is logged and
        ``self`` returned."""
        if self.index_dir is None:
            return self
        token = IndexStore(self.index_dir).generation_token()
        if not token or token == self._token:
            return self
        try:
            fresh = type(self).load(self.index_dir, config=self.config)
        except RagError as e:
            log.warning("index at %s changed but cannot be loaded, keeping the loaded one: %s", self.index_dir, e)
            return self
        log.info("loaded index generation %s from %s", fresh._token, self.index_dir)
        return fresh

    def reload_if_changed(self) -> bool:
        """Pick up a generation another process wrote (e.g. ``rag sync`` while the app runs), in place;
        True when it did. Call it between requests: a request using row numbers from ``hits()``
        across a reload would mix generations (``latest()`` avoids that)."""
        fresh = self.latest()
        if fresh is self:
            return False
        self.__dict__.update(fresh.__dict__)
        return True

    @staticmethod
    def check(index_dir: str | Path) -> list[str]:
        """Problems found in the index at ``index_dir`` (empty when it is whole): files present,
        manifest readable, record, vector and keyword counts agree, vectors finite and unit length."""
        store = IndexStore(index_dir)
        try:
            gen = store.current()
            manifest = store.manifest()
        except RagError as e:
            return [str(e)]
        problems: list[str] = []
        try:
            with open(gen / "articles.jsonl", encoding="utf-8") as f:
                articles = {json.loads(line)["id"] for line in f}
            with open(gen / "chunks.jsonl", encoding="utf-8") as f:
                chunk_docs = [json.loads(line)["doc_id"] for line in f]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return [f"{gen}: damaged article or chunk records ({e})"]
        counts = manifest.get("counts", {})
        if counts.get("articles") != len(articles) or counts.get("chunks") != len(chunk_docs):
            problems.append(f"{gen / 'manifest.json'}: counts {counts} but {len(articles)} articles and {len(chunk_docs)} chunks on disk")
        orphans = sorted(set(chunk_docs) - articles)
        if orphans:
            problems.append(f"{gen / 'chunks.jsonl'}: chunks of unknown articles {orphans[:5]}")
        try:
            vecs = VectorIndex.load(gen).vectors()
            if len(vecs) != len(chunk_docs):
                problems.append(f"{gen / VectorIndex.FILE}: {len(vecs)} vectors for {len(chunk_docs)} chunks")
            if vecs.shape[1] != manifest.get("dim"):
                problems.append(f"{gen / VectorIndex.FILE}: dimension {vecs.shape[1]}, manifest says {manifest.get('dim')}")
            if not np.isfinite(vecs).all():
                problems.append(f"{gen / VectorIndex.FILE}: {int((~np.isfinite(vecs).all(axis=1)).sum())} vectors are not finite")
            elif len(vecs) and not np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3):
                problems.append(f"{gen / VectorIndex.FILE}: vectors are not unit length")
        except RagError as e:
            problems.append(str(e))
        try:
            n = KeywordIndex.load(gen).n_docs
            if n != len(chunk_docs):
                problems.append(f"{gen / 'bm25'}: {n} keyword rows for {len(chunk_docs)} chunks")
        except RagError as e:
            problems.append(str(e))
        return problems
