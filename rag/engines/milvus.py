"""The Milvus engine: chunk vectors, BM25 postings and filter fields in one Milvus collection per index."""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable
from urllib.parse import urlsplit, urlunsplit

import numpy as np
from pymilvus import DataType, Function, FunctionType, MilvusClient

from .base import Engine, Row
from ..errors import ConfigError, IndexCorruptError
from ..query import is_dated
from ..text import tokenize

if TYPE_CHECKING:
    from ..config import Config
    from ..query import ArticleFilter

__all__ = ["MilvusEngine"]

log = logging.getLogger(__name__)

_CLIENTS: dict[tuple[str, str], MilvusClient] = {}
_CLIENTS_LOCK = threading.Lock()
_BATCH = 1000  # rows per insert / keys per "key in [...]" expression
_MAX_TEXT = 65535  # bytes of a VARCHAR field


def _is_lite(uri: str) -> bool:
    return "://" not in uri


def _resolved(uri: str) -> str:
    """A Milvus Lite file as an absolute path (builds and loads may run from other folders)."""
    return str(Path(uri).expanduser().resolve()) if _is_lite(uri) else uri


def _public(uri: str) -> str:
    """The uri without user:password, for the manifest."""
    if _is_lite(uri):
        return uri
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _client(uri: str, token: str) -> MilvusClient:
    """One client per (uri, token) in this process: Milvus Lite serves a file to one process only."""
    key = (uri, token)
    with _CLIENTS_LOCK:
        if key not in _CLIENTS:
            try:
                _CLIENTS[key] = MilvusClient(uri=uri, token=token or None)
            except Exception as e:  # MilvusException, or an OSError from Milvus Lite's server
                raise ConfigError(f"cannot connect to Milvus at {_public(uri)} ({e}); check milvus_uri "
                                  f"(RAG_MILVUS_URI) and milvus_token (RAG_MILVUS_TOKEN)") from e
        return _CLIENTS[key]


def _encode(tokens: list[str]) -> str:
    """The project's tokens as one hex word each: Milvus Lite only has the ``standard`` and ``jieba``
    analyzers, and ``standard`` keeps an ``[0-9a-f]`` run whole, so Milvus BM25 sees exactly the
    tokens the local engine indexes (no second segmentation, same stop words)."""
    return " ".join(t.encode("utf-8").hex() for t in tokens)


def _decode(text: str) -> list[str]:
    return [bytes.fromhex(w).decode("utf-8") for w in text.split()]


def _literal(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _keys_expr(keys: list[str]) -> str:
    return f"key in [{', '.join(_literal(k) for k in keys)}]"


def filter_expression(where: "ArticleFilter | None") -> str:
    """The Milvus boolean expression that selects exactly the rows ``where.allows`` (source, date).

    Dates are compared as strings, as ``allows`` does: ``date >= date_from``, and
    ``date[:len(date_to)] <= date_to`` is ``date <= date_to + "~"`` because a stated date holds
    only digits and dashes, which sort before ``~``. Undated articles (``dated == false``) are
    outside every range."""
    if where is None:
        return ""
    parts = []
    if where.sources:
        parts.append(f"source in [{', '.join(_literal(s) for s in sorted(where.sources))}]")
    if where.date_from or where.date_to:
        parts.append("dated == true")
        if where.date_from:
            parts.append(f"date >= {_literal(where.date_from)}")
        if where.date_to:
            parts.append(f"date <= {_literal(where.date_to + '~')}")
    return " and ".join(parts)


def collection_name(index_dir: Path | None) -> str:
    """``rag_<folder name>_<hash of its path>_<build stamp>``: each build gets its own collection."""
    stamp = f"{time.strftime('%Y%m%d%H%M%S')}{int(time.time() * 1e6) % 1_000_000:06d}"
    if index_dir is None:
        return f"rag_unsaved_{stamp}"
    return _prefix(str(Path(index_dir).expanduser().resolve())) + stamp


def _prefix(path: str) -> str:
    slug = re.sub(r"[^0-9A-Za-z]+", "_", Path(path).name).strip("_")[:40] or "index"
    return f"rag_{slug}_{hashlib.sha1(path.encode()).hexdigest()[:10]}_"


class MilvusEngine(Engine):
    """Rows in a Milvus collection (Milvus Lite file or server): dense search over a FLAT (HNSW
    past ``HNSW_FROM`` rows on a server) inner-product index of unit vectors, BM25 full-text
    search with Milvus's BM25 function over the project's own tokens, and article filters as
    Milvus filter expressions. Document frequencies for ``idf`` are kept beside the manifest
    (``milvus_df.json``), with the local engine's formula.

    Milvus is state outside the index folder: ``updated`` changes the collection in place, so
    a Retriever made before an update also sees the new rows (its records do not, so its
    searches skip keys it does not know). A build makes a new collection and leaves the live
    one until the next build, so a server keeps answering during a rebuild.

    Example::

        cfg = Config(engine="milvus", milvus_uri="./milvus.db")
        e = MilvusEngine.create(cfg, Path("index"), dim=384).updated(rows=rows, vectors=vecs, tokens=toks)
        e.keyword_search(["签约"], k=3)       # [(key, score), ...]
    """

    name = "milvus"
    DF_FILE = "milvus_df.json"
    HNSW_FROM = 100_000

    def __init__(self, client: MilvusClient, uri: str, collection: str, dim: int | None, *,
                 df: dict[str, int], n_docs: int, k1: float, b: float, dense_index: str | None) -> None:
        # the parts it is made of, kept as given (the Retriever's __init__ is alike in shape only)
        self._client = client
        self.uri = uri
        self.collection = collection
        self.dim = dim
        self.df = df
        self.n_docs = n_docs
        self._k1, self._b = k1, b
        self.dense_index = dense_index  # "FLAT" or "HNSW"; None for a keyword-only index

    # --- making and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, config: "Config", index_dir: Path | None, dim: int | None) -> "MilvusEngine":
        uri = _resolved(config.milvus_uri)
        client = _client(uri, config.milvus_token)
        if index_dir is not None:
            _drop_stale(client, index_dir)
        name = collection_name(index_dir)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("chunk_id", DataType.VARCHAR, max_length=128)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("source", DataType.VARCHAR, max_length=1024)
        schema.add_field("date", DataType.VARCHAR, max_length=64)
        schema.add_field("dated", DataType.BOOL)
        schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                     input_field_names=["text"], output_field_names=["sparse"]))
        if dim:
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        index = client.prepare_index_params()
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                        params={"bm25_k1": config.bm25_k1, "bm25_b": config.bm25_b})
        if dim:
            index.add_index(field_name="vector", index_type="FLAT", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        log.info("created Milvus collection %s at %s", name, _public(uri))
        return cls(client, uri, name, dim, df={}, n_docs=0, k1=config.bm25_k1, b=config.bm25_b,
                   dense_index="FLAT" if dim else None)

    @classmethod
    def load(cls, folder: Path, rows: list[Row], manifest: dict, config: "Config") -> "MilvusEngine":
        folder = Path(folder)
        saved = manifest.get("engine") or {}
        name = saved.get("collection")
        if not name:
            raise IndexCorruptError(f"{folder / 'manifest.json'}: engine 'milvus' but no collection recorded")
        uri = _resolved(config.milvus_uri if config.milvus_uri not in ("", "-") else saved.get("uri", ""))
        client = _client(uri, config.milvus_token)
        if not client.has_collection(name):
            raise IndexCorruptError(f"{folder}: Milvus collection {name!r} is not at {_public(uri)} "
                                    f"(the index was built against {saved.get('uri')!r})")
        client.load_collection(name)
        try:
            with open(folder / cls.DF_FILE, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise IndexCorruptError(f"{folder / cls.DF_FILE}: cannot read the document frequencies ({e})") from e
        bm25 = saved.get("bm25") or {}
        engine = cls(client, uri, name, manifest.get("dim"), df=meta["df"], n_docs=int(meta["n_docs"]),
                     k1=bm25.get("k1", config.bm25_k1), b=bm25.get("b", config.bm25_b),
                     dense_index=saved.get("dense"))
        count = engine._count()
        if count != len(rows) or engine.n_docs != len(rows):
            raise IndexCorruptError(f"{folder}: {len(rows)} chunk records but {count} rows in Milvus collection "
                                    f"{name!r} and {engine.n_docs} in {cls.DF_FILE}")
        return engine

    # --- changing -----------------------------------------------------------------------------
    def updated(self, *, delete: Iterable[str] = (), rows: list[Row] = (), vectors=None, tokens=None) -> "MilvusEngine":  # type: ignore[assignment]
        rows = list(rows)
        if tokens is None:
            tokens = [tokenize(r.text) for r in rows]
        if len(tokens) != len(rows) or (vectors is not None and len(vectors) != len(rows)):
            raise ValueError(f"{len(rows)} rows need as many token lists and vectors, got {len(tokens)} and "
                             f"{None if vectors is None else len(vectors)}")
        if self.dim and vectors is None and rows:
            raise ValueError("this index has dense vectors: updated() needs vectors for the new rows")
        df = Counter(self.df)
        n_docs = self.n_docs
        delete = sorted(set(delete))
        for i in range(0, len(delete), _BATCH):
            expr = _keys_expr(delete[i:i + _BATCH])
            found = self._client.query(self.collection, filter=expr, output_fields=["text"])
            for hit in found:
                df.subtract(set(_decode(hit["text"])))
            n_docs -= len(found)
            if found:
                self._client.delete(self.collection, filter=expr)
        if vectors is not None and self.dim:
            vectors = np.asarray(vectors, np.float32).reshape(-1, self.dim)
        for i in range(0, len(rows), _BATCH):
            batch = []
            for j in range(i, min(i + _BATCH, len(rows))):
                r, toks = rows[j], tokens[j]
                text = _encode(toks)
                if len(text) > _MAX_TEXT:
                    log.warning("chunk %s has %d tokens; indexing the first ones that fit a Milvus VARCHAR", r.key, len(toks))
                    text = text[:_MAX_TEXT].rsplit(" ", 1)[0]
                    toks = _decode(text)
                df.update(set(toks))
                entity = {"key": r.key, "chunk_id": r.chunk_id, "doc_id": r.doc_id, "source": r.source or "",
                          "date": r.date or "", "dated": is_dated(r.date), "text": text}
                if self.dim:
                    entity["vector"] = vectors[j].tolist()
                batch.append(entity)
            self._client.insert(self.collection, batch)
        n_docs += len(rows)
        engine = type(self)(self._client, self.uri, self.collection, self.dim,
                            df={t: n for t, n in df.items() if n > 0}, n_docs=n_docs,
                            k1=self._k1, b=self._b, dense_index=self.dense_index)
        if self.dense_index == "FLAT" and not _is_lite(self.uri) and n_docs >= self.HNSW_FROM:
            engine._switch_to_hnsw()
        return engine

    def _switch_to_hnsw(self) -> None:
        log.info("Milvus collection %s has %d rows: replacing the FLAT index with HNSW", self.collection, self.n_docs)
        self._client.release_collection(self.collection)
        self._client.drop_index(self.collection, "vector")
        index = self._client.prepare_index_params()
        index.add_index(field_name="vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200})
        self._client.create_index(self.collection, index)
        self._client.load_collection(self.collection)
        self.dense_index = "HNSW"

    # --- searching ----------------------------------------------------------------------------
    def dense_search(self, vector: np.ndarray, k: int, where: "ArticleFilter | None" = None) -> list[tuple[str, float]]:
        if not self.dim or self.n_docs == 0:
            return []
        params: dict = {"metric_type": "IP"}
        if self.dense_index == "HNSW":
            params["params"] = {"ef": max(64, 2 * k)}
        hits = self._client.search(self.collection, data=[np.asarray(vector, np.float32).reshape(-1).tolist()],
                                   anns_field="vector", limit=min(k, 16384), filter=filter_expression(where),
                                   search_params=params, output_fields=["key"])[0]
        return [(h["key"], float(h["distance"])) for h in hits]

    def keyword_search(self, tokens: list[str], k: int, where: "ArticleFilter | None" = None) -> list[tuple[str, float]]:
        known = [t for t in tokens if t in self.df]
        if not known or self.n_docs == 0:
            return []
        hits = self._client.search(self.collection, data=[_encode(known)], anns_field="sparse", limit=min(k, 16384),
                                   filter=filter_expression(where), search_params={"metric_type": "BM25"},
                                   output_fields=["key"])[0]
        # Milvus Lite returns BM25 scores negated; Milvus scales them by (k1 + 1) where bm25s does not
        out = [(h["key"], abs(float(h["distance"])) / (self._k1 + 1)) for h in hits]
        return [(key, s) for key, s in sorted(out, key=lambda x: -x[1]) if s > 0]

    def vectors(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        if not self.dim:
            return {}
        keys = list(dict.fromkeys(keys))
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(keys), _BATCH):
            for hit in self._client.query(self.collection, filter=_keys_expr(keys[i:i + _BATCH]),
                                          output_fields=["key", "vector"]):
                out[hit["key"]] = np.asarray(hit["vector"], np.float32)
        return out

    def idf(self, token: str) -> float:
        return float(np.log(1 + (self.n_docs + 1) / (self.df.get(token, 0) + 0.5)))

    @property
    def size(self) -> int:
        return self.n_docs

    def _count(self) -> int:
        return int(self._client.query(self.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])

    # --- persistence and integrity ------------------------------------------------------------
    def save(self, folder: Path) -> dict:
        with open(Path(folder) / self.DF_FILE, "w", encoding="utf-8") as f:
            json.dump({"n_docs": self.n_docs, "df": self.df}, f, ensure_ascii=False)
        return {"name": self.name, "uri": _public(self.uri), "collection": self.collection,
                "dense": self.dense_index, "keyword": "milvus BM25 over rag.text tokens",
                "bm25": {"k1": self._k1, "b": self._b}}

    def check(self, rows: list[Row], folder: Path) -> list[str]:
        where = f"Milvus collection {self.collection!r} at {_public(self.uri)}"
        problems: list[str] = []
        if self.n_docs != len(rows):
            problems.append(f"{Path(folder) / self.DF_FILE}: {self.n_docs} rows for {len(rows)} chunks")
        expected = {r.key for r in rows}
        seen: set[str] = set()
        bad_vectors = not_unit = 0
        fields = ["key", "vector"] if self.dim else ["key"]
        it = self._client.query_iterator(self.collection, batch_size=_BATCH, filter="", output_fields=fields)
        try:
            while batch := it.next():
                seen.update(h["key"] for h in batch)
                if self.dim:
                    vecs = np.asarray([h["vector"] for h in batch], np.float32)
                    finite = np.isfinite(vecs).all(axis=1)
                    bad_vectors += int((~finite).sum())
                    not_unit += int((np.abs(np.linalg.norm(vecs[finite], axis=1) - 1.0) > 1e-3).sum())
        finally:
            it.close()
        if seen != expected:
            problems.append(f"{where}: {len(seen)} rows for {len(rows)} chunks ({len(expected - seen)} missing, "
                            f"{len(seen - expected)} unknown)")
        if bad_vectors:
            problems.append(f"{where}: {bad_vectors} vectors are not finite")
        if not_unit:
            problems.append(f"{where}: {not_unit} vectors are not unit length")
        return problems


def _drop_stale(client: MilvusClient, index_dir: Path) -> None:
    """Drop this index folder's collections other than the live one (failed or superseded builds)."""
    path = str(Path(index_dir).expanduser().resolve())
    live = None
    try:
        from .store import IndexStore

        store = IndexStore(index_dir)
        if store.exists():
            live = (store.manifest().get("engine") or {}).get("collection")
    except Exception as e:  # an unreadable index has no live collection to keep
        log.debug("no live collection at %s: %s", index_dir, e)
    for name in client.list_collections():
        if name.startswith(_prefix(path)) and name != live:
            log.info("dropping Milvus collection %s (not the live one of %s)", name, index_dir)
            client.drop_collection(name)
