"""Near-duplicate stories: one passage list folds each story once, whatever the order of its passages."""
from __future__ import annotations

from rag.duplicates import NearDuplicates
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
