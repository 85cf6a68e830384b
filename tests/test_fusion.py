"""Fusion: weighted reciprocal rank fusion keeps each retriever's evidence and orders by fused score."""
from __future__ import annotations

from rag.fusion import fuse


def test_a_row_found_by_both_retrievers_beats_rows_found_by_one():
    out = fuse([("a", 0.9), ("b", 0.8)], [("b", 12.0), ("c", 9.0)])
    assert [c.key for c in out] == ["b", "a", "c"]
    b = out[0]
    assert (b.dense_score, b.dense_rank, b.keyword_score, b.keyword_rank) == (0.8, 1, 12.0, 0)
    c = out[2]
    assert c.dense_score is None and c.dense_rank is None and c.keyword_rank == 1


def test_weights_decide_between_the_two_first_places():
    dense_first = fuse([("d", 0.9)], [("k", 10.0)], dense_weight=2.0, keyword_weight=1.0)
    keyword_first = fuse([("d", 0.9)], [("k", 10.0)], dense_weight=1.0, keyword_weight=2.0)
    assert dense_first[0].key == "d" and keyword_first[0].key == "k"


def test_boost_lifts_by_half_a_first_place():
    plain = fuse([("x", 0.9), ("y", 0.8)], [])
    boosted = fuse([("x", 0.9), ("y", 0.8)], [], boost=lambda key: key == "y")
    assert [c.key for c in plain] == ["x", "y"] and [c.key for c in boosted] == ["y", "x"]
    assert abs(boosted[0].score - (1 / 62 + 0.5 / 61)) < 1e-12


def test_empty_rankings_fuse_to_nothing():
    assert fuse([], []) == []
