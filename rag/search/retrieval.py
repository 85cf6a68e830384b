"""Retrieval: the Retriever façade that builds, loads, saves and searches the hybrid index."""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

import numpy as np

from ..reading.chunking import chunk_articles
from ..config import Config
from .duplicates import NearDuplicates
from . import updates
from .stages import make_stages, run_stages
from ..embedding.base import E5_SMALL
from ..embedding.factory import embedder_for
from ..engines.base import Engine, engine_class, engine_of
from ..errors import IndexMismatchError, QueryError, RagError, SourceError
from .fusion import FUSION, YEAR_LIFT, Candidate, FusionParams
from ..engines.indexing import BuildReport, UpdateReport, index_changes, reusable_vectors, row_key, rows_of, timed
from ..query import ArticleFilter, Query
from ..records import Article, Chunk, Passage
from ..reading.sources import file_fingerprints, formats_named, read_articles
from ..engines.store import FORMAT_VERSION, REBUILD, IndexStore
from ..loading import collector_paused, taking_turns
from ..text import set_cache_dir
from ..version import __version__

if TYPE_CHECKING:
    from ..embedding import Embedder
    from ..answering.reader.neural import PairEncoder

__all__ = ["Retriever", "BuildReport", "UpdateReport"]

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "keyword"]


class Retriever:
    """Hybrid (dense + BM25) search over a persisted index of news articles.

    ``articles`` (id → Article), ``chunks`` (list of Chunk), ``manifest`` (the index's
    sidecar) and ``config`` are public and read-only: a Retriever never changes after it is
    made; ``add`` / ``remove`` / ``sync`` publish a new generation and hand back a new
    Retriever in ``UpdateReport.retriever``, and ``latest()`` hands back the Retriever of a
    generation published since (by another process too).

    Example::

        r = Retriever.build("data", "index")      # or Retriever.load("index")
        for p in r.search("江岸签约了哪些项目？", k=3):
            print(p.score, p.title, p.source, p.date, p.text[:40])
    """

    def __init__(
        self,
        *,
        config: Config,
        embedder: "Embedder | None",
        articles: dict[str, Article],
        chunks: list[Chunk],
        engine: Engine,
        manifest: dict,
        index_dir: Path | None = None,
        generation: str | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.articles = articles
        self.chunks = chunks
        self.engine = engine
        self.manifest = manifest
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self.generation = generation
        self.build_report: BuildReport | None = None  # set by build(): what it did, stage by stage
        self._by_key = {row_key(c): c for c in taking_turns(chunks)}
        self._duplicates = NearDuplicates(articles, config.duplicate_threshold)
        set_cache_dir(config.cache_dir)
        self.stages = make_stages(config.search_stages, self)  # after fusion, in order (rag.search.stages)

    # --- building and persistence -------------------------------------------------------------
    @classmethod
    def build(
        cls,
        data_dir: str | Path,
        index_dir: str | Path,
        *,
        config: Config | None = None,
        show_progress: bool = False,
        ray: str | None = None,
        **options,
    ) -> "Retriever":
        """Read, clean, chunk and embed every article under ``data_dir``; save to ``index_dir``.

        ``ray``: embed the chunks on Ray (``"local"`` or a cluster address; same as
        ``ray_address=``), with the same vectors as in this process.

        ``options`` override config fields (``embedder="st:/models/x"``, ``chunk_size=200``,
        ``dense=False`` for a keyword-only index). Files that cannot be read are logged and
        listed in ``manifest["errors"]``; the rest are indexed. Vectors of chunks already in
        ``index_dir`` (same embedder) are reused.
        """
        if ray is not None:
            options["ray_address"] = ray
        config = (config or Config()).with_(**options)
        t0 = time.perf_counter()
        stages: dict[str, float] = {}
        with timed(stages, "reading"):
            result = read_articles([data_dir])
        if not result.articles:
            reasons = "; ".join(str(e) for e in result.errors) or f"no {formats_named()} files"
            raise SourceError(str(data_dir), f"no articles could be read ({reasons})")
        retriever, report = cls.from_articles(result.articles, config, index_dir=Path(index_dir), show_progress=show_progress, stages=stages)
        report.errors = [str(e) for e in result.errors]
        report.seconds = time.perf_counter() - t0
        retriever.manifest.update({"sources": file_fingerprints([data_dir]), "data_dir": str(Path(data_dir).resolve()),
                                   "errors": report.errors, "build": asdict(report)})
        with timed(stages, "writing"):
            retriever = retriever.save(index_dir)
        report.seconds = time.perf_counter() - t0
        retriever.build_report = report  # with the writing, which the saved manifest cannot hold
        log.info("built index at %s: %s", index_dir, report.summary())
        return retriever

    @classmethod
    def from_articles(
        cls, articles: list[Article], config: Config, *, index_dir: Path | None = None, show_progress: bool = False,
        stages: dict[str, float] | None = None,
    ) -> tuple["Retriever", BuildReport]:
        """An unsaved Retriever over ``articles`` (vectors reused from ``index_dir`` when it has them);
        ``stages`` (optional) gets the seconds each stage took."""
        embedder = embedder_for(config) if config.dense else None
        identity = embedder.identity() if embedder else None
        by_id = {a.id: a for a in articles}
        with timed(stages, "chunking"):
            chunks = chunk_articles(articles, config)
        known = reusable_vectors(index_dir, identity, config) if embedder else {}
        documents = embedder
        if embedder is not None and config.ray_address:
            from ..engines.base import optional

            documents = optional("ray", "rag.embedding.ray_embedding").RayEmbedder(config, embedder)
        empty = engine_class(config.engine).create(config, index_dir, embedder.dim if embedder else None)
        engine, embedded, reused = index_changes(empty, removed_chunks=[], new_chunks=chunks, articles=by_id,
                                                 config=config, embedder=documents, known=known, show_progress=show_progress,
                                                 stages=stages)
        manifest = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "embedder_spec": config.embedder if embedder else None,
            "embedder": identity,
            "dim": embedder.dim if embedder else None,
            "counts": {"articles": len(by_id), "chunks": len(chunks)},
            "chunking": {"chunk_size": config.chunk_size, "chunk_overlap": config.chunk_overlap,
                         "title_in_chunk": config.title_in_chunk},
        }
        retriever = cls(config=config, embedder=embedder, articles=by_id, chunks=chunks, engine=engine,
                        manifest=manifest, index_dir=index_dir)
        return retriever, BuildReport(articles=len(by_id), chunks=len(chunks), embedded=embedded, reused=reused,
                                      stages=stages if stages is not None else {})

    def save(self, index_dir: str | Path) -> "Retriever":
        """Write the index as a new generation and make it live atomically; returns the Retriever of
        that generation (``self`` is left as it was, like every Retriever)."""
        manifest = {**self.manifest, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        generation = IndexStore(index_dir).write(self.articles.values(), self.chunks, manifest, self.engine.save)
        return self._sharing(manifest=manifest, index_dir=Path(index_dir), generation=generation)

    def with_stages(self, *names: str, rerank: bool = False) -> "Retriever":
        """The same index searched through other stages (none: fusion alone; ``rerank=True`` puts
        the reranker first), sharing records, engine and embedder with this one."""
        return self._sharing(config=self.config.with_(stages=tuple(names), rerank=rerank))

    def with_folding(self, *, repeated_text: bool) -> "Retriever":
        """The same index with stories folded otherwise, sharing records, engine and embedder with
        this one: ``repeated_text=False`` folds only other outlets' copies of an article, not
        passages that repeat the text of one shown before (the default folds both; what the
        second costs is measured by ``scripts/bench_vectors.py``)."""
        return self._sharing(_duplicates=NearDuplicates(self.articles, self.config.duplicate_threshold,
                                                        repeated_text=repeated_text))

    def _sharing(self, **changed) -> "Retriever":
        """A new Retriever with the same records, engine and embedder (nothing is read again) and
        ``changed`` attributes; its stages are made anew, for it."""
        other = copy.copy(self)
        for name, value in changed.items():  # on the copy, before anyone holds it: self is untouched
            setattr(other, name, value)
        other.stages = make_stages(other.config.search_stages, other)
        return other

    @classmethod
    def load(cls, index_dir: str | Path, *, config: Config | None = None, **options) -> "Retriever":
        """Load a saved index, with the embedder that built it.

        ``embedder=`` (in ``options``) names the embedder you expect: when the index was built
        with another one, IndexMismatchError says how to rebuild. The same happens when the
        embedder's weights or runtime changed since the build.
        """
        expected = options.pop("embedder", None)
        config = (config or Config()).with_(**options)
        store = IndexStore(index_dir)
        manifest = store.manifest()
        gen = store.current()
        built_with = manifest.get("embedder_spec")
        if built_with is not None:
            config = config.with_(embedder=expected or built_with)
        rebuild = f"rebuild it with `rag build --data DATA_DIR --index {index_dir} --embedder {config.embedder}`"
        engine_name = engine_of(manifest)
        if engine_name != config.engine:
            raise IndexMismatchError(
                f"index at {index_dir} keeps its vectors in engine {engine_name!r} but engine {config.engine!r} is "
                f"configured; set RAG_ENGINE={engine_name}, or {REBUILD.format(root=index_dir)} with RAG_ENGINE={config.engine}"
            )
        embedder = None
        if built_with is not None:
            if built_with != config.embedder:
                raise IndexMismatchError(
                    f"index at {index_dir} was built with embedder {built_with!r} but {config.embedder!r} is configured; "
                    f"{rebuild}, or load it with embedder={built_with!r} (RAG_EMBEDDER={built_with})"
                )
            embedder = embedder_for(config)
            if embedder.identity() != manifest.get("embedder"):
                raise IndexMismatchError(
                    f"index at {index_dir} was made by {manifest.get('embedder')} but the embedder now is "
                    f"{embedder.identity()}; {rebuild}"
                )
        config = config.with_(dense=built_with is not None,
                              **{k: v for k, v in manifest.get("chunking", {}).items() if hasattr(config, k)})
        with collector_paused():
            articles, chunks = store.read_records(gen)
            try:
                engine = engine_class(config.engine).load(gen, rows_of(chunks, articles, config), manifest, config)
            except RagError as e:
                raise type(e)(f"{e}; {rebuild}") from e
        return cls(config=config, embedder=embedder, articles=articles, chunks=chunks, engine=engine,
                   manifest=manifest, index_dir=Path(index_dir), generation=gen.name)

    # --- searching ----------------------------------------------------------------------------
    def search(
        self,
        query: str | Query,
        k: int = 5,
        *,
        sources: Iterable[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        mode: Mode = "hybrid",
        prefer_year: int | None = None,
        per_article: int | None = 1,
    ) -> list[Passage]:
        """The ``k`` best passages for ``query``, best first, each story once (near-identical
        articles of other outlets folded into ``also_in``) and, by default, one passage per
        article: its best. ``per_article=3`` allows up to three passages of one article, ``None``
        any number (what the Assistant and evaluation read).

        Filters: ``sources`` (publication names), ``date_from`` / ``date_to`` (ISO dates,
        inclusive). ``mode``: ``hybrid`` (both, fused as ``config.fusion`` says), ``dense`` or ``keyword``.
        ``prefer_year`` lifts passages of articles dated that year or mentioning it. Each
        passage carries both retrievers' evidence. Raises QueryError for an empty query.
        """
        q = Query.of(query)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise QueryError(f"k must be a whole number of at least 1, got {k!r}")
        if mode not in ("hybrid", "dense", "keyword"):
            raise QueryError(f"mode must be hybrid, dense or keyword, got {mode!r}")
        if mode == "dense" and self.embedder is None:
            raise QueryError("this index is keyword-only (built with dense=False): use mode='keyword' or 'hybrid'")
        if per_article is not None and (isinstance(per_article, bool) or not isinstance(per_article, int) or per_article < 1):
            raise QueryError(f"per_article must be a whole number of at least 1 (or None: any number), got {per_article!r}")
        # what fusion hands on to the stages and the fold: enough for the deepest stage (the reranker's 40)
        fetch = max([self.config.overfetch * k, *(getattr(s, "depth", 0) for s in self.stages)])
        dense, keyword, vector = self._candidates(q, mode, fetch, ArticleFilter.make(sources, date_from, date_to))
        hybrid = mode == "hybrid"
        fused = FUSION[self.config.fusion](
            dense, keyword, FusionParams.of(self.config, hybrid),
            boost=self._year_boost(prefer_year) if prefer_year else None,
            article_of=self.article_of if hybrid and self.config.article_fusion else None)
        top = fused[:fetch]
        if dense and any(c.dense_score is None for c in top):
            top = self._with_cosines(top, vector)
        passages = run_stages(self.stages, q, [self._passage(c) for c in top])
        if prefer_year and self.stages:  # the stages scored afresh: the preferred year weighs in again, as in fusion
            lifted = {p.chunk_id for p in passages if _of_year(prefer_year, p.date, p.text)}
            passages = sorted(passages, key=lambda p: -(p.score + (YEAR_LIFT if p.chunk_id in lifted else 0.0)))
        if per_article is not None:
            passages = _at_most_per_article(passages, per_article)
        return self._duplicates.fold(passages, shown=k)[:k]

    def _candidates(self, q: Query, mode: Mode, fetch: int, where: ArticleFilter | None):
        """Each retriever's ranking ``(row key, score)`` for ``q`` (at least ``fetch`` rows when the
        index has them), and the query's vector (None without the dense side)."""
        cfg = self.config
        dense: list[tuple[str, float]] = []
        keyword: list[tuple[str, float]] = []
        vector = None
        if mode != "keyword" and self.embedder is not None:
            vector = self.embedder.embed_queries([q.folded[:512]])[0]
            dense = self.engine.dense_search(vector, max(cfg.dense_candidates, fetch), where)
        if mode != "dense":
            keyword = self.engine.keyword_search(q.tokens, max(cfg.keyword_candidates, fetch), where)
        # an engine outside the index folder (Milvus) may have rows added after this Retriever
        # was made: keep to the rows it has records of
        dense = [(key, s) for key, s in dense if key in self._by_key]
        keyword = [(key, s) for key, s in keyword if key in self._by_key]
        return dense, keyword, vector

    def _with_cosines(self, cands: list[Candidate], vector) -> list[Candidate]:
        """Candidates the dense side did not return get their cosine from the stored vectors (their
        ``dense_rank`` stays None): on a large archive the best passages are often keyword finds
        outside the dense candidates, and the assistant's decline needs how close they are."""
        vecs = self.engine.vectors(c.key for c in cands if c.dense_score is None)
        return [replace(c, dense_score=float(np.dot(vecs[c.key], vector))) if c.key in vecs else c for c in cands]

    def article_of(self, key: str) -> str:
        """The id of the article whose chunk has row key ``key`` (a candidate's ``Candidate.key``)."""
        return self._by_key[key].doc_id

    def _year_boost(self, year: int):
        def boost(key: str) -> bool:
            c = self._by_key[key]
            return _of_year(year, self.articles[c.doc_id].date, c.text)

        return boost

    def _passage(self, cand: Candidate) -> Passage:
        c = self._by_key[cand.key]
        a = self.articles[c.doc_id]
        return Passage(doc_id=c.doc_id, title=a.title, date=a.date, source=a.source, text=c.text,
                       score=round(float(cand.score), 6), chunk_id=c.id, url=a.url, start=c.start, end=c.end,
                       dense_score=cand.dense_score, dense_rank=cand.dense_rank,
                       keyword_score=cand.keyword_score, keyword_rank=cand.keyword_rank)

    def sources(self) -> list[str]:
        """Publications present in the index, for filters."""
        return sorted({a.source for a in self.articles.values() if a.source})

    def idf(self, token: str) -> float:
        """How rare a (normalised) word is in the index: high for rare or unseen words."""
        return self.engine.idf(token)

    def near_duplicates(self, a: str, b: str) -> bool:
        """True when articles ``a`` and ``b`` tell the same story in (almost) the same words."""
        return self._duplicates.same(a, b)

    @property
    def calibration(self) -> str | None:
        """The model whose cosine scale the assistant's decline decision was fitted for, or None
        (keyword-only index, or an embedder without a fitted calibration)."""
        return getattr(self.embedder, "calibration", None) if self.embedder is not None else None

    @property
    def reader_encoder(self) -> "PairEncoder | None":
        """The embedder, when the answer reader's span head can read its token states (the e5-small
        it was trained on) and ``config.span_head`` is on, else None (the reader then ranks on
        lexical features alone)."""
        if (not self.config.span_head or self.embedder is None or not hasattr(self.embedder, "pair_states")
                or self.calibration != E5_SMALL):
            return None
        return self.embedder

    # --- the index on disk --------------------------------------------------------------------
    @staticmethod
    def is_stale(data_dir: str | Path, index_dir: str | Path, config: Config | None = None) -> str | None:
        """Why the index needs a rebuild for this data and config (missing, changed files, embedder), or None."""
        return updates.staleness(data_dir, index_dir, config or Config())

    def add(self, paths: str | Path | Iterable[str | Path]) -> UpdateReport:
        """Index the articles of these files or folders (an article whose id exists replaces it).

        Only new or changed chunks are embedded; the new generation is saved before this
        returns, and the new Retriever is ``report.retriever`` (``self`` stays as it was).
        Unreadable files are listed in ``report.errors`` and the rest is added.
        """
        return updates.add(self, paths)

    def remove(self, doc_ids: Iterable[str]) -> UpdateReport:
        """Remove articles by id; ids not in the index are listed in ``report.errors``."""
        return updates.remove(self, doc_ids)

    def sync(self, data_dir: str | Path) -> UpdateReport:
        """Apply what changed in ``data_dir`` since the index was built or synced: new, edited and
        deleted files (compared by sha256). Saves when anything changed."""
        return updates.sync(self, data_dir)

    def superseded(self) -> bool:
        """True when another generation of its index folder was published since this one was
        loaded or saved (by this process or another; one small file is read)."""
        if self.index_dir is None:
            return False
        token = IndexStore(self.index_dir).generation_token()
        return bool(token) and token != self.generation

    def latest(self) -> "Retriever":
        """This Retriever, or a freshly loaded one when a new generation was published since it was
        loaded (``superseded``). A Retriever never changes: whoever holds one swaps its reference
        to the result (``r = r.latest()``), and requests in flight finish on the object they
        started with (the app's :class:`rag.serving.service.Service` loads it in the background).
        A damaged new generation is logged and ``self`` returned."""
        if not self.superseded():
            return self
        try:
            fresh = type(self).load(self.index_dir, config=self.config)
        except RagError as e:
            log.warning("index at %s changed but cannot be loaded, keeping the loaded one: %s", self.index_dir, e)
            return self
        log.info("loaded index generation %s from %s", fresh.generation, self.index_dir)
        return fresh

    @staticmethod
    def check(index_dir: str | Path, config: Config | None = None) -> list[str]:
        """Problems found in the index at ``index_dir`` (empty when it is whole): files present,
        manifest readable, record counts agree with the engine's, vectors finite and unit length.
        ``config`` gives a Milvus index its token (and another uri for the same server)."""
        return updates.check(index_dir, config)


def _at_most_per_article(passages: list[Passage], n: int) -> list[Passage]:
    """The passages in order, without those of an article that already has ``n`` before them."""
    seen: dict[str, int] = {}
    kept = []
    for p in passages:
        seen[p.doc_id] = seen.get(p.doc_id, 0) + 1
        if seen[p.doc_id] <= n:
            kept.append(p)
    return kept


def _of_year(year: int, date: str | None, text: str) -> bool:
    """A passage of ``year``: its article is dated that year, or the passage names it (``2024年``)."""
    return (date or "").startswith(str(year)) or f"{year}年" in text
