"""The index engine seam: one interface for storing and searching chunk vectors and tokens.

An engine holds, for every chunk row, a dense vector (unless the index is keyword-only) and
its keyword tokens, keyed by ``Row.key``, with the article metadata the filters need. The
default engine is FAISS + bm25s in the index folder (``rag.engines.local``); another engine is
one module implementing :class:`Engine` and a name in ``ENGINES``, chosen by ``Config.engine``.
Every engine passes the same conformance tests (``tests/test_engine.py``).
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Config
    from ..query import ArticleFilter

__all__ = ["Row", "Engine", "ENGINES", "engine_class", "engine_of", "optional"]

# Config.engine value → "module:class"
ENGINES = {"local": "rag.engines.local:LocalEngine", "milvus": "rag.engines.milvus:MilvusEngine"}


@dataclass(frozen=True)
class Row:
    """One stored chunk: ``key`` is unique in the index (``<doc_id>@<start>``); ``chunk_id`` is
    the content hash shared by identical chunks; ``source`` and ``date`` are its article's, for
    filters; ``text`` is what was embedded and tokenised (title and chunk)."""

    key: str
    chunk_id: str
    doc_id: str
    source: str | None
    date: str | None
    text: str


class Engine(ABC):
    """Stores rows with their vectors and tokens; dense and keyword search with article filters.

    Updates are functional: ``updated`` returns the engine after the change, and an engine
    that keeps its data in the index folder leaves ``self`` untouched (requests in flight keep
    searching the old state until the new generation is saved and loaded).
    """

    name: str = ""

    @abstractmethod
    def updated(
        self,
        *,
        delete: Iterable[str] = (),
        rows: list[Row] = (),  # type: ignore[assignment]
        vectors: np.ndarray | None = None,
        tokens: list[list[str]] | None = None,
    ) -> "Engine":
        """The engine with rows of the ``delete`` keys removed and ``rows`` added (``vectors[i]``
        and ``tokens[i]`` belong to ``rows[i]``; vectors None for a keyword-only index)."""

    @abstractmethod
    def dense_search(self, vector: np.ndarray, k: int, where: "ArticleFilter | None" = None) -> list[tuple[str, float]]:
        """(key, cosine) of the ``k`` nearest rows allowed by ``where``, best first."""

    @abstractmethod
    def keyword_search(self, tokens: list[str], k: int, where: "ArticleFilter | None" = None) -> list[tuple[str, float]]:
        """(key, BM25 score > 0) of the ``k`` best rows allowed by ``where``, best first."""

    @abstractmethod
    def vectors(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors of these keys (those present), to reuse for unchanged chunks."""

    @abstractmethod
    def idf(self, token: str) -> float:
        """Smoothed inverse document frequency of a token over the rows (high for rare or unseen)."""

    @abstractmethod
    def save(self, folder: Path) -> dict:
        """Persist into the new generation folder; returns what the manifest records as ``engine``."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, rows: list[Row], manifest: dict, config: "Config") -> "Engine":
        """Open the engine saved in ``folder``; ``rows`` are the index's rows in saved order."""

    @classmethod
    @abstractmethod
    def create(cls, config: "Config", index_dir: Path | None, dim: int | None) -> "Engine":
        """An empty engine for a new index (``dim`` None: keyword-only)."""

    @abstractmethod
    def check(self, rows: list[Row], folder: Path) -> list[str]:
        """Problems between the engine's contents and ``rows`` (empty when whole)."""

    @property
    @abstractmethod
    def size(self) -> int:
        """Number of rows stored."""


def engine_of(manifest: dict) -> str:
    """The engine an index's manifest names (an index from before engines had names: ``local``)."""
    return (manifest.get("engine") or {}).get("name", "local")


def engine_class(name: str) -> type[Engine]:
    """The Engine class configured by name; ConfigError naming the install step when missing."""
    if name not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(sorted(ENGINES))}, got {name!r}")
    module, cls = ENGINES[name].split(":")
    return getattr(optional(name, module, what=f"engine {name!r}"), cls)


def optional(extra: str, module: str, *, what: str | None = None):
    """Import ``module``, which needs the optional packages of extra ``extra``; ConfigError
    naming ``pip install 'rag-news[extra]'`` when they are missing."""
    what = what or extra
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("rag"):
            raise ConfigError(f"{what} is not available in this version of rag-news") from e
        raise ConfigError(f"{what} needs an optional package: pip install 'rag-news[{extra}]' ({e})") from e
