"""The public Python API: Retriever.build/load/search and Assistant.ask on the seed corpus."""
from __future__ import annotations

import pytest

import rag
from rag.text import compact


def test_search_returns_passages_with_metadata(retriever):
    ps = retriever.search("江岸签约了哪些项目？", k=5)
    assert 1 <= len(ps) <= 5
    assert all(isinstance(p, rag.Passage) for p in ps)
    top = ps[0]
    assert top.doc_id == "000_4627bb9fbf4571c3"
    # dated 11月29日 without a year: no year as data (date None), month and day as numbers
    assert top.source == "长江日报" and (top.date, top.month, top.day) == (None, 11, 29)
    assert top.label.endswith("（长江日报，11月29日（未注明年份））")
    assert [p.score for p in ps] == sorted((p.score for p in ps), reverse=True)
    assert any("三峽數字科技平臺項目" in p.text for p in ps)


def test_search_shows_each_article_once_unless_asked(retriever):
    ps = retriever.search("江岸签约了哪些项目？", k=3)
    assert len({p.doc_id for p in ps}) == len(ps)
    several = retriever.search("江岸签约了哪些项目？", k=3, per_article=None)
    assert len({p.doc_id for p in several}) < len(several)  # the README's example: chunks of one article
    assert several[0].chunk_id == ps[0].chunk_id
    two = retriever.search("江岸签约了哪些项目？", k=5, per_article=2)
    assert max(sum(p.doc_id == d for p in two) for d in {p.doc_id for p in two}) <= 2
    with pytest.raises(rag.QueryError, match="per_article must be a whole number of at least 1"):
        retriever.search("江岸", per_article=0)


def test_a_date_splits_into_parts_a_program_can_use():
    from rag.records import date_parts, readable_date

    assert date_parts("2021-12-03") == ("2021-12-03", 12, 3)
    assert date_parts("--11-29") == (None, 11, 29)
    assert date_parts("2021") == ("2021", None, None)
    assert date_parts(None) == (None, None, None)
    p = rag.Passage("d", "t", "2021-12-03", "s", "x", 1.0)
    assert (p.date, p.month, p.day) == ("2021-12-03", 12, 3)
    assert p.to_dict()["date"] == "2021-12-03"
    no_year = rag.Passage("d", "t", "--11-29", "s", "x", 1.0).to_dict()
    assert (no_year["date"], no_year["month"], no_year["day"]) == (None, 11, 29)
    assert readable_date(None, 11, 29) == readable_date("--11-29") == "11月29日（未注明年份）"


@pytest.mark.parametrize(
    "query, doc_id",
    [
        ("江岸签约了哪些项目", "000_4627bb9fbf4571c3"),  # Simplified query, Traditional article
        ("江岸簽約了哪些項目", "000_4627bb9fbf4571c3"),  # Traditional query, Traditional article
        ("寶鋼黃石新港二期工程是哪一年開工的", "001_7621561b348b7e5b-01"),  # Traditional query, Simplified article
        ("宝钢黄石新港二期工程是哪一年开工的", "001_7621561b348b7e5b-01"),
    ],
)
def test_cross_script_queries_find_the_article(retriever, query, doc_id):
    assert retriever.search(query, k=1)[0].doc_id == doc_id


def test_ask_answers_with_citation(assistant):
    a = assistant.ask("江岸签约了哪些项目？")
    assert isinstance(a, rag.Answer) and a.grounded
    assert "三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目" in a.text
    assert "[1]" in a.text
    assert a.citations[0].source == "长江日报"
    assert a.citations[0].title.startswith("江岸簽約12家")
    assert len(a.text) <= 220


def test_ask_in_traditional_answers_in_traditional(assistant):
    a = assistant.ask("江岸簽約了哪些項目？")
    assert a.grounded and "三峽數字科技平臺項目" in a.text


def test_follow_up_uses_the_conversation(assistant):
    first = assistant.ask("宜昌市点军区集中开工了几个生态环保项目？")
    history = [{"role": "user", "content": "宜昌市点军区集中开工了几个生态环保项目？"},
               {"role": "assistant", "content": first.text}]
    a = assistant.ask("这些项目计划总投资多少？", history=history)
    assert a.grounded and "76.01亿元" in a.text
    assert a.citations[0].doc_id == "001_7621561b348b7e5b-10"


@pytest.mark.parametrize("question", ["2022年北京冬奥会的吉祥物叫什么名字？", "今天武汉的天气怎么样？", "《红楼梦》的作者是谁？"])
def test_declines_when_articles_hold_no_answer(assistant, question):
    a = assistant.ask(question)
    assert not a.grounded and a.citations == []
    assert "没有找到" in a.text


@pytest.mark.parametrize("bad", ["", "   \n\t ", "\x00\x01\x02"])
def test_empty_queries_are_refused_clearly(retriever, assistant, bad):
    with pytest.raises(rag.QueryError, match="query is empty"):
        retriever.search(bad)
    with pytest.raises(rag.QueryError, match="query is empty"):
        assistant.ask(bad)


def test_very_long_query_still_works(retriever):
    ps = retriever.search("江岸签约项目" * 2000, k=3)
    assert ps and ps[0].doc_id == "000_4627bb9fbf4571c3"


def test_index_round_trip_gives_same_results(seed_index, retriever):
    again = rag.Retriever.load(seed_index)
    q = "三峡集团在宜昌累计投资了多少？"
    assert [p.chunk_id for p in again.search(q)] == [p.chunk_id for p in retriever.search(q)]
    assert again.manifest["counts"] == {"articles": 14, "chunks": len(retriever.chunks)}
    assert again.manifest["embedder"]["name"].startswith("e5-int8")


def test_loading_with_another_embedder_says_how_to_rebuild(seed_index):
    with pytest.raises(rag.IndexMismatchError, match=r"rag build .*--embedder st:some/model"):
        rag.Retriever.load(seed_index, embedder="st:some/model")


def test_missing_index_says_how_to_build(tmp_path):
    with pytest.raises(rag.IndexMissingError, match="rag build"):
        rag.Retriever.load(tmp_path / "nowhere")


def test_must_include_normalisation_matches_both_scripts():
    assert compact("三峽 數字") == compact("三峡数字")


class _FewDense:
    """The seed engine, but the dense side returns only its two best rows (as on a large archive,
    where the dense candidates cover few of the passages the keyword side finds)."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def dense_search(self, vector, k, where=None):
        return self._engine.dense_search(vector, k, where)[:2]


def test_every_hybrid_passage_has_its_cosine_even_outside_the_dense_candidates(retriever):
    # the assistant's decline reads the best passages' cosines: keyword finds the dense side did
    # not return must carry their real cosine, not none (which declined answerable news questions)
    narrow = rag.Retriever(config=retriever.config, embedder=retriever.embedder, articles=retriever.articles,
                           chunks=retriever.chunks, engine=_FewDense(retriever.engine), manifest=retriever.manifest)
    q = "宝钢黄石新港二期工程是哪一年开工的？"
    cosine = {p.chunk_id: p.dense_score for p in retriever.search(q, k=len(retriever.chunks), mode="dense", per_article=None)}
    ps = narrow.search(q, k=5)
    outside = [p for p in ps if p.dense_rank is None]
    assert outside, "the test needs passages the two dense candidates do not cover"
    for p in ps:
        assert p.dense_score == pytest.approx(cosine[p.chunk_id], abs=1e-5)
    assert max(p.dense_score for p in outside) <= min(p.dense_score for p in ps if p.dense_rank is not None) + 1e-6


def test_rag_search_prints_each_article_once_with_dates_a_program_can_parse(seed_index, capsys):
    import json

    from rag.cli import main

    assert main(["search", "--index", str(seed_index), "江岸签约了哪些项目？", "-k", "3", "--json"]) == 0
    ps = json.loads(capsys.readouterr().out)
    assert len({p["doc_id"] for p in ps}) == len(ps) == 3
    assert (ps[0]["date"], ps[0]["month"], ps[0]["day"]) == (None, 11, 29)
    assert "--" not in json.dumps([p["date"] for p in ps])
    assert main(["search", "--index", str(seed_index), "江岸签约了哪些项目？", "-k", "3", "--per-article", "0"]) == 0
    text = capsys.readouterr().out
    assert "长江日报 11月29日（未注明年份）" in text and "--11-29" not in text
