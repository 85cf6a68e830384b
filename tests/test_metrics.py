"""The CMRC 2018 span metrics: EM and longest-common-substring F1, after normalisation."""
from __future__ import annotations

import pytest

from rag.eval.metrics import span_em, span_f1, span_normalize


def test_normalisation_ignores_script_width_space_and_punctuation():
    assert span_normalize("  2019年６月， ") == "2019年6月"
    assert span_normalize("長江「生態」") == span_normalize("长江生态")


def test_exact_match_takes_any_gold_answer():
    assert span_em("2019年6月", ["2019年", "2019年6月"]) == 1.0
    assert span_em("2019年6月初", ["2019年6月"]) == 0.0
    assert span_em("", ["x"]) == 0.0


def test_f1_from_the_longest_common_substring():
    # gold "2019年6月" (7 characters) lies whole inside the prediction "在2019年6月" (8)
    assert span_f1("在2019年6月", ["2019年6月"]) == pytest.approx(2 * (7 / 8) * 1.0 / (7 / 8 + 1.0))
    assert span_f1("三峡集团", ["三峡集团", "长江"]) == 1.0
    assert span_f1("无关", ["三峡集团"]) == 0.0
    assert span_f1("", ["三峡集团"]) == 0.0


def test_held_out_split_is_a_stable_quarter_of_the_articles():
    from rag.eval.split import held_out

    ids = [f"DEV_{i}_QUERY" for i in range(2000)]
    share = sum(held_out(i) for i in ids) / len(ids)
    assert 0.22 < share < 0.28
    assert held_out("TRAIN_186") == held_out("TRAIN_186")  # a rule of the id, not of the run
