"""Search stages: the ordered steps that rework the fused passages before duplicates are folded and the list is cut.

``Retriever.search`` runs: candidates (dense and keyword) → fusion (``FUSION[config.fusion]``) →
the stages named in ``Config.stages``, in order → duplicates folded → the first ``k``.

A stage is any callable ``stage(query, passages) -> passages`` (:class:`Stage`). It gets the
over-fetched list (``Config.overfetch * k`` passages, best first, each with its ``chunk_id``,
``doc_id`` and both retrievers' evidence) and returns them reordered, rescored or filtered; it may
return fewer, never passages it was not given. A stage with a ``depth`` attribute is handed at
least that many (the reranker reads the best 40 whatever ``k`` is). It reads the question as a :class:`~rag.query.Query`
(``query.text``, ``query.folded``, ``query.tokens``, ``query.terms``).

Each stage is made once per Retriever by its factory in :data:`STAGES`, which receives the
Retriever (its ``config``, ``articles``, ``chunks`` and ``embedder``). A factory should be cheap;
a stage that needs a model loads it on its first call. A new stage is one module plus one line::

    STAGES = {"rerank": "rag.search.rerank:Reranker"}   # RAG_STAGES=rerank, or Config(stages=("rerank",))

Example (a stage that keeps one passage per article)::

    class OnePerArticle:
        def __init__(self, retriever): ...
        def __call__(self, query, passages):
            seen = set()
            return [p for p in passages if not (p.doc_id in seen or seen.add(p.doc_id))]
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, Union

from ..errors import ConfigError, RagError
from ..query import Query
from ..records import Passage

if TYPE_CHECKING:
    from .retrieval import Retriever

__all__ = ["STAGES", "Stage", "StageFactory", "make_stages", "run_stages"]


class Stage(Protocol):
    """One step of a search after fusion: the passages for ``query``, reworked."""

    def __call__(self, query: Query, passages: list[Passage]) -> list[Passage]: ...


StageFactory = Callable[["Retriever"], Stage]

# Config.stages names → a factory taking the Retriever, or "module:attribute" of one (imported on first use)
STAGES: dict[str, Union[StageFactory, str]] = {
    "rerank": "rag.search.rerank:for_retriever",
}


def _factory(name: str) -> StageFactory:
    spec = STAGES.get(name) if isinstance(name, str) else None
    if spec is None:
        known = ", ".join(sorted(STAGES)) or "none registered"
        raise ConfigError(f"stages: unknown search stage {name!r} (known: {known}); register it in rag.search.stages.STAGES")
    if not isinstance(spec, str):
        return spec
    module, _, attribute = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"stages: search stage {name!r} names {spec!r}, which cannot be imported: {e}") from e


def make_stages(names: Sequence[str], retriever: "Retriever") -> tuple[Stage, ...]:
    """The stages named in ``names`` (``Config.stages``), each made once for ``retriever``."""
    return tuple(_factory(name)(retriever) for name in names)


def run_stages(stages: Sequence[Stage], query: Query, passages: list[Passage]) -> list[Passage]:
    """``passages`` through each stage in turn; a stage that returns passages it was not given is an error."""
    for stage in stages:
        given = {p.chunk_id for p in passages}
        passages = list(stage(query, passages))
        if any(not isinstance(p, Passage) or p.chunk_id not in given for p in passages):
            raise RagError(f"search stage {type(stage).__name__} returned passages it was not given")
    return passages
