"""rag: question answering over Chinese news articles, with citations.

Example::

    import rag
    retriever = rag.Retriever.build("data", "index")   # or rag.Retriever.load("index")
    answer = rag.Assistant(retriever).ask("江岸签约了哪些项目？")
    print(answer.text)                                  # … [1]
    for i, p in enumerate(answer.citations, 1):
        print(i, p.title, p.source, p.date)
"""
from __future__ import annotations

import logging

from .version import __version__
from .config import Config  # noqa: E402
from .errors import (  # noqa: E402
    ConfigError,
    EmbedderError,
    IndexCorruptError,
    IndexLockedError,
    IndexMismatchError,
    IndexMissingError,
    LLMError,
    NotReadyError,
    QueryError,
    RagError,
    SourceError,
)
from .records import Answer, Article, Chunk, Passage  # noqa: E402
from .query import ArticleFilter, Query  # noqa: E402
from .engines.indexing import BuildReport, UpdateReport  # noqa: E402
from .search.retrieval import Retriever  # noqa: E402
from .answering.assistant import Assistant  # noqa: E402

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "Answer",
    "Article",
    "ArticleFilter",
    "BuildReport",
    "Query",
    "UpdateReport",
    "Assistant",
    "Chunk",
    "Config",
    "ConfigError",
    "EmbedderError",
    "IndexCorruptError",
    "IndexLockedError",
    "IndexMismatchError",
    "IndexMissingError",
    "LLMError",
    "NotReadyError",
    "Passage",
    "QueryError",
    "RagError",
    "Retriever",
    "SourceError",
    "__version__",
]
