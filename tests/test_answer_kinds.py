"""Each kind of answer on one seed-like news article (tests/data/kinds): a manner, a definition, a
person, an amount with its unit, a count, a list, and an amount stated as a rate. Built with the
default embedder, as users get it (issue 26)."""
from __future__ import annotations

import pytest

import rag
from rag.text import compact

from conftest import TEST_DATA

pytestmark = pytest.mark.slow  # the e5 index and the reader's span head


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kinds-index")
    return rag.Assistant(rag.Retriever.build(TEST_DATA / "kinds", folder))


@pytest.mark.parametrize("question, short", [
    ("长江委水旱灾害防御局局长是谁？", "邵骏"),  # a person: the name whole
    ("丹江口水库水位是多少？", "159.8米"),  # an amount with its unit
    ("丹江口水库开启了几个深孔闸门？", "3个"),  # a count in the asked unit
    ("丹江口水库的出库流量是多少？", "每秒5800立方米"),  # the asked attribute's rate, not the 水位 before it
    ("汛限水位是指什么？", "水库在汛期允许兴利蓄水的上限水位"),  # a definition
])
def test_the_short_answer_is_what_is_asked_whole(assistant, question, short):
    a = assistant.ask(question)
    assert a.grounded and a.short == short, (a.short, a.text)
    assert short in a.citations[0].text and "湖北日报" in a.story


def test_a_list_is_given_with_every_item(assistant):
    a = assistant.ask("长江委通过哪些方式统筹防洪与供水？")
    assert all(item in a.short for item in ("滚动预报", "逐时调度", "加密监测")), a.short


def test_a_question_of_manner_is_answered_with_the_whole_clause(assistant):
    a = assistant.ask("长江委将如何统筹防洪与供水？")
    assert "滚动预报、逐时调度、加密监测" in a.short and "统筹上下游防洪与南水北调中线供水" in compact(a.text), a.text


def test_a_definition_asked_in_traditional_script_is_answered_in_it(assistant):
    a = assistant.ask("什麼是汛限水位？")
    # the definition whole (with its second clause or without), in the question's script, never cut
    # or led by a bare copula ("指水庫…")
    assert "水庫在汛期允許興利蓄水的上限水位" in a.short and not a.short.startswith("指"), (a.short, a.text)
    assert compact(a.short) in compact(a.text) and "水库" not in a.short, (a.short, a.text)
