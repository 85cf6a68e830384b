"""The in-process GGUF backend: settings, errors, what the model is asked to do, the time budget; one real model (slow)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import rag
from rag.answering import local_llm
from rag.answering.llm import ChatModel
from rag.answering.local_llm import INSTALL_HINT, LocalModel
from rag.errors import ConfigError, LLMError

Q = "江岸签约了哪些项目？"


class FakeModel:
    """Stands in for LocalModel: records the messages, replies with ``reply`` (or raises it)."""

    default_use = "short"

    def __init__(self, reply: str | Exception) -> None:
        self.reply = reply
        self.seen: list[list[dict]] = []

    def stream(self, messages):
        self.seen.append(messages)
        if isinstance(self.reply, Exception):
            raise self.reply
        yield from self.reply


def fake_gguf(tmp_path: Path) -> Path:
    p = tmp_path / "m.gguf"
    p.write_bytes(b"GGUF" + b"\0" * 60)
    return p


# --- settings and errors --------------------------------------------------------------------------

def test_config_reads_local_model_settings(monkeypatch):
    monkeypatch.setenv("RAG_LLM_GGUF", "/models/m.gguf")
    monkeypatch.setenv("RAG_LLM_THREADS", "3")
    monkeypatch.setenv("RAG_LLM_CONTEXT", "2048")
    monkeypatch.setenv("RAG_LLM_USE", "short")
    monkeypatch.setenv("RAG_LLM_WHEN", "unsure")
    c = rag.Config.from_env()
    assert (c.llm_gguf, c.llm_threads, c.llm_context, c.llm_use, c.llm_when) == ("/models/m.gguf", 3, 2048, "short", "unsure")


@pytest.mark.parametrize("changes, message", [
    ({"llm_gguf": "m.gguf", "llm_base_url": "http://x/v1"}, "llm_gguf .* and llm_base_url .* both set"),
    ({"llm_threads": -1}, "llm_threads must be 0"),
    ({"llm_context": 100}, "llm_context must be .* at least 512"),
    ({"llm_use": "poem"}, "llm_use must be one of"),
    ({"llm_when": "sometimes"}, "llm_when must be 'always' or 'unsure'"),
])
def test_bad_settings_are_refused_by_name(changes, message):
    with pytest.raises(ConfigError, match=message):
        rag.Config(**changes)


def test_missing_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"RAG_LLM_GGUF.*not a file"):
        ChatModel.from_config(rag.Config(llm_gguf=str(tmp_path / "nope.gguf")))


def test_file_that_is_not_gguf_is_refused(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_text("<html>not a model</html>")
    with pytest.raises(ConfigError, match=r"RAG_LLM_GGUF.*is not a GGUF model file"):
        ChatModel.from_config(rag.Config(llm_gguf=str(bad)))


def test_package_missing_gives_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # import xllamacpp now raises ImportError
    with pytest.raises(ConfigError, match=re.escape(INSTALL_HINT)):
        ChatModel.from_config(rag.Config(llm_gguf=str(fake_gguf(tmp_path))))


def test_llama_cpp_is_never_imported_unless_configured():
    code = ("import sys, rag; from rag.answering.assistant import Assistant; from rag.answering.llm import ChatModel; "
            "assert ChatModel.from_config(rag.Config()) is None; "
            "print(sorted(m for m in sys.modules if 'xllamacpp' in m or m.endswith('local_llm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_only_local_llm_imports_the_binding():
    root = Path(__file__).resolve().parent.parent / "rag"
    importers = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
                 if re.search(r"^\s*(import|from)\s+xllamacpp", p.read_text(encoding="utf-8"), re.M)]
    assert importers == ["answering/local_llm.py"]


# --- the time budget, with a stand-in for llama.cpp's server ----------------------------------------

class SlowServer:
    """Calls back one chunk every ``delay`` seconds until told to stop (the callback returns True)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.stopped_after: int | None = None
        self.finished = threading.Event()

    def handle_chat_completions(self, body, callback):
        for n in range(200):
            chunk = {"choices": [{"index": 0, "delta": {"content": "字"}}]}
            if callback(chunk):
                self.stopped_after = n
                break
            time.sleep(self.delay)
        self.finished.set()


def local_model_with(server, timeout: float, tmp_path) -> LocalModel:
    m = LocalModel.__new__(LocalModel)
    m.path, m.threads, m.context, m.timeout, m.max_tokens, m.model = fake_gguf(tmp_path), 1, 4096, timeout, 16, "m.gguf"
    local_llm._servers[(str(m.path.resolve()), 1, 4096)] = server
    return m


def test_budget_stops_generation_and_raises(tmp_path):
    server = SlowServer(delay=0.05)
    model = local_model_with(server, timeout=0.3, tmp_path=tmp_path)
    got = []
    with pytest.raises(LLMError, match=r"llm_timeout=0\.3"):
        for piece in model.stream([{"role": "user", "content": "x"}]):
            got.append(piece)
    assert server.finished.wait(2) and server.stopped_after is not None and server.stopped_after < 50
    assert 2 <= len(got) < 50


def test_streams_the_deltas(tmp_path):
    model = local_model_with(SlowServer(delay=0.0), timeout=5, tmp_path=tmp_path)
    stream = model.stream([{"role": "user", "content": "x"}])
    assert [next(stream) for _ in range(3)] == ["字", "字", "字"]
    stream.close()  # the consumer leaving stops generation too


# --- what the model is asked to do (Config.llm_use / llm_when), through the Assistant ----------------

def test_short_use_keeps_the_models_short_answer_when_the_cited_sentences_hold_it(retriever):
    base = rag.Assistant(retriever).ask(Q)
    model = FakeModel("三峡数字科技平台项目")
    a = rag.Assistant(retriever, retriever.config.with_(llm_use="short"), llm=model).ask(Q)
    assert a.short == "三峡数字科技平台项目" and a.text == base.text and a.citations == base.citations
    system, user = model.seen[0]
    assert "最短" in system["content"] and user["content"].rstrip().endswith("最短的答案：")


def test_short_use_keeps_the_readers_answer_when_the_model_strays(retriever):
    base = rag.Assistant(retriever).ask(Q)
    for reply in ("北京奥运会", "无", LLMError("down")):
        a = rag.Assistant(retriever, retriever.config.with_(llm_use="short"), llm=FakeModel(reply)).ask(Q)
        assert a.short == base.short and a.text == base.text


def test_compose_use_gets_no_hint_and_hint_use_does(retriever):
    reply = "江岸签约了6个项目[1]。"
    for use, hinted in (("compose", False), ("hint", True)):
        model = FakeModel(reply)
        a = rag.Assistant(retriever, retriever.config.with_(llm_use=use), llm=model).ask(Q)
        assert ("阅读器" in model.seen[0][-1]["content"]) is hinted and a.text == reply


def test_unsure_only_leaves_confident_answers_alone(retriever):
    base = rag.Assistant(retriever).ask(Q)
    assert base.short  # the reader is sure of this one
    model = FakeModel("别的")
    a = rag.Assistant(retriever, retriever.config.with_(llm_use="short", llm_when="unsure"), llm=model).ask(Q)
    assert model.seen == [] and a == base


def test_default_use_follows_the_backend(retriever):
    model = FakeModel("三峡数字科技平台项目")  # default_use "short", as LocalModel
    rag.Assistant(retriever, llm=model).ask(Q)
    assert "最短" in model.seen[0][0]["content"]


# --- a real model (slow): RAG_TEST_GGUF names a GGUF file --------------------------------------------

GGUF = os.environ.get("RAG_TEST_GGUF", "")


@pytest.mark.slow
@pytest.mark.skipif(not GGUF or not Path(GGUF).is_file(),
                    reason="set RAG_TEST_GGUF to a GGUF chat model file (scripts/fetch_gguf.py fetches the benchmark ones)")
@pytest.mark.parametrize("use", ["hint", "short"])
def test_real_model_streams_an_answer_citing_only_given_passages(retriever, use):
    config = retriever.config.with_(llm_gguf=GGUF, llm_use=use, llm_timeout=120.0, llm_threads=1)
    assistant = rag.Assistant(retriever, config)
    assert isinstance(assistant.llm, LocalModel)
    given = assistant.evidence(rag.Query.of(Q)).passages[: config.answer_passages]
    items = list(assistant.stream(Q))
    final = items[-1]
    assert isinstance(final, rag.Answer) and final.grounded and final.citations
    partials = items[:-1]
    assert all(isinstance(p, str) for p in partials) and all(b.startswith(a) for a, b in zip(partials, partials[1:]))
    if use == "hint":
        assert partials  # the model's reply was streamed as it was written
    story = {p.doc_id for p in given}
    main = final.citations[: len(final.citations) - len(final.others)]
    assert main and all(p.doc_id in story for p in main)
    assert all(1 <= int(n) <= len(final.citations) for n in re.findall(r"\[(\d+)\]", final.text))
    assert "三峡数字科技平台项目" in final.text
