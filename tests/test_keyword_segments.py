"""The segmented keyword index: adding rows writes a small segment, yet scores stay those of
one index over everything; dead rows, merges, files linked between generations."""
from __future__ import annotations

import numpy as np
import pytest

from rag.errors import IndexCorruptError
from rag.engines.keyword_index import KeywordIndex
from rag.engines.keyword_segments import KeywordSegments
from rag.text import tokenize

TEXTS = [
    "武汉长江新区首批项目集中签约，总投资超过两千亿元。",
    "江岸区签约三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目。",
    "宜昌市长江岸线整治全面完工，累计复绿岸线46公里。",
    "九江市建成沿江绿道35公里，岸线绿化率达到95%。",
    "宝钢黄石新港二期工程开工，一期工程已于去年建成投产。",
    "长江生态环保产业联盟第四次理事会在武汉召开。",
    "湖北省发布长江经济带发展规划，推动绿色低碳转型。",
    "黄石新港集装箱吞吐量同比增长18%，港口物流提速。",
    "三峡集团牵头组建长江生态环保产业联盟。",
    "武汉地铁新线路开通，沿江片区出行更加便利。",
]
TOKENS = [tokenize(t) for t in TEXTS]
QUERIES = [tokenize(q) for q in ("江岸签约了哪些项目", "长江岸线绿化", "黄石新港开工", "产业联盟理事会在哪里召开", "武汉")]


def grown(first: int, *batches: int, **limits) -> tuple[KeywordSegments, list[list[str]]]:
    """Build over the first ``first`` texts, then add the next ones batch by batch."""
    ks = KeywordSegments.build(TOKENS[:first], **limits)
    rows = list(TOKENS[:first])

    def tokens_of(positions):
        return [rows[int(p)] for p in positions]

    for n in batches:
        new = TOKENS[len(rows) : len(rows) + n]
        before = list(rows)
        rows.extend(new)
        ks = ks.updated(np.arange(len(before)), new, tokens_of, lambda ps: [before[int(p)] for p in ps])
    return ks, rows


def test_added_segments_score_like_one_index_over_everything():
    ks, rows = grown(6, 2, 2)
    assert len(ks.segments) == 3 and ks.n_docs == len(TEXTS)
    whole = KeywordIndex.build(TOKENS)
    for q in QUERIES:
        np.testing.assert_allclose(ks.scores(q), whole.scores(q), rtol=0.15, atol=1e-4)  # only the length norm differs
        assert set(ks.search(q, 10)[1]) == set(whole.search(q, 10)[1]), q
    for q in QUERIES[:4]:  # a clear best row stays the best
        assert ks.search(q, 1)[1][0] == whole.search(q, 1)[1][0], q
    assert ks.idf("签约") == pytest.approx(float(np.log(1 + (len(TEXTS) + 1) / (whole.df["签约"] + 0.5))))


def test_removed_rows_leave_results_and_frequencies_but_not_their_segment_file():
    ks, rows = grown(10)
    keep = np.array([i for i in range(10) if i != 1])  # the 江岸 sentence goes
    after = ks.updated(keep, [], lambda ps: [rows[int(keep[p])] for p in ps], lambda ps: [rows[int(p)] for p in ps])
    assert after.segments[0].index is ks.segments[0].index  # no rebuild for one dead row
    assert after.n_docs == 9 and "中科水研" not in after.df
    scores, found = after.search(tokenize("中科水研智慧水利水务平台"), 5)
    assert len(found) == 0 or all(keep[f] != 1 for f in found)
    assert set(after.search(tokenize("宜昌岸线复绿"), 1)[1]) == {1}  # row 2 is row 1 now


def test_a_mostly_dead_segment_is_rebuilt_and_many_segments_merge():
    ks, rows = grown(2, 1, 1, 1, 1, 1, max_segments=3)
    assert len(ks.segments) <= 3 and ks.n_docs == 7
    assert sorted(np.concatenate([s.rows for s in ks.segments]).tolist()) == list(range(7))
    keep = np.arange(1, 7)  # row 0 of the 2-row first segment goes: half dead is not more than half
    after = ks.updated(keep, [], lambda ps: [rows[int(keep[p])] for p in ps], lambda ps: [rows[int(p)] for p in ps])
    keep2 = np.arange(1, 6)  # now its last row goes too: the segment is dropped
    again = after.updated(keep2, [], lambda ps: [rows[int(keep[keep2[p]])] for p in ps], lambda ps: [rows[int(keep[p])] for p in ps])
    assert again.n_docs == 5 and all((s.rows >= 0).any() for s in again.segments)


def test_unchanged_segments_are_hard_links_in_the_next_generation(tmp_path):
    ks, rows = grown(8)
    ks.save(tmp_path / "g1")
    loaded = KeywordSegments.load(tmp_path / "g1")
    new = [tokenize(t) for t in TEXTS[8:]]
    grown_ks = loaded.updated(np.arange(8), new, lambda ps: [rows[int(p)] for p in ps], lambda ps: [])
    grown_ks.save(tmp_path / "g2")
    first = KeywordSegments.FIRST
    for f in (tmp_path / "g1" / first).iterdir():
        assert (tmp_path / "g2" / first / f.name).stat().st_ino == f.stat().st_ino
    again = KeywordSegments.load(tmp_path / "g2")
    assert len(again.segments) == 2
    for q in QUERIES:
        np.testing.assert_array_equal(again.scores(q), grown_ks.scores(q))


def test_an_index_written_before_segments_loads_as_one(tmp_path):
    KeywordIndex.build(TOKENS).save(tmp_path)  # the old layout: bm25/ only
    ks = KeywordSegments.load(tmp_path)
    assert len(ks.segments) == 1 and ks.n_docs == len(TEXTS)
    np.testing.assert_array_equal(ks.scores(QUERIES[0]), KeywordIndex.build(TOKENS).scores(QUERIES[0]))


def test_segments_that_do_not_cover_the_rows_are_refused(tmp_path):
    ks, _ = grown(6, 2)
    ks.save(tmp_path)
    name = ks.segments[1].name
    np.save(tmp_path / f"{name}.rows.npy", np.array([0, 1]))  # rows 0 and 1 twice, 6 and 7 never
    with pytest.raises(IndexCorruptError, match="keyword_segments.json: the segments do not cover rows"):
        KeywordSegments.load(tmp_path)
