"""The reader's span head: numpy head = its torch definition, token scores land on the right
candidates, the shipped head reads seed articles through the e5 encoder, fallbacks."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rag.embedding.base import TokenStates
from rag.errors import RagError
from rag.query import Query
from rag.answering.reader.reader import MODEL_DIR, Reader
from rag.answering.reader.neural import MISSING, NEURAL_FEATURES, SentenceLogits, SpanHead, neural_features
from rag.records import Passage
from rag.text import compact, strip_pinyin_noise, to_simplified

SEED = Path(__file__).resolve().parent.parent / "data" / "000_4627bb9fbf4571c3.txt"  # 长江日报, Traditional
F = {n: i for i, n in enumerate(NEURAL_FEATURES)}


def _random_head(width: int = 12, hidden: int = 5, seed: int = 0, mid: bool = False) -> SpanHead:
    rng = np.random.default_rng(seed)
    w = {"norm_weight": rng.normal(size=width), "norm_bias": rng.normal(size=width),
         "conv1_weight": rng.normal(size=(hidden, width, 3)), "conv1_bias": rng.normal(size=hidden),
         "conv2_weight": rng.normal(size=(2, hidden, 3)), "conv2_bias": rng.normal(size=2)}
    if mid:
        w.update(conv_mid_weight=rng.normal(size=(hidden, hidden, 3)), conv_mid_bias=rng.normal(size=hidden))
    return SpanHead(w)


@pytest.mark.parametrize("mid", [False, True])
def test_numpy_head_computes_what_its_torch_definition_computes(mid):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as Fn

    head = _random_head(mid=mid)
    rng = np.random.default_rng(1)
    states = TokenStates(np.zeros((7, 2), np.int32), rng.normal(size=(7, 12)).astype(np.float32),
                         rng.normal(size=12).astype(np.float32))
    w = {k: torch.from_numpy(v) for k, v in head.w.items()}
    x = torch.from_numpy(np.vstack([states.first[None], states.states]))
    x = Fn.layer_norm(x, (12,), w["norm_weight"], w["norm_bias"])
    h = Fn.gelu(Fn.conv1d(x.T[None], w["conv1_weight"], w["conv1_bias"], padding=1), approximate="tanh")
    if mid:
        h = h + Fn.gelu(Fn.conv1d(h, w["conv_mid_weight"], w["conv_mid_bias"], padding=1), approximate="tanh")
    expected = Fn.conv1d(h, w["conv2_weight"], w["conv2_bias"], padding=1)[0].T.numpy()
    got = head.logits(states)
    assert got.shape == (8, 2)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _sentence(starts: list[float], ends: list[float], null=(0.0, 0.0), width: int = 2) -> SentenceLogits:
    """Tokens of ``width`` characters each, with the given start / end scores."""
    n = len(starts)
    spans = np.stack([np.arange(n) * width, np.arange(n) * width + width], 1)
    return SentenceLogits(spans, np.vstack([null, np.stack([starts, ends], 1)]).astype(np.float32))


def test_candidate_features_read_the_tokens_under_the_span():
    read = {"a": _sentence([5.0, 0.0, 0.0], [0.0, 0.0, 4.0]), "b": _sentence([1.0, 0.0], [0.0, 1.0], null=(3.0, 3.0))}
    # in "a": chars 0-6 (tokens 0..2, aligned), chars 1-5 (inside tokens 0..2); in "b": chars 0-4
    X = neural_features(["a", "a", "b"], np.array([[0, 6], [1, 5], [0, 4]]), read)
    assert X.shape == (3, len(NEURAL_FEATURES))
    assert X[0, F["nn_start"]] == 5.0 and X[0, F["nn_end"]] == 4.0
    assert X[1, F["nn_start"]] == 5.0 and X[1, F["nn_end"]] == 4.0  # the tokens holding its first and last chars
    assert X[0, F["nn_start_aligned"]] == 1 and X[0, F["nn_end_aligned"]] == 1
    assert X[1, F["nn_start_aligned"]] == 0 and X[1, F["nn_end_aligned"]] == 0
    assert X[0, F["nn_gap"]] == 0.0 and X[2, F["nn_gap"]] < 0  # the best candidate, and one behind it
    assert X[2, F["nn_over_null"]] == pytest.approx(1.0 + 1.0 - 6.0)  # below "not in this sentence"
    assert X[2, F["nn_sentence_gap"]] < 0 == X[0, F["nn_sentence_gap"]]
    # start / end are normalised over all five tokens of both sentences
    starts = np.array([5.0, 0, 0, 1, 0])
    ends = np.array([0.0, 0, 4, 0, 1])
    lp = (starts[0] - np.log(np.exp(starts).sum())) + (ends[2] - np.log(np.exp(ends).sum()))
    assert X[0, F["nn_logprob"]] == pytest.approx(lp, abs=1e-5)


def test_candidates_of_unread_sentences_are_marked_missing():
    X = neural_features(["a", "zzz"], np.array([[0, 2], [0, 2]]), {"a": _sentence([1.0], [1.0])})
    assert (X[1] == MISSING).all() and X[0, F["nn_start"]] == 1.0
    assert (neural_features(["a"], np.array([[0, 2]]), {}) == MISSING).all()


def test_a_head_of_another_width_is_refused():
    class Encoder:
        def pair_states(self, question, texts):
            return [TokenStates(np.array([[0, 1]]), np.zeros((1, 5), np.float32), np.zeros(5, np.float32)) for _ in texts]

    with pytest.raises(ValueError, match="do not fit a head of width 12"):
        _random_head().read(Encoder(), "问题", ["句子"])


def test_head_round_trip(tmp_path):
    head = _random_head()
    head.save(tmp_path / "h.npz")
    again = SpanHead.load(tmp_path / "h.npz")
    st = TokenStates(np.zeros((3, 2), np.int32), np.ones((3, 12), np.float32), np.zeros(12, np.float32))
    np.testing.assert_allclose(again.logits(st), head.logits(st), rtol=0.02, atol=0.05)  # stored as float16


def test_shipped_reader_has_a_span_head_and_missing_head_files_say_how_to_fix(tmp_path):
    reader = Reader.load()
    assert reader.neural is not None and reader.neural.head.width == 768
    assert (MODEL_DIR / "span_head.npz").is_file() and (MODEL_DIR / "trees_neural.npz").is_file()
    reader.save(tmp_path)
    (tmp_path / "span_head.npz").unlink()
    with pytest.raises(RagError, match=r"span head .*retrain it with scripts/train_reader.py"):
        Reader.load(tmp_path)


@pytest.fixture(scope="module")
def seed_passages() -> list[Passage]:
    text = strip_pinyin_noise(SEED.read_text(encoding="utf-8"))
    title, body = text.split("\n", 1)
    return [Passage(doc_id="jiangan", title=title, date="2023-11-29", source="长江日报", text=body, score=1.0)]


@pytest.fixture(scope="module")
def e5():
    from rag.embedding import E5Int8Embedder

    return E5Int8Embedder()


@pytest.mark.slow
def test_pair_states_cover_the_text_token_by_token(e5):
    text = "会上,三峡数字科技平台项目等6个项目签约江岸。"
    (st,) = e5.pair_states("江岸签约了哪些项目？", [text])
    assert st.states.shape == (len(st.spans), 768) and st.first.shape == (768,)
    covered = "".join(text[a:b] for a, b in st.spans.tolist())
    assert covered == text  # every character under exactly one token, in order
    again = e5.pair_states("江岸签约了哪些项目？", [text, "另一句。"])[0]
    np.testing.assert_array_equal(again.states, st.states)  # a text's states do not depend on its neighbours


@pytest.mark.slow
def test_top_layers_graph_on_layer_8_reproduces_the_encoder_top(e5, tmp_path):
    """The reader's copy of layers 9-11 runs as its own int8 graph on layer 8's states: with e5's own
    weights it gives what the encoder's graph gives for layer 11 (positions and wiring are right)."""
    from rag.embedding.st_folder import read_encoder

    config, tensors, prefix = read_encoder(e5._path)
    own = {k[len(prefix):]: np.asarray(v, np.float32) for k, v in tensors.items()
           if k.startswith(prefix + "encoder.layer.") and int(k[len(prefix):].split(".")[2]) >= 9}
    np.savez(tmp_path / "top_layers.npz", **own)
    text = "会上,三峡数字科技平台项目等6个项目签约江岸。"
    (plain,) = e5.pair_states("江岸签约了哪些项目？", [text])
    (mine,) = e5.pair_states("江岸签约了哪些项目？", [text], top_layers=tmp_path / "top_layers.npz")
    np.testing.assert_array_equal(mine.states[:, 384:], plain.states[:, 384:])  # layer 8: the same run
    a, b = mine.states[:, :384], plain.states[:, :384]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.98, cos.min()  # int8 both ways, quantized separately
    ((spans, below, offset),) = e5.pair_sequences("江岸签约了哪些项目？", [text])
    np.testing.assert_array_equal(spans, plain.spans)
    np.testing.assert_allclose(below[offset:offset + len(spans)], plain.states[:, 384:], atol=1e-5)


def test_shipped_top_layers_are_e5_layers_9_to_11():
    reader = Reader.load()
    top = reader.neural.head.top_layers
    assert top is not None and top == MODEL_DIR / "top_layers.npz" and top.is_file()
    with np.load(top) as d:
        layers = {int(k.split(".")[2]) for k in d.files}
        assert layers == {9, 10, 11}
        assert d["encoder.layer.9.attention.self.query.weight"].shape == (384, 384)


def test_missing_top_layers_say_how_to_fix(tmp_path):
    reader = Reader.load()
    reader.save(tmp_path)
    assert (tmp_path / "top_layers.npz").is_file()
    (tmp_path / "top_layers.npz").unlink()
    with pytest.raises(RagError, match=r"top_layers.npz is missing.*retrain it with scripts/train_reader.py"):
        Reader.load(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("question, expected", [
    ("江岸签约了哪些项目？", "三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目"),
    ("长江生态环保产业联盟是哪一年成立的？", "2019年"),
    ("長江生態環保產業聯盟目前已匯集多少家成員單位？", "118"),
])
def test_span_head_reads_seed_articles(e5, seed_passages, question, expected):
    reader = Reader.load()
    span = reader.read(Query.of(question), seed_passages, encoder=e5)
    assert span is not None
    assert seed_passages[span.passage].text[span.start:span.end] == span.text
    assert compact(to_simplified(expected)) in compact(to_simplified(span.text))
    assert len(span.text) <= len(expected) + 6


def test_assistant_reads_with_the_span_head_on_an_e5_index(retriever, assistant):
    assert retriever.reader_encoder is retriever.embedder  # the e5-small the head was trained on
    a = assistant.ask("长江生态环保产业联盟是哪一年成立的？")
    assert a.grounded and "2019年" in a.short


def test_no_span_head_without_e5(retriever):
    class Other:
        calibration = None

        def pair_states(self, question, texts, top_layers=None):
            raise AssertionError("not an e5-small: the head must not read its states")

    plain = object.__new__(type(retriever))
    plain.__dict__.update(retriever.__dict__)
    plain.embedder = Other()
    assert plain.reader_encoder is None
    plain.embedder = None  # a keyword-only index
    assert plain.reader_encoder is None
    plain.embedder = retriever.embedder
    plain.config = dataclasses.replace(retriever.config, span_head=False)  # RAG_SPAN_HEAD=0
    assert plain.reader_encoder is None
