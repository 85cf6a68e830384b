"""Reading a sentence-transformers folder: its safetensors weights, encoder config, pooling and prompts.

Nothing is loaded into memory up front: tensors are memory-mapped views, and
:class:`RowReader` reads single rows of a table (the word embeddings) with ``pread``.

Example::

    settings = folder_settings("/models/bge-small-zh-v1.5")    # pooling, window, prompts
    config, tensors, prefix = read_encoder(Path("/models/bge-small-zh-v1.5"))
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EmbedderError

__all__ = ["FolderSettings", "RowReader", "folder_settings", "read_encoder", "read_safetensors", "safetensors_layout"]

_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


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


class RowReader:
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


def read_encoder(folder: Path) -> tuple[dict, dict[str, np.ndarray], str]:
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
