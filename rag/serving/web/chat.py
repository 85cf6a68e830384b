"""The chat page: the Gradio layout and its handlers, mounted with the REST API into one app; the only
module importing gradio."""
from __future__ import annotations

import html
import json
import logging
from types import SimpleNamespace

import gradio as gr
from fastapi import FastAPI
from pydantic import ValidationError

from ...errors import EmptyQueryError, NotReadyError, QueryError, RateLimitError
from ...reading.sources import MAX_FILE_BYTES, formats_named
from ..service import UPLOAD_SUFFIXES, Service
from .api import FilterBody, came_through_proxy, make_api, validation_detail
from .render import chat_message, feedback_source, sources_html, upload_files, without_inline_sources
from .zh import zh_error, zh_message

log = logging.getLogger(__name__)

SESSIONS_KEPT = 500  # browser sessions whose state (the votes' memo) Gradio keeps in memory
# chat turns Gradio runs at once (more wait in its queue). REST requests run up to 40 at once (the
# server's thread pool), so with 4 here a chat turn waited 5x longer than an /api/ask under 50 users
# (scripts/load_locust.py: chat p50 44 s vs ask 8 s); the CPU is shared either way.
CHAT_TURNS_AT_ONCE = 16

EXAMPLES = [
    "江岸签约了哪些项目？",
    "宝钢黄石新港二期工程是哪一年开工的？",
    "三峡集团每年用于长江流域大保护的投资有多少？",
    "江岸簽約了哪些項目？",
]

CSS = """
.sources-panel mark, .inline-sources mark { background: #ffe58a; padding: 0 2px; }
mark .span { background: #f6b73c; font-weight: 600; }
.short { font-size: 1.1em; }
.story { color: #555; font-size: 0.9em; }
.asked { color: #57606a; font-size: 0.9em; }
.src { border-left: 3px solid #d0d7de; padding: 4px 10px; margin: 8px 0; }
.src-meta { color: #57606a; font-size: 0.9em; }
.src-text { white-space: pre-wrap; margin: 4px 0 0; }
.note { color: #9a6700; }
/* the chat's "对话" badge and clear button sit in a strip of their own above the scrolling messages,
   so a scrolled message never slides under them */
#chat > .wrapper { padding-top: 30px; box-sizing: border-box; }
#chat .bubble-wrap { flex: 1 1 0; min-height: 0; height: auto; }
.inline-sources { display: none; }
.inline-sources summary { cursor: pointer; }
.inline-src { display: block; color: #57606a; font-size: 0.9em; }
@media (max-width: 640px) {
  .gradio-container { padding: 4px !important; }
  .inline-sources { display: block; margin-top: 6px; border-top: 1px solid #d0d7de; padding-top: 4px; }
  #sources, #sources-heading { display: none !important; }
}
"""


def _via_proxy(request: gr.Request | None) -> bool:
    return came_through_proxy(getattr(request, "headers", None) or {})


def _client(request: gr.Request | None) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


def _chat_tab(service: Service) -> SimpleNamespace:
    """The chat, its question box and examples, and the sources panel with the filters."""
    with gr.Tab("问答", id="chat-tab"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                chat = gr.Chatbot(
                    label="对话",
                    height=460,
                    buttons=["copy"],
                    feedback_options=("Like", "Dislike"),
                    elem_id="chat",
                    sanitize_html=True,
                )
                with gr.Row():
                    box = gr.Textbox(placeholder="输入问题，例如：江岸签约了哪些项目？", show_label=False, scale=5, elem_id="question")
                    send = gr.Button("提问", variant="primary", scale=1, min_width=80, elem_id="send")
                gr.Examples(EXAMPLES, inputs=box, label="示例问题")
                clear = gr.Button("清空对话", size="sm")
            with gr.Column(scale=2, min_width=280):
                gr.Markdown("### 出处", elem_id="sources-heading")
                panel = gr.HTML(sources_html(None), elem_id="sources")
                with gr.Accordion("筛选", open=False):
                    pubs = gr.Dropdown(choices=service.sources(), multiselect=True, label="媒体（不选则全部）")
                    date_from = gr.Textbox(label="起始日期", placeholder="2021-01-01")
                    date_to = gr.Textbox(label="结束日期", placeholder="2021-12-31")
                    k = gr.Slider(1, 10, value=3, step=1, label="参考段落数（top-k）")
    return SimpleNamespace(chat=chat, box=box, send=send, clear=clear, panel=panel, pubs=pubs,
                           date_from=date_from, date_to=date_to, k=k)


def _upload_tab(service: Service) -> SimpleNamespace:
    """The upload tab (only when the app may write)."""
    with gr.Tab("上传文章", id="upload-tab"):
        gr.Markdown(
            f"上传 {formats_named('、', ' 或 ')} 文件（UTF-8、GB18030 或 Big5）：每个文件先检查，"
            "有一个读不出文章就一个也不保存；通过后保存到数据文件夹并加入索引，更新期间问答照常进行。"
            "同名文件会被替换（报告中标为“更新”），旧文件保留在 .trash/ 中以便恢复。"
        )
        token = gr.Textbox(label="管理口令（RAG_ADMIN_TOKEN）", type="password", elem_id="admin-token",
                           visible=service.writes == "token")
        files = gr.File(label="文章文件（拖到这里，或点击选择）", file_count="multiple",
                        file_types=list(UPLOAD_SUFFIXES), elem_id="upload-files")
        button = gr.Button("上传并更新索引", variant="primary", elem_id="upload")
        report = gr.Markdown(elem_id="upload-report")
    return SimpleNamespace(token=token, files=files, button=button, report=report)


def _asker(service: Service):
    """The chat's handler: the streamed answer, the sources panel and what a vote on it records."""

    def ask(message: str, history: list, sources: list | None, d_from: str, d_to: str, top_k: float, memo: dict):
        history = [without_inline_sources(m) for m in history or []]
        turn = history + [{"role": "user", "content": message}]
        try:
            f = FilterBody(sources=sources or None, date_from=d_from or None, date_to=d_to or None)
            for item in service.stream(message, history, k=int(top_k), sources=f.sources,
                                       date_from=f.date_from, date_to=f.date_to):
                if isinstance(item, str):
                    yield turn + [{"role": "assistant", "content": html.escape(item)}], gr.update(), "", memo
                else:
                    memo = dict(memo or {})
                    memo[str(len(turn))] = {"question": message, "answer": item.text,
                                            "sources": [feedback_source(p) for p in item.citations]}
                    yield (turn + [{"role": "assistant", "content": chat_message(item, message)}],
                           sources_html(item), "", memo)
        except ValidationError as e:
            text = "⚠ 筛选条件有误：" + "；".join(zh_message(d) for d in validation_detail(e.errors()).split("; "))
            yield turn + [{"role": "assistant", "content": html.escape(text)}], gr.update(), "", memo
        except (QueryError, NotReadyError) as e:
            text = "请先输入问题。" if isinstance(e, EmptyQueryError) else f"⚠ {zh_error(e)}"
            yield turn + [{"role": "assistant", "content": html.escape(text)}], gr.update(), "", memo

    return ask


def _plain_answer(service: Service):
    """The API endpoint /answer: an answer as plain text, for gradio_client and scripts."""

    def answer(question: str, history: list[dict] | None = None, k: int = 3) -> str:
        """The answer as plain text: the short answer, 出自 《title》（outlet，date）, the cited sentences,
        then one line per source. ``history``: earlier turns as {"role", "content"} messages."""
        try:
            return service.ask(question, history or [], k=int(k)).to_text()
        except EmptyQueryError:
            return "请先输入问题。"
        except (QueryError, NotReadyError) as e:
            return f"⚠ {zh_error(e)}"

    return answer


def _voter(service: Service):
    """A thumbs up or down on an answer, recorded with its question and sources."""

    def vote(data: gr.LikeData, history: list, memo: dict, request: gr.Request) -> None:
        idx = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        rec = (memo or {}).get(str(idx))
        if rec is None:
            return
        try:
            service.feedback(rec["question"], rec["answer"], rec["sources"], "up" if data.liked else "down",
                             client=_client(request))
        except (QueryError, RateLimitError) as e:
            log.info("vote not recorded: %s", e)

    return vote


def make_blocks(service: Service) -> gr.Blocks:
    """The chat page over ``service``: the chat tab, the upload tab when writes are allowed, a status line."""
    with gr.Blocks(title="新闻问答") as demo:
        # Gradio keeps a copy of the page's settings for every session it has seen, 10,000 by default
        # (~60 kB each); the newest SESSIONS_KEPT are enough (an older one only loses its vote memo)
        demo.state_session_capacity = SESSIONS_KEPT
        gr.Markdown("## 新闻问答\n根据新闻文章回答问题，每个答案都注明出处。")
        status = gr.Markdown(service.status, elem_id="status")
        last = gr.State({})  # assistant message index → {question, answer, sources}
        with gr.Tabs():
            ui = _chat_tab(service)
            up = _upload_tab(service) if service.writes != "read-only" else None  # read-only: no tab, no handler

        inputs = [ui.box, ui.chat, ui.pubs, ui.date_from, ui.date_to, ui.k, last]
        outputs = [ui.chat, ui.panel, ui.box, last]
        ask = _asker(service)
        # several chats at once: retrieval is thread-safe; the page's two triggers share one limit
        ui.box.submit(ask, inputs, outputs, api_name="ask", concurrency_limit=CHAT_TURNS_AT_ONCE, concurrency_id="chat")
        ui.send.click(ask, inputs, outputs, api_name=False, concurrency_limit=CHAT_TURNS_AT_ONCE, concurrency_id="chat")
        ui.clear.click(lambda: ([], sources_html(None), {}), None, [ui.chat, ui.panel, last], api_name=False)
        ui.chat.like(_voter(service), [ui.chat, last], None, api_name=False)
        gr.api(_plain_answer(service), api_name="answer", concurrency_limit=CHAT_TURNS_AT_ONCE)

        def refresh():
            return service.status, gr.update(choices=service.sources())

        if up is not None:
            def on_upload(paths: list | None, key: str, request: gr.Request):
                return upload_files(service, paths, key, _via_proxy(request), _client(request)), *refresh()

            up.button.click(on_upload, [up.files, up.token], [up.report, status, ui.pubs], api_name=False)

        timer = gr.Timer(2.0)
        timer.tick(lambda: (*refresh(), gr.Timer(active=not service.ready)), None, [status, ui.pubs, timer], api_name=False)
        demo.load(refresh, None, [status, ui.pubs], api_name=False)
    return demo


# Gradio picks its own words (upload area, buttons, tooltips) by the browser's language; the page is
# Chinese whatever the browser says, so the page tells Gradio the browser prefers Chinese. Gradio's
# Chinese lacks a few screen-reader labels and writes others into its components ("chatbot
# conversation", "bot's message: <raw HTML>"): the script rewrites those, a message's label to its
# visible text ("回答：…"), whenever Gradio sets them.
_ZH_LABELS = {"Copy message": "复制消息", "Copied message": "已复制", "chatbot conversation": "对话记录",
              "More tabs": "更多标签页", "Scroll down": "滚动到底部", "Clear": "清空"}
_ZH_SCRIPT = ("<script>(function(){var l=['zh-CN','zh'];try{Object.defineProperty(navigator,'language',"
              "{get:function(){return l[0]}});Object.defineProperty(navigator,'languages',{get:function(){return l}})}"
              "catch(e){}"
              "var W=" + json.dumps(_ZH_LABELS, ensure_ascii=False) + ",R={\"bot's message: \":'回答：',"
              "\"user's message: \":'提问：'};"
              # a message's label: its role's word and its text as shown, kept up to date as the text changes
              "function said(e){e.setAttribute('aria-label',e.dataset.zhLabel+"
              "(e.innerText||e.textContent||'').replace(/\\s+/g,' ').trim().slice(0,1000))}"
              "function fix(e){['aria-label','title'].forEach(function(a){var v=e.getAttribute(a);if(!v)return;"
              "if(W[v]){e.setAttribute(a,W[v]);return}"
              "for(var p in R){if(a==='aria-label'&&v.indexOf(p)===0){e.dataset.zhLabel=R[p];said(e);return}}})}"
              "function scan(n){if(n.nodeType!==1)return;fix(n);n.querySelectorAll('[aria-label],[title]').forEach(fix)}"
              "new MutationObserver(function(ms){ms.forEach(function(m){if(m.type==='attributes')fix(m.target);"
              "else m.addedNodes.forEach(scan);"
              "var t=m.target.nodeType===1?m.target:m.target.parentElement,x=t&&t.closest('[data-zh-label]');"
              "if(x&&m.type!=='attributes')said(x)})}).observe(document.documentElement,"
              "{subtree:true,childList:true,characterData:true,attributes:true,attributeFilter:['aria-label','title']})"
              "})();</script>").encode("utf-8")


class ChinesePage:
    """ASGI middleware: the chat page (GET /) with _ZH_SCRIPT first in its <head>; nothing else touched."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] != "/":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body = bytearray()

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            content = bytes(body)
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                content = content.replace(b"<head>", b"<head>" + _ZH_SCRIPT, 1)
            headers.append((b"content-length", str(len(content)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, capture)


def make_app(service: Service) -> FastAPI:
    """REST under /api, OpenAPI docs at /docs, the chat at / (in Chinese, without Gradio's footer)."""
    app = gr.mount_gradio_app(make_api(service), make_blocks(service), path="/", css=CSS, footer_links=[],
                              max_file_size=MAX_FILE_BYTES)
    app.add_middleware(ChinesePage)
    return app
