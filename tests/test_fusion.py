"""Fusion: score fusion lets the surer retriever decide; RRF is kept; each retriever's evidence is kept."""
from __future__ import annotations

import pytest

from rag import Config, ConfigError
from rag.search.fusion import fuse


def ranking(prefix: str, scores: list[float]) -> list[tuple[str, float]]:
    return [(f"{prefix}{i}", s) for i, s in enumerate(scores)]


# dense candidates in a narrow cosine band (unsure) or with a clear winner (sure)
FLAT_DENSE = ranking("d", [0.862 - 0.0002 * i for i in range(50)])
SURE_DENSE = ranking("d", [0.95] + [0.88 - 0.0005 * i for i in range(49)])
# keyword candidates with a clear winner (sure) or several near-equal best (unsure)
SURE_KEYWORD = ranking("k", [30.0] + [8.0 - 0.1 * i for i in range(49)])
FLAT_KEYWORD = ranking("k", [9.0 - 0.01 * i for i in range(50)])


def keys(cands) -> list[str]:
    return [c.key for c in cands]


def test_a_sure_keyword_side_beats_an_unsure_dense_side():
    out = fuse(FLAT_DENSE, SURE_KEYWORD)
    assert out[0].key == "k0"


def test_a_sure_dense_side_beats_an_unsure_keyword_side():
    out = fuse(SURE_DENSE, FLAT_KEYWORD)
    assert out[0].key == "d0"


def test_an_unsure_dense_side_hardly_reorders_the_keyword_ranking():
    out = fuse(FLAT_DENSE, SURE_KEYWORD)
    assert keys(out)[:10] == [k for k, _ in SURE_KEYWORD[:10]]


def test_a_row_both_sides_rank_first_wins():
    dense = [("both", 0.95)] + ranking("d", [0.90 - 0.001 * i for i in range(49)])
    keyword = [("both", 20.0)] + ranking("k", [19.0 - 0.1 * i for i in range(49)])
    out = fuse(dense, keyword)
    assert out[0].key == "both"
    assert (out[0].dense_rank, out[0].keyword_rank) == (0, 0)


def test_one_ranking_alone_keeps_its_order():
    assert keys(fuse(SURE_DENSE, [])) == [k for k, _ in SURE_DENSE]
    assert keys(fuse([], FLAT_KEYWORD)) == [k for k, _ in FLAT_KEYWORD]


def test_evidence_is_kept_and_missing_sides_are_none():
    out = fuse([("a", 0.9), ("b", 0.8)], [("b", 12.0), ("c", 9.0)])
    b = next(c for c in out if c.key == "b")
    assert (b.dense_score, b.dense_rank, b.keyword_score, b.keyword_rank) == (0.8, 1, 12.0, 0)
    c = next(c for c in out if c.key == "c")
    assert c.dense_score is None and c.dense_rank is None and c.keyword_rank == 1


def test_dense_share_zero_is_the_keyword_ranking():
    # rows only the dense side returned tie with the last keyword candidate (the most they can have)
    assert keys(fuse(SURE_DENSE, FLAT_KEYWORD, dense_share=0.0))[:49] == [k for k, _ in FLAT_KEYWORD[:49]]


def test_score_boost_lifts_a_close_second():
    plain = fuse([], [("x", 10.0), ("y", 9.5)])
    boosted = fuse([], [("x", 10.0), ("y", 9.5)], boost=lambda key: key == "y")
    assert keys(plain) == ["x", "y"] and keys(boosted) == ["y", "x"]


# --- method="rrf": the former fusion, unchanged -------------------------------------------------
def test_rrf_with_equal_inputs_keeps_reciprocal_rank_behaviour():
    out = fuse([("a", 0.9), ("b", 0.8)], [("b", 12.0), ("c", 9.0)], method="rrf")
    assert keys(out) == ["b", "a", "c"]
    assert abs(out[0].score - (1 / 62 + 1 / 61)) < 1e-12


def test_rrf_weights_decide_between_the_two_first_places():
    dense_first = fuse([("d", 0.9)], [("k", 10.0)], method="rrf", dense_weight=2.0, keyword_weight=1.0)
    keyword_first = fuse([("d", 0.9)], [("k", 10.0)], method="rrf", dense_weight=1.0, keyword_weight=2.0)
    assert dense_first[0].key == "d" and keyword_first[0].key == "k"


def test_rrf_boost_lifts_by_half_a_first_place():
    boosted = fuse([("x", 0.9), ("y", 0.8)], [], method="rrf", boost=lambda key: key == "y")
    assert keys(boosted) == ["y", "x"]
    assert abs(boosted[0].score - (1 / 62 + 0.5 / 61)) < 1e-12


@pytest.mark.parametrize("method", ["score", "rrf"])
def test_empty_rankings_fuse_to_nothing(method):
    assert fuse([], [], method=method) == []


@pytest.mark.parametrize("changes, message", [
    ({"fusion": "max"}, "fusion must be 'score' or 'rrf'"),
    ({"dense_share": 1.5}, "dense_share must be between 0 and 1"),
    ({"dense_scale": 0}, "dense_scale must be a positive cosine gap"),
])
def test_fusion_settings_are_validated(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config().with_(**changes)


def test_an_article_gets_its_best_dense_and_its_best_keyword_chunk_though_they_differ():
    """Article a: chunk a@0 is keyword's second, a@1 dense's first. Chunk by chunk, b@0 (keyword's
    first, not found by dense) wins; article by article, a has strong evidence from both sides."""
    dense = [("a@1", 0.86), ("c@0", 0.83), ("d@0", 0.80)]
    keyword = [("b@0", 10.0), ("a@0", 9.8), ("c@1", 1.0)]
    by_chunk = fuse(dense, keyword, depth=3)
    assert keys(by_chunk)[:3] == ["b@0", "a@0", "a@1"]
    by_article = fuse(dense, keyword, depth=3, article_of=lambda key: key.split("@")[0])
    # a's best chunk takes the article's score; its other chunk keeps its own, after b's
    assert keys(by_article)[:3] == ["a@0", "b@0", "a@1"]
    w = 0.8 * (0.06 / 0.08) ** 2
    assert by_article[0].score == pytest.approx(w * 0.75 + (1 - w) * 0.98)
    assert by_article[0].dense_score is None and by_article[0].keyword_score == 9.8  # the chunk's own evidence
