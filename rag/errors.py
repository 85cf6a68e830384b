"""The error hierarchy: every failure the library reports is a RagError."""
from __future__ import annotations

__all__ = [
    "RagError",
    "ConfigError",
    "SourceError",
    "IndexMissingError",
    "IndexMismatchError",
    "IndexCorruptError",
    "IndexLockedError",
    "EmbedderError",
    "QueryError",
    "NotFoundError",
    "LLMError",
    "NotReadyError",
    "AccessError",
    "RateLimitError",
]


class RagError(Exception):
    """Base class of every error raised by the library."""


class ConfigError(RagError, ValueError):
    """A configuration value is invalid; the message names the field."""


class SourceError(RagError):
    """An input file cannot be read or parsed; the message names the file (and line)."""

    def __init__(self, path: str, reason: str, line: int | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


class IndexMissingError(RagError, FileNotFoundError):
    """No index exists at the given folder."""


class IndexMismatchError(RagError):
    """The index was built with another embedder or format than the one asked for."""


class IndexCorruptError(RagError):
    """Index files are damaged or incomplete."""


class IndexLockedError(RagError):
    """Another process is writing the index."""


class EmbedderError(RagError):
    """The embedding model cannot be loaded or run."""


class QueryError(RagError, ValueError):
    """A query is empty or otherwise unusable; for a refused upload, ``problems`` holds the
    SourceError of each thing wrong with its files (their messages are joined in this one's)."""

    def __init__(self, message: str = "", *, problems: "tuple[SourceError, ...] | list[SourceError]" = ()) -> None:
        self.problems = tuple(problems)
        super().__init__(message)


class NotFoundError(QueryError):
    """A file or article named in a request that does not exist (HTTP 404)."""


class EmptyQueryError(QueryError):
    """A query with nothing left to search once cleaned (blank, or control characters only)."""


class LLMError(RagError):
    """The language model endpoint timed out, refused the connection or replied with garbage."""


class NotReadyError(RagError):
    """The index is still being built or loaded; retry in a moment."""


class AccessError(RagError):
    """A change to the corpus was refused: the admin token is missing or wrong, or the app is
    read-only (``read_only`` True: no token is configured and it is not on loopback alone)."""

    def __init__(self, message: str, *, read_only: bool = False) -> None:
        self.read_only = read_only
        super().__init__(message)


class RateLimitError(RagError):
    """Too many requests of one kind from one client; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: int = 60) -> None:
        self.retry_after = retry_after
        super().__init__(message)
