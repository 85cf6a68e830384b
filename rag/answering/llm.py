"""Optional language model: an OpenAI-compatible chat endpoint that rewrites evidence into a cited answer."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Iterator

import httpx

from ..config import Config
from ..errors import LLMError
from ..records import Passage, readable_date

__all__ = ["ChatModel", "CheckedReply", "build_messages", "build_short_messages", "check_citations", "UNSOURCED"]

log = logging.getLogger(__name__)

UNSOURCED = "（未找到出处）"
_CITE = re.compile(r"\[(\d{1,3})\]")
# a sentence ends at 。！？!? or a line break; trailing citations and closing quotes stay with it
_SENTENCE = re.compile(r"[^。！？!?\n]+(?:[。！？!?]+[”’」』）)]*)?(?:\s*\[\d{1,3}\])*|\n+")

SYSTEM_PROMPT = (
    "你是新闻问答助手。只根据用户给出的编号新闻资料回答问题，不要使用资料以外的知识。"
    "每一句话末尾用方括号标注所依据资料的编号，例如[1]或[2]，只能引用给出的编号。"
    "回答要简洁，用与问题相同的简体或繁体书写。资料里没有答案时，直接说没有找到。"
)


def build_messages(
    question: str, passages: list[Passage], history: list | None = None, evidence: tuple[str, str, int] | None = None
) -> list[dict]:
    """Chat messages: instructions, up to three earlier turns, then numbered sources and the question.

    ``evidence`` = (short answer, its sentence, 0-based source index) found by the reader: given
    to the model as the evidence to build on and cite.
    """
    lines = []
    for n, p in enumerate(passages, 1):
        meta = " ".join(x for x in (p.source or "", readable_date(p.date, p.month, p.day)) if x)
        lines.append(f"[{n}] {p.title}（{meta}）\n{p.text}")
    messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
    for turn in (history or [])[-6:]:
        if isinstance(turn, dict) and turn.get("role") in ("user", "assistant") and isinstance(turn.get("content"), str):
            messages.append({"role": turn["role"], "content": turn["content"]})
    hint = ""
    if evidence and evidence[0]:
        short, sentence, source = evidence
        hint = f"\n\n阅读器在资料[{source + 1}]中找到的答案：{short}\n所在句子：{sentence}\n请核对后以它为依据回答并标注出处。"
    messages.append({"role": "user", "content": "资料：\n" + "\n\n".join(lines) + hint + f"\n\n问题：{question}"})
    return messages


SHORT_PROMPT = (
    "你是新闻问答助手。只根据用户给出的新闻资料，用资料原文里最短的词语回答问题："
    "一个名称、数字、日期或短语，不要解释，不要标编号，不要加标点。资料里没有答案时只回答：无"
)


def build_short_messages(question: str, sentences: str, reader_short: str = "") -> list[dict]:
    """Messages asking only for the short answer (Config.llm_use "short") out of the extractive
    answer's ``sentences``, with the reader's short answer as a hint when it has one."""
    hint = f"\n\n阅读器找到的答案是：{reader_short}\n请核对，对就照抄，不对就改正。" if reader_short else ""
    return [{"role": "system", "content": SHORT_PROMPT},
            {"role": "user", "content": f"资料：\n{sentences}{hint}\n\n问题：{question}\n最短的答案："}]


@dataclass(frozen=True)
class CheckedReply:
    """A model reply after checking: ``text`` renumbered so ``[n]`` indexes ``used`` (0-based source indexes)."""

    text: str
    used: list[int]
    removed: int  # citations to sources that were not given
    unsourced: int  # sentences that cite nothing


def check_citations(reply: str, n_sources: int) -> CheckedReply:
    """Drop citations to sources not given, mark sentences citing nothing, renumber by first use.

    >>> check_citations("甲。[9]乙[2]。", 2).text
    '甲（未找到出处）。乙[1]。'
    """
    used: list[int] = []
    removed = unsourced = 0
    out: list[str] = []
    for m in _SENTENCE.finditer(reply.strip()):
        sent = m.group(0)
        if not sent.strip() or not re.search(r"\w", _CITE.sub("", sent)):
            out.append(sent if sent.strip() == "" else _CITE.sub("", sent))
            continue
        valid = []
        for c in _CITE.finditer(sent):
            n = int(c.group(1))
            if 1 <= n <= n_sources:
                valid.append(n - 1)
            else:
                removed += 1

        def renumber(c: re.Match) -> str:
            n = int(c.group(1)) - 1
            if not 0 <= n < n_sources:
                return ""
            if n not in used:
                used.append(n)
            return f"[{used.index(n) + 1}]"

        sent = _CITE.sub(renumber, sent)
        if not valid:
            unsourced += 1
            body = sent.rstrip()
            end = re.search(r"[。！？!?]+[”’」』）)]*$", body)
            sent = body[: end.start()] + UNSOURCED + end.group(0) if end else body + UNSOURCED
        out.append(sent)
    return CheckedReply(text="".join(out).strip(), used=used, removed=removed, unsourced=unsourced)


class ChatModel:
    """Client of an OpenAI-compatible ``/chat/completions`` endpoint, streaming (SSE) by default.

    Example::

        model = ChatModel.from_config(Config.from_env())   # None when RAG_LLM_BASE_URL is unset
        for delta in model.stream([{"role": "user", "content": "你好"}]):
            print(delta, end="")

    ``timeout`` bounds the whole reply, not only each read; every failure is an LLMError. The
    in-process backend (``rag.answering.local_llm.LocalModel``) has the same ``stream``.
    """

    default_use = "hint"  # Config.llm_use when left empty

    def __init__(self, base_url: str, model: str = "", api_key: str = "", timeout: float = 20.0) -> None:
        self.url = base_url.rstrip("/") + ("" if base_url.rstrip("/").endswith("/chat/completions") else "/chat/completions")
        self.model = model or "default"
        self.api_key = api_key
        self.timeout = timeout

    @classmethod
    def from_config(cls, config: Config):
        """The configured language model: the endpoint (``llm_base_url``), the GGUF file run in this
        process (``llm_gguf``; its module and llama.cpp are imported only then), or None."""
        if config.llm_gguf.strip():
            from .local_llm import LocalModel

            return LocalModel.from_config(config)
        if not config.llm_base_url.strip():
            return None
        return cls(config.llm_base_url.strip(), config.llm_model, config.llm_api_key, config.llm_timeout)

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """Yield the reply's text pieces as they arrive."""
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = {"model": self.model, "messages": messages, "stream": True, "temperature": 0}
        deadline = time.monotonic() + self.timeout
        try:
            with httpx.Client(timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0))) as client:
                with client.stream("POST", self.url, json=body, headers=headers) as r:
                    if r.status_code != 200:
                        r.read()
                        raise LLMError(f"{self.url} answered HTTP {r.status_code}: {r.text[:200]}")
                    if "text/event-stream" not in r.headers.get("content-type", ""):
                        r.read()
                        yield _message_content(r.text, self.url)
                        return
                    for line in r.iter_lines():
                        if time.monotonic() > deadline:
                            raise LLMError(f"{self.url} took longer than llm_timeout={self.timeout} s")
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return
                        piece = _delta_content(data, self.url)
                        if piece:
                            yield piece
        except httpx.TimeoutException as e:
            raise LLMError(f"{self.url} did not answer within llm_timeout={self.timeout} s ({type(e).__name__})") from e
        except httpx.HTTPError as e:
            raise LLMError(f"{self.url} unreachable ({type(e).__name__}: {e}); check RAG_LLM_BASE_URL") from e


def _delta_content(data: str, url: str) -> str:
    try:
        chunk = json.loads(data)
        choice = chunk["choices"][0] if chunk.get("choices") else {}
        content = (choice.get("delta") or {}).get("content") or ""
    except (json.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError) as e:
        raise LLMError(f"{url} sent a stream event that is not an OpenAI chat chunk: {data[:120]!r}") from e
    if not isinstance(content, str):
        raise LLMError(f"{url} sent non-text content: {content!r:.120}")
    return content


def _message_content(body: str, url: str) -> str:
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise LLMError(f"{url} replied with something that is not an OpenAI chat completion: {body[:120]!r}") from e
    if not isinstance(content, str):
        raise LLMError(f"{url} replied with non-text content")
    return content
