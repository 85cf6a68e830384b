"""Which story: every answer names the story it comes from, and a vague question that several
stories answer differently names the others in one cited line, in Python, REST and the chat
(three short news articles, hashing embedder, no model)."""
from __future__ import annotations

import re

import pytest

import rag
from rag.serving.web.render import answer_markdown

from conftest import TEST_DATA

VAGUE = "保险公司已支付了多少赔款？"  # both typhoon stories answer it, differently


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stories-index")
    return rag.Assistant(rag.Retriever.build(TEST_DATA / "stories", folder, embedder="hash"))


def test_every_answer_names_its_story(assistant):
    a = assistant.ask("早稻收获进度如何？")
    assert a.grounded and a.story == "《湖北早稻收获进度过半》（湖北日报，2023-07-20）"
    assert a.others == [] and "另见" not in a.text
    assert a.to_dict()["story"] == a.story


def test_a_vague_question_names_the_other_stories_in_one_cited_line(assistant):
    a = assistant.ask(VAGUE)
    assert a.grounded and a.short in ("3.2亿元", "0.6亿元")
    first, *rest = a.text.split("\n")
    (line,) = [x for x in rest if x.startswith("另见：")]
    other = "0.6亿元" if a.short == "3.2亿元" else "3.2亿元"
    (n,) = a.others
    assert a.citations[n - 1].doc_id != a.citations[0].doc_id and other in a.citations[n - 1].text
    assert line == f"另见：{a.citations[n - 1].label}：{other}[{n}]"  # the other story, with what it says
    assert other in a.highlights[n - 1]  # and the sentence that says it, highlighted in its source
    # every citation number in the text maps to a source, the other story's included
    assert sorted({int(x) for x in re.findall(r"\[(\d+)\]", a.text)}) == list(range(1, len(a.citations) + 1))
    assert a.to_dict()["others"] == [n]
    html = answer_markdown(a)
    assert a.story in html.replace("&quot;", '"') and "另见：" in html


def test_a_question_naming_its_story_gets_that_story_alone(assistant):
    a = assistant.ask("台风“卡努”造成了多少直接经济损失？")
    assert a.short == "2.1亿元" and a.story.startswith("《台风“卡努”") and a.others == []
    # a month in the question: the story dated in another month is not offered as another answer
    b = assistant.ask("7月的台风造成了多少直接经济损失？")
    assert b.short == "14.6亿元" and b.others == []


def test_other_stories_can_be_turned_off(assistant):
    quiet = rag.Assistant(assistant.retriever, config=assistant.config.with_(other_stories=0))
    a = quiet.ask(VAGUE)
    assert a.grounded and a.others == [] and "另见" not in a.text


def test_dates_without_a_year_read_as_such():
    p = rag.Passage("x", "标题", "--11-29", "新华社", "正文", 1.0)
    assert p.label == "《标题》（新华社，11月29日（未注明年份））"
    assert rag.Passage("y", "标题", None, None, "正文", 1.0).label == "《标题》"


def test_rag_ask_prints_the_short_answer_and_its_story_first(tmp_path, capsys):
    from rag.cli import main

    rag.Retriever.build(TEST_DATA / "stories", tmp_path / "index", embedder="hash")
    assert main(["ask", "--index", str(tmp_path / "index"), "台风“卡努”造成了多少直接经济损失？"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2.1亿元" and lines[1] == "出自 《台风“卡努”影响辽宁 多部门全力应对》（辽宁日报，2023-08-11）"
