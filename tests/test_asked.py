"""Question analysis (rag.asked, Query.asked): what a question asks for, read once for every stage."""
from __future__ import annotations

import pytest

from rag.answering.extractive import list_items
from rag.query import Query


@pytest.mark.parametrize("question, kind, attribute", [
    ("宝钢黄石新港二期总投资是多少？", "number", "总投资"),
    ("宜昌市点军区集中开工的生态环保项目的总投资是多少？", "number", "总投资"),
    ("企业贷款加权平均利率是多少？", "number", "利率"),
    ("该集团的董事长是谁？", "person", "董事长"),
    ("长江生态环保产业联盟是哪一年成立的？", "time", ""),  # the subject is no attribute
    ("有多少名运动员前往成都？", "number", ""),  # the counted noun follows: nothing asked of a subject
    ("二十大召开的时间是多少？", "number", ""),  # too general to be missing from an answer
    ("江岸签约了哪些项目？", "list", ""),
    ("为什么推迟选举新总理？", "reason", ""),
])
def test_kind_and_attribute(question, kind, attribute):
    asked = Query.of(question).asked
    assert (asked.kind, asked.attribute) == (kind, attribute)


def test_unit_item_count_and_names():
    assert Query.of("目前有多少家成员单位？").asked.unit == "家"
    assert Query.of("江岸签约了哪些项目？").asked.item == "项目"
    assert Query.of("南粤赣商提出了哪四条具体建议？").asked.count == 4
    assert Query.of("「三村工程」是指哪三個方面？").asked.count == 3
    assert Query.of("「三村工程」是指哪三個方面？").asked.names == ("三村工程",)
    assert Query.of("江岸签约了哪些项目？").asked.count == 0


def test_sentence_selection_flags_stay_what_they_were():
    """Sentence selection's wants: a number for 多少 and 规模, a time for 日期, a place for 位于."""
    assert Query.of("产业规模有多大？").asked.number
    assert Query.of("开工日期？").asked.time
    assert Query.of("项目位于哪个城市？").asked.place
    assert Query.of("在什么活动上签约？").asked.event
    assert Query.of("滕堂伟是谁？").asked.definition


def test_list_items_after_a_colon():
    text = ("提出了四条具体建议：\n——在井冈山成立学院。重点围绕三个方面。\n——在南昌打造产业园区。当前，央企加快布局。\n"
            "——在吉安打造装备园区。\n——在赣州建设创新园区。\n曾建宁表示……")
    start = text.index("：") + 1
    items, end = list_items(text, start, 4)
    assert items == ["在井冈山成立学院", "在南昌打造产业园区", "在吉安打造装备园区", "在赣州建设创新园区"]
    assert text[:end].endswith("在赣州建设创新园区。")
    assert list_items(text, start, 2)[0] == items[:2]
    assert list_items("建议如下：江西应当加快发展。", 5, 4) == ([], 5)  # no list marks: no list
    assert list_items("措施：一是降低经手费。二是降低佣金。", 3, 8)[0] == ["降低经手费", "降低佣金"]
