"""The optional language model: streaming from an OpenAI-protocol server, checked citations, fallbacks."""
from __future__ import annotations

import pytest

import rag
from rag.answering.assistant import LLM_DOWN_NOTE, LLM_UNCITED_NOTE
from rag.answering.llm import UNSOURCED, ChatModel, build_messages, check_citations

from fake_openai import REPLY, FakeOpenAI, free_port

Q = "江岸签约了哪些项目？"


@pytest.fixture()
def server():
    with FakeOpenAI() as s:
        yield s


def llm_assistant(retriever, url: str, timeout: float = 1.0) -> rag.Assistant:
    config = retriever.config.with_(llm_base_url=url, llm_model="fake", llm_timeout=timeout)
    return rag.Assistant(retriever, config)


def test_no_endpoint_configured_means_extractive(retriever):
    assert ChatModel.from_config(rag.Config()) is None
    assert rag.Assistant(retriever).llm is None
    items = list(rag.Assistant(retriever).stream(Q))
    assert len(items) == 1 and isinstance(items[0], rag.Answer) and items[0].grounded and items[0].note == ""


def test_config_from_env_reads_llm_settings(monkeypatch):
    monkeypatch.setenv("RAG_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("RAG_LLM_TIMEOUT", "2.5")
    model = ChatModel.from_config(rag.Config.from_env())
    assert model.url == "http://127.0.0.1:9/v1/chat/completions" and model.timeout == 2.5


def test_streams_token_by_token_and_cites(retriever, server):
    items = list(llm_assistant(retriever, server.url).stream(Q))
    partials, final = items[:-1], items[-1]
    assert len(partials) >= 5 and all(isinstance(p, str) for p in partials)
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:]))  # each one extends the last
    assert partials[-1] == REPLY
    assert isinstance(final, rag.Answer) and final.grounded and final.note == ""
    assert final.text == REPLY and final.citations[0].doc_id == "000_4627bb9fbf4571c3"
    assert final.highlights[0] and final.highlights[0] in final.citations[0].text


def test_prompt_numbers_the_sources_and_asks_for_citations(retriever, server):
    llm_assistant(retriever, server.url).ask(Q, history=[{"role": "user", "content": "你好"}, {"role": "assistant", "content": "您好"}])
    body = server.requests[-1]
    assert body["stream"] is True and body["model"] == "fake"
    system, *turns, last = body["messages"]
    assert "[1]" in system["content"] and "编号" in system["content"]
    assert [t["content"] for t in turns] == ["你好", "您好"]
    assert "[1] 江岸簽約12家" in last["content"] and "[3]" in last["content"] and last["content"].endswith(Q)


def test_citation_to_a_source_not_given_is_removed(retriever, server):
    server.mode = "bad_cite"
    a = llm_assistant(retriever, server.url).ask(Q)
    assert "[9]" not in a.text and "[1]" in a.text
    assert "总投资超过100亿元" + UNSOURCED in a.text
    assert len(a.citations) == 1 and "已去掉1处" in a.note


def test_reply_without_any_citation_falls_back_to_extractive(retriever, server):
    server.mode = "uncited"
    a = llm_assistant(retriever, server.url).ask(Q)
    assert a.note == LLM_UNCITED_NOTE and "等6个项目签约江岸" in a.text and a.grounded


@pytest.mark.parametrize("mode", ["slow", "garbage", "garbage_json", "error"])
def test_failing_endpoint_gives_extractive_answer_with_note(retriever, server, mode):
    server.mode = mode
    items = list(llm_assistant(retriever, server.url, timeout=0.5).stream(Q))
    final = items[-1]
    assert isinstance(final, rag.Answer) and final.grounded
    assert final.note == LLM_DOWN_NOTE and "等6个项目签约江岸" in final.text and "[1]" in final.text


def test_refused_connection_gives_extractive_answer_with_note(retriever):
    a = llm_assistant(retriever, f"http://127.0.0.1:{free_port()}/v1").ask(Q)
    assert a.grounded and a.note == LLM_DOWN_NOTE


def test_errors_name_the_endpoint_and_setting(server):
    server.mode = "garbage"
    with pytest.raises(rag.RagError, match=r"127\.0\.0\.1.*not an OpenAI chat chunk"):
        list(ChatModel(server.url).stream([{"role": "user", "content": "x"}]))
    with pytest.raises(rag.RagError, match="unreachable.*RAG_LLM_BASE_URL"):
        list(ChatModel(f"http://127.0.0.1:{free_port()}").stream([]))
    server.mode = "slow"
    with pytest.raises(rag.RagError, match="llm_timeout=0.3"):
        list(ChatModel(server.url, timeout=0.3).stream([]))


def test_non_streaming_reply_is_accepted(server):
    server.mode = "plain"
    server_reply = "".join(ChatModel(server.url).stream([{"role": "user", "content": "x"}]))
    assert server_reply == REPLY


def test_no_evidence_declines_without_calling_the_model(retriever, server):
    a = llm_assistant(retriever, server.url).ask("《红楼梦》的作者是谁？")
    assert not a.grounded and server.requests == []


def test_check_citations_renumbers_and_marks():
    c = check_citations("甲[2]。乙。丙[7][1]！", 3)
    assert c.text == "甲[1]。乙" + UNSOURCED + "。丙[2]！"
    assert c.used == [1, 0] and c.removed == 1 and c.unsourced == 1


def test_build_messages_keeps_only_recent_text_turns():
    p = rag.Passage(doc_id="d", title="标题", date="2021-12-03", source="长江日报", text="正文", score=1.0)
    history = [{"role": "user", "content": str(i)} for i in range(10)] + [{"role": "tool", "content": "x"}]
    msgs = build_messages("问题？", [p], history)
    assert [m["content"] for m in msgs[1:-1]] == ["5", "6", "7", "8", "9"]
    assert msgs[-1]["content"].startswith("资料：\n[1] 标题（长江日报 2021-12-03）\n正文")


def test_build_messages_tells_the_model_a_date_without_a_year():
    """An article dated 11月29日 with no year stated: the model is told so, not given no date."""
    p = rag.Passage(doc_id="d", title="标题", date=None, month=11, day=29, source="长江日报", text="正文", score=1.0)
    msgs = build_messages("问题？", [p], None)
    assert "[1] 标题（长江日报 11月29日（未注明年份））" in msgs[-1]["content"]
