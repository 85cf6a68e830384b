"""The Assistant on records alone: tested against a fake retriever, no index and no model."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from rag import Answer, Assistant, Config, Passage, QueryError, Query

WUHAN = Passage(doc_id="wuhan", title="武汉长江新区首批项目签约", date="2023-05-08", source="长江日报",
                text="长江日报讯 5月8日，武汉长江新区举行首批项目集中签约仪式，共签约项目15个，总投资超过300亿元。"
                     "签约项目涵盖生命健康、智能制造和绿色低碳等领域。",
                score=0.03, chunk_id="c1", dense_score=0.93, dense_rank=0, keyword_score=8.0, keyword_rank=0)
YICHANG = Passage(doc_id="yichang", title="宜昌长江岸线复绿工程完工", date="2021-09-30", source="湖北日报",
                  text="宜昌市长江岸线复绿工程近日全面完工，累计复绿岸线46公里，沿江化工企业全部搬迁入园。",
                  score=0.02, chunk_id="c2", dense_score=0.90, dense_rank=1, keyword_score=3.0, keyword_rank=1)


@dataclass
class FakeRetriever:
    """Returns the given passages for every query and records what it was asked."""

    passages: list[Passage]
    config: Config = field(default_factory=Config)
    calibration: str | None = "multilingual-e5-small"
    reader_encoder: object = None  # no token states: the reader ranks on lexical features alone
    calls: list[dict] = field(default_factory=list)

    def search(self, query, k=5, *, sources=None, date_from=None, date_to=None, prefer_year=None, per_article=1):
        assert isinstance(query, Query)  # cleaned once, by the Assistant
        self.calls.append({"query": query.text, "k": k, "sources": sources, "date_from": date_from,
                           "date_to": date_to, "prefer_year": prefer_year})
        return [p for p in self.passages if not sources or p.source in sources][:k]

    def idf(self, token: str) -> float:
        return 1.0

    def near_duplicates(self, a: str, b: str) -> bool:
        return False


def test_answer_is_the_sentence_holding_the_fact_with_its_citation():
    a = Assistant(FakeRetriever([WUHAN, YICHANG])).ask("武汉长江新区首批签约了多少个项目？")
    assert isinstance(a, Answer) and a.grounded
    assert "15个" in a.text and a.text.endswith("[1]")
    assert a.citations[0].doc_id == "wuhan" and a.highlights[0] in WUHAN.text
    assert a.question == "武汉长江新区首批签约了多少个项目？"


def test_retrieval_options_reach_the_retriever():
    fake = FakeRetriever([WUHAN, YICHANG])
    a = Assistant(fake).ask("宜昌累计复绿岸线多少公里？", k=3, sources=["湖北日报"], date_from="2021", date_to="2021-12")
    assert a.grounded and "46公里" in a.text and [p.doc_id for p in a.citations] == ["yichang"]
    call = fake.calls[-1]
    assert (call["sources"], call["date_from"], call["date_to"]) == (["湖北日报"], "2021", "2021-12")
    assert call["k"] >= 3


def test_year_in_the_question_is_passed_as_a_preference():
    fake = FakeRetriever([WUHAN])
    Assistant(fake).ask("2023年武汉长江新区签约了多少项目？")
    assert fake.calls[-1]["prefer_year"] == 2023


def test_declines_when_the_passages_do_not_cover_the_question():
    a = Assistant(FakeRetriever([WUHAN, YICHANG])).ask("《红楼梦》的作者是谁？")
    assert not a.grounded and a.citations == [] and "没有找到" in a.text
    trad = Assistant(FakeRetriever([WUHAN])).ask("《紅樓夢》的作者是誰？")
    assert not trad.grounded and "沒有找到" in trad.text


def test_without_a_calibration_the_dense_signal_is_not_trusted():
    low = Passage(**{**WUHAN.__dict__, "dense_score": 0.1})
    calibrated = Assistant(FakeRetriever([low])).ask("武汉长江新区首批签约了多少个项目？")
    other = Assistant(FakeRetriever([low], calibration=None)).ask("武汉长江新区首批签约了多少个项目？")
    assert not calibrated.grounded  # e5's scale: a cosine of 0.1 is no evidence
    assert other.grounded  # another embedder's scale is unknown: its typical value is used instead


def test_traditional_question_gets_a_traditional_answer():
    a = Assistant(FakeRetriever([YICHANG])).ask("宜昌累計復綠岸線多少公里？")
    assert a.grounded and "復綠" in a.text


@pytest.mark.parametrize("k", [0, -1, "3", True])
def test_bad_k_is_refused(k):
    with pytest.raises(QueryError, match="k must be a whole number"):
        Assistant(FakeRetriever([WUHAN])).ask("武汉签约了多少项目？", k=k)


def test_a_follow_up_is_searched_as_a_standalone_question_and_says_so():
    fake = FakeRetriever([WUHAN, YICHANG])
    history = [{"role": "user", "content": "宝钢黄石新港二期什么时候开工？"}, {"role": "assistant", "content": "2024年[1]"}]
    a = Assistant(fake).ask("那一期呢？", history=history)
    # searched standalone, with the word the articles use for a first phase
    query = fake.calls[-1]["query"]
    assert query.startswith("宝钢黄石新港一期什么时候开工？ ") and "首期" in query.split()
    assert a.question == "宝钢黄石新港一期什么时候开工？"


def test_a_follow_up_is_answered_from_its_topic_or_declined():
    history = [{"role": "user", "content": "武汉长江新区首批签约了多少个项目？"},
               {"role": "assistant", "content": "共签约项目15个[1]"}]
    a = Assistant(FakeRetriever([YICHANG, WUHAN])).ask("那总投资呢？", history=history)
    assert a.grounded and "300亿元" in a.text and a.citations[0].doc_id == "wuhan"
    # the topic's article is not among the passages: an article that merely matches the typed
    # words is no answer to the follow-up
    other = Passage(doc_id="other", title="某市招商", date=None, source="某报",
                    text="某市今年引进项目总投资达到50亿元。", score=0.03)
    a = Assistant(FakeRetriever([other, YICHANG])).ask("那总投资呢？", history=history)
    assert not a.grounded and a.citations == []


def test_an_unrelated_question_after_a_conversation_is_left_alone():
    fake = FakeRetriever([WUHAN, YICHANG])
    history = [{"role": "user", "content": "江岸签约了哪些项目？"}]
    a = Assistant(fake).ask("宜昌累计复绿岸线多少公里？", history=history)
    assert fake.calls[-1]["query"] == "宜昌累计复绿岸线多少公里？" and "46公里" in a.text


def test_short_answer_is_the_span_in_the_question_script_with_its_sentence_leading():
    a = Assistant(FakeRetriever([WUHAN, YICHANG])).ask("宜昌累计复绿岸线多少公里？")
    assert a.short == "46公里" and a.citations[0].doc_id == "yichang"
    assert a.short in a.text.split("[1]")[0] and a.short in a.highlights[0]
    t = Assistant(FakeRetriever([WUHAN, YICHANG])).ask("武漢長江新區首批簽約了多少個項目？")
    assert t.short == "15個" and "簽約" in t.text  # Traditional question, Traditional short answer and text


def test_no_short_answer_when_the_reader_is_unsure_or_the_assistant_declines():
    unsure = Assistant(FakeRetriever([WUHAN, YICHANG]), Config(short_min_confidence=1.0)).ask("宜昌累计复绿岸线多少公里？")
    assert unsure.grounded and unsure.short == "" and "46公里" in unsure.text
    declined = Assistant(FakeRetriever([YICHANG])).ask("北京冬奥会的吉祥物叫什么名字？")
    assert not declined.grounded and declined.short == ""


def test_a_reader_fault_costs_the_short_answer_not_the_answer():
    class Broken:
        def read(self, *a, **k):
            raise ValueError("corrupt weights")

    a = Assistant(FakeRetriever([WUHAN, YICHANG]), reader=Broken()).ask("宜昌累计复绿岸线多少公里？")
    assert a.grounded and a.short == "" and "46公里" in a.text


def test_a_sure_short_answer_stands_in_one_sentence_an_unsure_one_may_get_a_second():
    two = Passage(doc_id="wuhan2", title="武汉长江新区首批项目签约", date="2023-05-08", source="长江日报",
                  text="武汉长江新区首批签约项目共15个。签约仪式由区政府主持，多家银行负责人出席并介绍了首批项目的融资安排。",
                  score=0.03, dense_score=0.93, dense_rank=0, keyword_score=8.0, keyword_rank=0)
    q = "武汉长江新区首批签约了多少个项目？"
    sure = Assistant(FakeRetriever([two]), Config(short_alone_confidence=0.0, second_ratio=0.0)).ask(q)
    unsure = Assistant(FakeRetriever([two]), Config(short_alone_confidence=1.0, second_ratio=0.0)).ask(q)
    assert sure.short == unsure.short == "15个"
    assert sure.text == "武汉长江新区首批签约项目共15个。[1]"
    assert unsure.text.startswith("武汉长江新区首批签约项目共15个。[1]") and "负责人" in unsure.text


class FixedReader:
    """A reader that always points at the same span of WUHAN, with a set confidence."""

    def __init__(self, needle: str, confidence: float):
        self.needle, self.confidence = needle, confidence

    def read(self, question, passages, sentences=None, encoder=None):
        from rag.answering.extractive import sentence_spans
        from rag.answering.reader.reader import Span

        p = next(i for i, x in enumerate(passages) if self.needle in x.text)
        a = passages[p].text.index(self.needle)
        s, e = next((s, e) for s, e in sentence_spans(passages[p].text) if s <= a < e)
        return Span(self.needle, p, a, a + len(self.needle), s, e, self.confidence)


def test_an_unsure_span_keeps_the_extractive_text_and_is_shown_only_where_that_text_shows_it():
    question = "武汉长江新区首批签约了多少个项目？"
    # the default leads from the lowest confidence a short answer is given at; a reader less sure of
    # its sentences is configured with a gap between the two (RAG_SHORT_LEAD_CONFIDENCE)
    config = dataclasses.replace(Config(), short_min_confidence=0.2, short_lead_confidence=0.3)

    def ask(text, confidence):
        return Assistant(FakeRetriever([WUHAN, YICHANG]), config=config, reader=FixedReader(text, confidence)).ask(question)

    plain = ask("15个", 0.0)
    assert plain.short == "" and "15个" in plain.text  # below short_min_confidence: no short answer
    # between short_min_confidence (0.2) and short_lead_confidence (0.3): the same text, and the
    # span is given because the text's first sentence shows it
    unsure = ask("15个", 0.25)
    assert unsure.text == plain.text and unsure.short == "15个"
    # an unsure span in a sentence the text does not show is not given
    elsewhere = ask("绿色低碳", 0.25)
    assert elsewhere.text == plain.text and elsewhere.short == ""
    # a surer span leads the text with its sentence
    sure = ask("绿色低碳", 0.5)
    assert sure.short == "绿色低碳" and "绿色低碳" in sure.highlights[0] and "绿色低碳" in sure.text


def test_words_that_frame_the_question_are_not_missing_evidence():
    # "文中提及…何年" (how DRCD asks) is not in the article: the evidence is judged on 宜昌, 复绿, 工程, 完工
    near = Passage(**{**YICHANG.__dict__, "dense_score": 0.85})
    q = Query.of("文中提及，宜昌复绿工程是何年完工的？")
    assert q.topic_words == ["宜昌", "复绿", "工程", "完工"]
    assert Query.of("何年？").topic_words == ["何年"]  # nothing else left: all content words count
    assert Assistant(FakeRetriever([near])).ask(q.text).grounded
