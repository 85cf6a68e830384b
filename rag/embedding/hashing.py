"""A model-free embedder: character n-grams hashed into a fixed number of dimensions."""
from __future__ import annotations

import hashlib

import numpy as np

from .base import Embedder

__all__ = ["HashEmbedder"]


class HashEmbedder(Embedder):
    """Deterministic unit vectors from hashed character 1- to 3-grams (no model, no download).

    Texts sharing many characters get a high cosine, so it behaves like a fuzzy keyword
    matcher: for tests and for trying the pipeline where no model can be installed, not for
    quality. ``make_embedder("hash")`` (256 dimensions) or ``"hash:<dim>"``.

    Example::

        emb = HashEmbedder(64)
        v = emb.embed_queries(["江岸签约"])       # (1, 64), the same on every machine
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 8:
            raise ValueError(f"hash embedder dimension must be at least 8, got {dim}")
        self.dim = dim
        self.name = f"hash-{dim}"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for n in (1, 2, 3):
                for i in range(len(text) - n + 1):
                    h = int.from_bytes(hashlib.blake2b(text[i : i + n].encode("utf-8"), digest_size=8).digest(), "little")
                    out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else np.eye(1, self.dim, row % self.dim, dtype=np.float32)
        return out
