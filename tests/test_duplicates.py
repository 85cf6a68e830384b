"""Near-duplicate stories: one passage list folds each story once, whatever the order of its passages."""
from __future__ import annotations

from rag.search.duplicates import NearDuplicates
from rag.records import Article, Passage

STORY = "武汉长江新区首批项目集中签约，总投资超过两千亿元，涉及数字经济、先进制造和绿色低碳等领域。"
ARTICLES = {
    "a": Article(id="a", title="", text=STORY, source="长江日报"),
    "b": Article(id="b", title="", text=STORY + "记者报道。", source="湖北日报"),
    "c": Article(id="c", title="", text="九江市建成沿江绿道35公里，岸线绿化率达到95%。", source="九江日报"),
    "d": Article(id="d", title="", text=STORY, source=None),
}


def _p(doc: str, start: int) -> Passage:
    a = ARTICLES[doc]
    return Passage(doc_id=doc, title="", date=None, source=a.source, text=a.text, score=0.0, start=start)


def test_each_story_once_with_the_other_outlets_listed_on_its_best_passage():
    nd = NearDuplicates(ARTICLES)
    folded = nd.fold([_p("a", 0), _p("b", 0), _p("c", 0), _p("a", 50), _p("d", 0), _p("b", 50)])
    assert [(p.doc_id, p.start) for p in folded] == [("a", 0), ("c", 0), ("a", 50)]
    assert folded[0].also_in == ("湖北日报", "d")  # an outlet once; an article without one by its id
    assert folded[0].same_story == ("b", "d") and folded[2].also_in == folded[2].same_story == ()
    assert nd.same("a", "b") and not nd.same("a", "c")


WIRE = "台风卡努8月4日上午在浙江南部近海海面转向东偏北方向移动，7日夜间在日本西南部海面转向北偏西方向移动，预计将影响山东半岛。"
SHARED = {
    # two outlets run the same wire copy, each with its own lead and other news around it: the
    # articles are not near-identical, but the passage of the wire text is shown once
    "e": Article(id="e", title="", text="齐鲁网消息。" + WIRE + "本地气象台提醒市民注意防范大风。" * 3, source="齐鲁网"),
    "f": Article(id="f", title="", text="据新华社电，" + WIRE + "另外，上海今天最高气温达到三十七度。" * 4, source="新民晚报"),
}


def _wire(doc: str, text: str, start: int) -> Passage:
    return Passage(doc_id=doc, title="", date=None, source=SHARED[doc].source, text=text, score=0.0, start=start)


def test_a_passage_repeating_another_articles_passage_is_shown_once():
    nd = NearDuplicates(SHARED)
    assert not nd.same("e", "f")
    e_text, f_text = SHARED["e"].text, SHARED["f"].text
    folded = nd.fold([
        _wire("e", e_text[: len(WIRE) + 6], 0),
        _wire("f", f_text[: len(WIRE) + 5], 0),  # the wire copy again, another lead: folded
        _wire("f", f_text[len(WIRE) + 5:], 70),  # what only the second outlet says: kept
    ])
    assert [(p.doc_id, p.start) for p in folded] == [("e", 0), ("f", 70)]
    assert folded[0].also_in == ("新民晚报",) and folded[0].same_story == ("f",)


def test_a_longer_passage_that_adds_to_a_shown_one_is_kept():
    nd = NearDuplicates(SHARED)
    f_text = SHARED["f"].text
    folded = nd.fold([_wire("e", WIRE, 6), _wire("f", f_text[: len(WIRE) + 40], 0)])
    assert [p.doc_id for p in folded] == ["e", "f"] and folded[0].also_in == ()


def test_the_articles_remembered_are_bounded_and_verdicts_survive_forgetting(monkeypatch):
    import rag.search.duplicates as duplicates

    monkeypatch.setattr(duplicates, "ARTICLES_REMEMBERED", 2)
    nd = NearDuplicates(ARTICLES)
    assert nd.same("a", "b") and not nd.same("a", "c") and nd.same("b", "d")
    assert len(nd._grams) == 2  # a long-running app over a large archive does not grow without end
    nd._verdicts.clear()
    assert nd.same("a", "b") and not nd.same("c", "d")  # recomputed after being forgotten
