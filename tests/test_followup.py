"""Follow-up rewriting: elliptical and referring questions made standalone, by rules and by a chat model."""
from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings, strategies as st

import fake_openai
from fake_openai import FakeOpenAI
from rag.answering.followup import REWRITE_PROMPT, rewrite, rewrite_with_llm
from rag.answering.llm import ChatModel


def users(*turns: str) -> list[dict]:
    return [{"role": "user", "content": t} for t in turns]


# (earlier user turns, question, standalone question)
CASES = [
    # the examples of issue 16
    (["宝钢黄石新港二期什么时候开工？"], "那一期呢？", "宝钢黄石新港一期什么时候开工？"),
    (["宜昌市点军区集中开工了几个生态环保项目？"], "这些项目计划总投资多少？", "宜昌市点军区集中开工的生态环保项目计划总投资多少？"),
    (["江岸签约了哪些项目？"], "它们是在什么会议上签约的？", "江岸签约的项目是在什么会议上签约的？"),
    (["江岸区生态环保产业2022年的营收是多少？"], "那总投资呢？", "江岸区生态环保产业2022年的总投资是多少？"),
    # the conversations of seeds_dev.jsonl (seed-turn-0 is the second example above)
    (["长江生态环保产业联盟是谁牵头组建的？"], "目前有多少家成员单位？", "长江生态环保产业联盟目前有多少家成员单位？"),
    # 那X呢: the parallel element, else the attribute asked for, else "<topic>的X是多少"
    (["宝钢黄石新港二期工程是哪一年开工的？"], "那一期呢？", "宝钢黄石新港一期工程是哪一年开工的？"),
    (["江岸区生态环保产业2022年的营收是多少？"], "那2023年呢？", "江岸区生态环保产业2023年的营收是多少？"),
    (["江岸区生态环保产业2022年的营收是多少？"], "那江夏区呢？", "江夏区生态环保产业2022年的营收是多少？"),
    (["三峡集团在宜昌累计投资了多少？"], "在武汉呢？", "三峡集团在武汉累计投资了多少？"),
    (["三峡集团在宜昌累计投资了多少？"], "那总投资呢？", "三峡集团的总投资是多少？"),
    (["宜昌市点军区集中开工了几个生态环保项目？"], "那总投资呢？", "宜昌市点军区集中开工的生态环保项目的总投资是多少？"),
    (["宝钢黄石新港二期什么时候开工？"], "那二期呢？", "宝钢黄石新港二期什么时候开工？"),
    (["襄城区在深圳宝安区务工的人员有多少？"], "在东莞呢？", "襄城区在东莞务工的人员有多少？"),
    (["随州市专用汽车产业的高端车型占比提升到了多少？"], "那新能源车型呢？", "随州市专用汽车产业的新能源车型占比提升到了多少？"),
    (["江岸签约了哪些项目？"], "江夏区呢？", "江夏区签约了哪些项目？"),
    (["广东省江西商会的会长是谁？"], "那副会长呢？", "广东省江西商会的副会长是谁？"),
    # pronouns and demonstratives
    (["广东省江西商会的会长是谁？"], "他是哪里人？", "广东省江西商会的会长是哪里人？"),
    (["长江生态环保产业联盟是谁牵头组建的？"], "该联盟有多少成员？", "长江生态环保产业联盟有多少成员？"),
    (["长江生态环保产业联盟是谁牵头组建的？"], "其成员单位有多少家？", "长江生态环保产业联盟的成员单位有多少家？"),
    (["宜昌市点军区集中开工了几个生态环保项目？"], "该区还有哪些项目？", "宜昌市点军区还有哪些项目？"),
    (["宜昌市点军区集中开工了几个生态环保项目？"], "其中有几个是水环境治理项目？", "宜昌市点军区集中开工的生态环保项目中有几个是水环境治理项目？"),
    (["宝钢黄石新港二期什么时候开工？"], "这个项目的总投资是多少？", "宝钢黄石新港二期的总投资是多少？"),
    (["宜昌2019年推进的磷石膏建材应用项目累计消耗了多少磷石膏？"], "该项目由谁实施？", "宜昌2019年推进的磷石膏建材应用项目由谁实施？"),
    (["江阴北战战略制定了多少项重点任务？"], "这些任务包括哪些？", "江阴北战战略制定的重点任务包括哪些？"),
    (["哪些单位与江岸区政府签订了战略合作协议？"], "它们签约了哪些项目？", "与江岸区政府签订了战略合作协议的单位签约了哪些项目？"),
    (["华东师范大学的哪位教授在座谈会上建言献策？"], "他提出了什么建议？", "在座谈会上建言献策的华东师范大学的教授提出了什么建议？"),
    (["宝钢黄石新港二期什么时候开工？"], "这是哪一年的事？", "宝钢黄石新港二期是哪一年的事？"),
    (["江岸签约了哪些项目？"], "那么它们的总投资呢？", "江岸签约的项目的总投资呢？"),
    (["江岸签约了哪些项目？"], "这样的项目有几个？", "这样的项目有几个？"),  # 这样 is not a reference
    # elided subject
    (["宝钢黄石新港二期什么时候开工？"], "什么时候建成？", "宝钢黄石新港二期什么时候建成？"),
    (["宝钢黄石新港二期什么时候开工？"], "总投资多少？", "宝钢黄石新港二期的总投资多少？"),
    (["江岸区生态环保产业2022年的营收是多少？"], "2021年的营收是多少？", "江岸区生态环保产业2021年的营收是多少？"),
    # a chain: the earlier follow-up is made standalone first
    (["宝钢黄石新港二期什么时候开工？", "那一期呢？"], "那三期呢？", "宝钢黄石新港三期什么时候开工？"),
    # Traditional script in, Traditional script out (and the user's own characters: 簽, not opencc's 籤)
    (["江岸簽約了哪些項目？"], "它們是在什麼會議上簽約的？", "江岸簽約的項目是在什麼會議上簽約的？"),
    (["宜昌市點軍區集中開工了幾個生態環保項目？"], "這些項目計劃總投資多少？", "宜昌市點軍區集中開工的生態環保項目計劃總投資多少？"),
    (["寶鋼黃石新港二期工程是哪一年開工的？"], "那一期呢？", "寶鋼黃石新港一期工程是哪一年開工的？"),
    (["長江生態環保產業聯盟是誰牽頭組建的？"], "目前有多少家成員單位？", "長江生態環保產業聯盟目前有多少家成員單位？"),
    # the script of the question, not of the history
    (["寶鋼黃石新港二期什麼時候開工？"], "它的总投资是多少？", "宝钢黄石新港二期的总投资是多少？"),
]


@pytest.mark.parametrize("turns, question, expected", CASES, ids=[c[1] for c in CASES])
def test_rewrites_follow_up_into_standalone_question(turns, question, expected):
    assert rewrite(question, users(*turns)) == expected


# the standalone questions of seeds_dev.jsonl: each names its own subject
STANDALONE = [
    "江岸签约了哪些项目？", "长江生态环保产业联盟是什么时候、由谁牵头组建的？", "江岸区生态环保产业2022年的营收是多少？",
    "哪些单位与江岸区政府签订了战略合作协议？", "联盟框架下已经累计落地了多少个项目？", "宝钢黄石新港首期工程是哪一年全面建成投产的？",
    "红安经济开发区2023年新签约了多少个亿元以上项目？", "高校知识产权运营平台汇聚了全国多少所高校的创新资源？",
    "襄城区在深圳宝安区务工的人员有多少？", "宜昌2019年推进的磷石膏建材应用项目累计消耗了多少磷石膏？", "三峡集团在宜昌累计投资了多少？",
    "湖北省2022年股权融资规模同比增长了多少？", "随州市专用汽车产业的高端车型占比提升到了多少？", "三峡集团每年用于长江流域大保护的投资有多少？",
    "广东省江西商会的会长是谁？", "江阴北战战略制定了多少项重点任务？", "江阴全市有多少家工业企业上图入库？",
    "参加长江经济带座谈会的企业代表有多少家？", "华东师范大学的哪位教授在座谈会上建言献策？", "江岸簽約了哪些項目？",
    "寶鋼黃石新港二期工程是哪一年開工的？", "2022年北京冬奥会的吉祥物叫什么名字？", "今天武汉的天气怎么样？", "《红楼梦》的作者是谁？",
]


@pytest.mark.parametrize("previous", ["江岸签约了哪些项目？", "宝钢黄石新港二期什么时候开工？", "长江生态环保产业联盟是谁牵头组建的？"])
def test_unrelated_standalone_question_is_left_as_it_is(previous):
    assert rewrite("宝钢黄石新港二期什么时候开工？", users("江岸签约了哪些项目？")) == "宝钢黄石新港二期什么时候开工？"
    changed = {q: rewrite(q, users(previous)) for q in STANDALONE}
    assert {q: out for q, out in changed.items() if out != q} == {}


def test_without_earlier_user_turns_the_question_is_returned_unchanged():
    assert rewrite("那一期呢？", []) == "那一期呢？"
    assert rewrite("那一期呢？", None) == "那一期呢？"
    assert rewrite("这些项目计划总投资多少？", [{"role": "assistant", "content": "您好"}]) == "这些项目计划总投资多少？"
    assert rewrite("那一期呢？", [{"role": "user", "content": "  "}, {"role": "user"}, "bad"]) == "那一期呢？"
    assert rewrite("", users("宝钢黄石新港二期什么时候开工？")) == ""
    assert rewrite("你好", users("你好")) == "你好"  # no question word in the previous turn: nothing to refer to


def test_only_user_turns_are_used():
    history = [
        {"role": "user", "content": "江岸签约了哪些项目？"},
        {"role": "assistant", "content": "三峡数字科技平台项目、中科水研智慧水利水务平台项目等6个项目签约江岸[1]。"},
    ]
    assert rewrite("它们是在什么会议上签约的？", history) == "江岸签约的项目是在什么会议上签约的？"


def test_the_last_user_turn_is_the_context():
    history = users("江岸签约了哪些项目？", "宝钢黄石新港二期什么时候开工？")
    assert rewrite("那一期呢？", history) == "宝钢黄石新港一期什么时候开工？"


def test_rewrite_logs_and_never_prints(caplog, capsys):
    with caplog.at_level(logging.DEBUG, logger="rag.answering.followup"):
        rewrite("那一期呢？", users("宝钢黄石新港二期什么时候开工？"))
    assert "宝钢黄石新港一期什么时候开工" in caplog.text
    assert capsys.readouterr() == ("", "")


@settings(max_examples=150, deadline=None)
@given(
    st.text(st.sampled_from("那这些它们其该他的呢吗？?，2022年一二期区市宝钢江岸签约项目投资多少几个哪些什么时候谁是有了在 \n"), max_size=25),
    st.lists(st.text(st.sampled_from("宝钢黄石新港二期什么时候开工？江岸签约了哪些项目几个多少的是谁那呢"), max_size=25), max_size=3),
)
def test_rewrite_never_fails_and_returns_a_string(question, turns):
    assert isinstance(rewrite(question, users(*turns)), str)


# --- with a language model ----------------------------------------------------------------------------
@pytest.fixture()
def server():
    with FakeOpenAI(delay=0) as s:
        yield s


def model(server) -> ChatModel:
    return ChatModel(server.url, "fake", timeout=15.0)


def test_llm_rewrite_is_used_when_valid(server, monkeypatch):
    monkeypatch.setattr(fake_openai, "REPLY", "江岸签约的这些项目是在哪次会议上签约的？")
    out = rewrite_with_llm("它们是在什么会议上签约的？", users("江岸签约了哪些项目？"), model(server))
    assert out == "江岸签约的这些项目是在哪次会议上签约的？"
    system, user = server.requests[-1]["messages"]
    assert system == {"role": "system", "content": REWRITE_PROMPT}
    assert "用户：江岸签约了哪些项目？" in user["content"] and user["content"].endswith("它们是在什么会议上签约的？")


def test_llm_may_leave_a_standalone_question_as_it_is(server, monkeypatch):
    monkeypatch.setattr(fake_openai, "REPLY", "宝钢黄石新港二期什么时候开工？")
    out = rewrite_with_llm("宝钢黄石新港二期什么时候开工？", users("江岸签约了哪些项目？"), model(server))
    assert out == "宝钢黄石新港二期什么时候开工？" and len(server.requests) == 1


def test_llm_reply_label_and_quotes_are_removed(server, monkeypatch):
    monkeypatch.setattr(fake_openai, "REPLY", "改写后的问题：“宝钢黄石新港一期什么时候开工？”")
    assert rewrite_with_llm("那一期呢？", users("宝钢黄石新港二期什么时候开工？"), model(server)) == "宝钢黄石新港一期什么时候开工？"


def test_llm_keeps_traditional_script(server, monkeypatch):
    monkeypatch.setattr(fake_openai, "REPLY", "江岸簽約的項目是在什麼會議上簽約的？")
    out = rewrite_with_llm("它們是在什麼會議上簽約的？", users("江岸簽約了哪些項目？"), model(server))
    assert out == "江岸簽約的項目是在什麼會議上簽約的？"


BAD_REPLIES = {
    "an answer, not a question": fake_openai.REPLY,
    "empty": "  ",
    "several lines": "宝钢黄石新港一期什么时候开工？\n这是改写后的问题。",
    "absurdly long": "宝钢黄石新港一期" + "的工程" * 60 + "什么时候开工？",
    "wrong script": "寶鋼黃石新港一期什麼時候開工？",
    "an echo of the elliptical question": "那一期呢？",
}


@pytest.mark.parametrize("reply", BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_bad_llm_reply_falls_back_to_rules(server, monkeypatch, reply, caplog):
    monkeypatch.setattr(fake_openai, "REPLY", reply)
    with caplog.at_level(logging.WARNING, logger="rag.answering.followup"):
        out = rewrite_with_llm("那一期呢？", users("宝钢黄石新港二期什么时候开工？"), model(server))
    assert out == "宝钢黄石新港一期什么时候开工？"
    assert len(server.requests) == 1 and "unusable" in caplog.text


@pytest.mark.parametrize("mode", ["error", "garbage", "garbage_json"])
def test_failing_llm_falls_back_to_rules(server, mode, caplog):
    server.mode = mode
    with caplog.at_level(logging.WARNING, logger="rag.answering.followup"):
        out = rewrite_with_llm("这些项目计划总投资多少？", users("宜昌市点军区集中开工了几个生态环保项目？"), model(server))
    assert out == "宜昌市点军区集中开工的生态环保项目计划总投资多少？"
    assert "failed" in caplog.text


def test_unreachable_llm_falls_back_to_rules():
    from fake_openai import free_port

    dead = ChatModel(f"http://127.0.0.1:{free_port()}/v1", timeout=0.5)
    assert rewrite_with_llm("那一期呢？", users("宝钢黄石新港二期什么时候开工？"), dead) == "宝钢黄石新港一期什么时候开工？"


def test_llm_is_not_asked_without_earlier_user_turns(server):
    assert rewrite_with_llm("那一期呢？", [], model(server)) == "那一期呢？"
    assert server.requests == []


def test_no_model_configured_means_rules():
    assert rewrite_with_llm("那一期呢？", users("宝钢黄石新港二期什么时候开工？"), None) == "宝钢黄石新港一期什么时候开工？"
