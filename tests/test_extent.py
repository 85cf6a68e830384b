"""The reader's extent stage: which longer spans it weighs, its question model, and its file."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from rag.answering.reader.extent import (EXTENT_FEATURES, Extent, LongAnswerOdds, extent_features,
                                         extent_options)
from rag.answering.reader.features import NF
from rag.answering.reader.neural import NEURAL_FEATURES
from rag.answering.reader.reader import MODEL_DIR, Reader
from rag.errors import RagError
from rag.query import Query
from rag.trees import Trees

TEXT = ("8月21日上午10时，丹江口水库开启3个深孔闸门泄洪。此次泄洪是因为汉江上游连续出现强降雨，丹江口水库入库流量快速增加。"
        "长江委将统筹防洪与供水。")
REASON = TEXT.index("汉江上游")
CLAUSE_END = TEXT.index("，丹江口水库入库")
SENTENCE = (TEXT.index("此次"), TEXT.index("长江委"))


def _candidates():
    """The best span 汉江上游连续出现强降雨, its clause from 因为, the rest of its sentence, a span of the
    sentence that does not hold it, and one of another sentence."""
    spans = np.array([
        [REASON, CLAUSE_END],  # 汉江上游连续出现强降雨 (best)
        [TEXT.index("因为"), CLAUSE_END],  # 因为汉江上游连续出现强降雨
        [REASON, SENTENCE[1] - 1],  # to the sentence's end
        [TEXT.index("丹江口水库入库"), SENTENCE[1] - 1],  # does not hold the best span
        [TEXT.index("3个"), TEXT.index("3个") + 2],  # another sentence
    ])
    sentence = np.array([SENTENCE] * 4 + [(0, SENTENCE[0])])
    passage = np.zeros(5, np.int64)
    scores = np.array([3.0, 1.0, 2.0, 2.5, 0.5])
    return passage, sentence, spans, scores


def _rows():
    """The candidates' reader features and span head scores (start, end: the best span's are higher)."""
    neural = np.zeros((5, len(NEURAL_FEATURES)), np.float32)
    neural[:, NEURAL_FEATURES.index("nn_start")] = [2.0, 1.0, 2.0, 0.0, 0.0]
    neural[:, NEURAL_FEATURES.index("nn_end")] = [3.0, 3.0, 1.5, 1.5, 0.0]
    return np.zeros((5, NF), np.float32), neural


def test_the_options_are_the_best_span_and_the_longer_spans_of_its_sentence_holding_it():
    passage, sentence, spans, scores = _candidates()
    assert extent_options([TEXT], passage, sentence, spans, scores, 0).tolist() == [0, 1, 2]
    scores[2] = -np.inf  # a candidate the first trees pruned is no option
    assert extent_options([TEXT], passage, sentence, spans, scores, 0).tolist() == [0, 1]


def test_a_longer_span_adding_only_a_copula_or_a_function_word_is_no_option():
    text = "“汛限水位”是指水库在汛期允许兴利蓄水的上限水位。"
    a, b = text.index("水库在"), text.index("。")
    spans = np.array([[a, b], [a - 1, b], [a - 2, b], [0, b]])
    options = extent_options([text], np.zeros(4, np.int64), np.array([[0, len(text)]] * 4), spans,
                             np.array([2.0, 1.0, 1.0, 0.5]), 0)
    assert [text[x:y] for x, y in spans[options]] == ["水库在汛期允许兴利蓄水的上限水位", "“汛限水位”是指水库在汛期允许兴利蓄水的上限水位"]
    text = "为进一步提升资源环境司法审判在长江大保护生态修复中的成效，双方签订协议。"
    a, b = text.index("进一步"), text.index("在长江")
    spans = np.array([[a, b], [a, b + 1], [a - 1, b + 1], [a, text.index("，")]])
    options = extent_options([text], np.zeros(4, np.int64), np.array([[0, len(text)]] * 4), spans,
                             np.array([2.0, 1.0, 1.0, 0.5]), 0)
    assert [text[x:y] for x, y in spans[options]] == ["进一步提升资源环境司法审判", "进一步提升资源环境司法审判在长江大保护生态修复中的成效"]


def test_the_features_say_how_each_option_extends_the_best_span():
    passage, sentence, spans, scores = _candidates()
    q = Query.of("丹江口水库为什么开闸泄洪？")
    X = extent_features(0.7, q.asked.kind, q.text, [TEXT], passage, sentence, spans, scores, np.array([0, 1, 2]),
                        *_rows())
    f = {n: X[:, i].tolist() for i, n in enumerate(EXTENT_FEATURES)}
    assert f["is_best"] == [1, 0, 0] and f["p_long"] == pytest.approx([0.7] * 3)
    assert f["left"] == [0, 2, 0] and f["right"][0] == 0 and f["right"][2] > 0
    assert f["to_sentence_end"] == [0, 0, 1]  # the sentence's closing 。 does not count
    assert f["reason_cue"] == [0, 1, 0]  # 因为 is in what the option adds
    assert f["score_gap"] == [0.0, -2.0, -1.0] and f["rank"] == [0, 3, 2]
    assert f["nn_start_gain"] == [0.0, -1.0, 0.0] and f["nn_end_gain"] == [0.0, 0.0, -1.5]


def _odds() -> LongAnswerOdds:
    return LongAnswerOdds(["为", "为什", "为什么", "谁"], np.array([1.0, 1.5, 2.0, 1.2]), np.array([0.5, 1.0, 2.0, -3.0]), -1.0)


def test_the_question_model_reads_the_question_in_simplified_script():
    odds = _odds()
    why, who = odds.probability("为什么开闸泄洪？"), odds.probability("局长是谁？")
    assert why > 0.5 > who
    assert odds.probability("為什麼開閘洩洪？") == pytest.approx(why)
    assert 0.0 < odds.probability("") < 0.5  # no known gram: the intercept alone


def test_the_stage_is_saved_beside_the_reader_and_read_back(tmp_path):
    folder = tmp_path / "reader"
    shutil.copytree(MODEL_DIR, folder)
    (folder / "extent.npz").unlink(missing_ok=True)
    assert Reader.load(folder).extent is None  # without the file the reader keeps its best span
    # one stump: prefer an option reaching the sentence's end
    col = EXTENT_FEATURES.index("to_sentence_end")
    stump = Trees([col, -1, -1], [0.5, 0, 0], [1, 1, 2], [2, 1, 2], [0.0, -0.1, 0.2], [0], 1)
    Extent(_odds(), stump, margin=0.05).save(folder)
    loaded = Reader.load(folder).extent
    assert loaded is not None and loaded.odds.probability("为什么？") == pytest.approx(_odds().probability("为什么？"))
    passage, sentence, spans, scores = _candidates()
    why = Query.of("丹江口水库为什么开闸泄洪？")
    chosen = loaded.choose(why, [TEXT], passage, sentence, spans, scores, 0, *_rows())
    assert TEXT[spans[chosen][0]:spans[chosen][1]] == "汉江上游连续出现强降雨，丹江口水库入库流量快速增加"
    assert Extent(_odds(), stump, margin=0.3).choose(why, [TEXT], passage, sentence, spans, scores, 0, *_rows()) == 0
    (folder / "extent.npz").write_bytes(b"not a numpy file")
    with pytest.raises(RagError, match="extent"):
        Reader.load(folder)
