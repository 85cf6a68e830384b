"""The reader's neural evidence: start / end scores of every token of the sentences it reads,
from the encoder's token states with the question read alongside, and what they say of each
candidate span (features the span ranker's trees weigh with the lexical ones).

The encoder is the one the index already runs (e5-small as int8 ONNX, :meth:`rag.embedding.
int8.Int8Embedder.pair_states`); the head on its states (two narrow convolutions over the tokens) is trained by
``scripts/train_reader.py`` and run here with numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Hashable
from typing import Protocol

import numpy as np

from ...embedding.base import TokenStates

__all__ = ["SpanHead", "PairEncoder", "SentenceLogits", "NEURAL_FEATURES", "neural_features", "MAX_SPAN_TOKENS"]

NEURAL_FEATURES = ["nn_start", "nn_end", "nn_logprob", "nn_gap", "nn_over_null", "nn_start_aligned",
                   "nn_end_aligned", "nn_sentence_gap"]
MAX_SPAN_TOKENS = 20  # the longest token span the sentence-best score considers
MISSING = -20.0  # a candidate the head could not score (its sentence not encoded, or cut)


class PairEncoder(Protocol):
    """What the reader needs of an embedder: token states of texts read with a question."""

    def pair_states(self, question: str, texts: list[str], top_layers: str | Path | None = None) -> list[TokenStates]: ...


@dataclass(frozen=True)
class SentenceLogits:
    """Start and end scores of a sentence's tokens (``logits[0]``: the start token's, the "no answer
    here" score; ``logits[1 + i]``: token ``i``, whose characters are ``spans[i]`` of the sentence)."""

    spans: np.ndarray  # (tokens, 2)
    logits: np.ndarray  # (tokens + 1, 2)


class SpanHead:
    """Start and end scores of each token: LayerNorm, then convolutions over the token sequence
    (width 3; GELU between; optionally a residual one in the middle), the start token first (its
    row scores "not in this sentence")."""

    def __init__(self, weights: dict[str, np.ndarray], top_layers: Path | None = None) -> None:
        self.w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.top_layers = top_layers  # the encoder's top layers fine-tuned with the head (a weights file), or None
        self.width = int(self.w["norm_weight"].shape[0])
        # (out, in, k) → (k * in, out): one product over the token and its neighbours side by side
        self._c1 = np.ascontiguousarray(self.w["conv1_weight"].transpose(2, 1, 0).reshape(-1, self.w["conv1_weight"].shape[0]))
        if "conv_mid_weight" in self.w:
            cm = self.w["conv_mid_weight"]
            self._cm = np.ascontiguousarray(cm.transpose(2, 1, 0).reshape(-1, cm.shape[0]))
        self._c2 = np.ascontiguousarray(self.w["conv2_weight"].transpose(2, 1, 0).reshape(-1, self.w["conv2_weight"].shape[0]))
        # the first convolution's weights once (2.4 MB): its (out, in, k) form becomes a view of the product's
        out, width, k = self.w["conv1_weight"].shape
        self.w["conv1_weight"] = self._c1.reshape(k, width, out).transpose(2, 1, 0)

    @classmethod
    def load(cls, path: str | Path, top_layers: str | Path | None = None) -> "SpanHead":
        with np.load(path) as d:
            return cls({k: d[k] for k in d.files}, Path(top_layers) if top_layers else None)

    def save(self, path: str | Path) -> None:
        np.savez_compressed(path, **{k: v.astype(np.float16) for k, v in self.w.items()})

    @staticmethod
    def _neighbours(x: np.ndarray, k: int) -> np.ndarray:
        pad = k // 2
        z = np.zeros((pad, x.shape[1]), np.float32)
        xp = np.vstack([z, x, z])
        return np.hstack([xp[i:i + len(x)] for i in range(k)])

    def logits(self, states: TokenStates) -> np.ndarray:
        """(tokens + 1, 2): row 0 the start token's, then one row per token of ``states``."""
        w = self.w
        x = np.vstack([states.first[None, :], states.states]).astype(np.float32)
        mu = x.mean(1, keepdims=True)
        var = ((x - mu) ** 2).mean(1, keepdims=True)
        x = (x - mu) / np.sqrt(var + 1e-5) * w["norm_weight"] + w["norm_bias"]
        k1 = self.w["conv1_weight"].shape[2]
        h = self._neighbours(x, k1) @ self._c1 + w["conv1_bias"]
        h = 0.5 * h * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h ** 3)))
        if "conv_mid_weight" in w:  # a residual convolution between the two
            km = w["conv_mid_weight"].shape[2]
            m = self._neighbours(h.astype(np.float32), km) @ self._cm + w["conv_mid_bias"]
            h = h + 0.5 * m * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (m + 0.044715 * m ** 3)))
        k2 = self.w["conv2_weight"].shape[2]
        return self._neighbours(h.astype(np.float32), k2) @ self._c2 + w["conv2_bias"]

    def read(self, encoder: PairEncoder, question: str, texts: list[str]) -> list[SentenceLogits]:
        out = []
        states = (encoder.pair_states(question, texts) if self.top_layers is None
                  else encoder.pair_states(question, texts, top_layers=self.top_layers))
        for st in states:
            if st.states.shape[1:] != (self.width,):
                raise ValueError(f"token states of width {st.states.shape[1:]} do not fit a head of width {self.width}")
            out.append(SentenceLogits(st.spans, self.logits(st) if len(st.spans) else np.zeros((1, 2), np.float32)))
        return out


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max()
    return x - m - math.log(float(np.exp(x - m).sum()))


def neural_features(sentence_of: list[Hashable], spans: np.ndarray,
                    read: dict[Hashable, SentenceLogits]) -> np.ndarray:
    """Features (candidates x len(NEURAL_FEATURES)) of candidate ``spans`` ((n, 2), offsets in
    their sentence, the sentence ``sentence_of[i]``), from the head's scores of the sentences
    read (``read[sentence]``). Start and end scores are normalised over every token of every
    sentence read (one answer per question)."""
    n = len(spans)
    out = np.full((n, len(NEURAL_FEATURES)), MISSING, np.float32)
    keys = [k for k, v in read.items() if len(v.spans)]
    if not keys or n == 0:
        return out
    offsets, o = {}, 0
    for k in keys:
        offsets[k] = o
        o += len(read[k].spans)
    S = _log_softmax(np.concatenate([read[k].logits[1:, 0] for k in keys]))
    E = _log_softmax(np.concatenate([read[k].logits[1:, 1] for k in keys]))
    best = {}
    for k in keys:
        m, b = len(read[k].spans), offsets[k]
        pair = S[b:b + m, None] + E[None, b:b + m]
        allowed = np.triu(np.ones((m, m), bool)) & ~np.triu(np.ones((m, m), bool), MAX_SPAN_TOKENS)
        best[k] = float(np.where(allowed, pair, -1e9).max())
    top = max(best.values())
    for i, (k, (x, y)) in enumerate(zip(sentence_of, spans.tolist())):
        if k not in offsets:
            continue
        sl = read[k]
        y -= 1
        ti = np.flatnonzero((sl.spans[:, 0] <= x) & (x < sl.spans[:, 1]))
        tj = np.flatnonzero((sl.spans[:, 0] <= y) & (y < sl.spans[:, 1]))
        if not len(ti) or not len(tj):
            continue
        ti, tj = int(ti[0]), int(tj[0])
        L = sl.logits
        out[i] = [L[ti + 1, 0], L[tj + 1, 1], S[offsets[k] + ti] + E[offsets[k] + tj], 0.0,
                  L[ti + 1, 0] + L[tj + 1, 1] - L[0].sum(), sl.spans[ti, 0] == x, sl.spans[tj, 1] == y + 1,
                  best[k] - top]
    scored = out[:, 2] > MISSING
    if scored.any():
        out[:, 3] = np.where(scored, out[:, 2] - out[scored, 2].max(), MISSING)
    return out
