"""Retrieval: the Retriever façade that builds, saves, loads and searches the hybrid index."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from . import __version__
from .chunking import chunk_articles, embed_text
from .config import Config
from .embedding import Embedder, make_embedder
from .errors import IndexCorruptError, IndexMismatchError, QueryError, SourceError
from .keyword_index import KeywordIndex
from .records import Article, Chunk, Passage
from .sources import SUPPORTED_SUFFIXES, iter_source_files, read_articles
from .store import FORMAT_VERSION, IndexStore
from .text import fold, tokenize
from .vector_index import VectorIndex

__all__ = ["Retriever", "Hit", "BuildReport", "MAX_QUERY_CHARS", "clean_query"]

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
        self._doc_of_row = np.array([c.doc_id for c in chunks], dtype=object)

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
        vectors = VectorIndex.load(gen)
        keywords = KeywordIndex.load(gen)
        if vectors.size != len(chunks) or keywords.n_docs != len(chunks):
            raise IndexCorruptError(
                f"{gen}: {len(chunks)} chunk records but {vectors.size} vectors and {keywords.n_docs} keyword rows; {rebuild}"
            )
        return cls(
            config=config,
            embedder=embedder,
            articles=articles,
            chunks=chunks,
            vectors=vectors,
            keywords=keywords,
            manifest=manifest,
            index_dir=Path(index_dir),
        )

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
        return [
            self.passage(h)
            for h in self.hits(query, k, sources=sources, date_from=date_from, date_to=date_to, mode=mode)
        ]

    def sources(self) -> list[str]:
        """Publications present in the index, for filters."""
        return sorted({a.source for a in self.articles.values() if a.source})

