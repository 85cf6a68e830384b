"""The web app: a Gradio chat and a REST API (FastAPI) over rag.Service; the only module importing gradio."""
from __future__ import annotations

import argparse
import html
import logging
import os
import re
from typing import Any

import gradio as gr
import uvicorn
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import rag
from rag.errors import IndexLockedError, NotReadyError, QueryError, RagError
from rag.service import MAX_K, UPLOAD_SUFFIXES, Service

log = logging.getLogger("app")

EXAMPLES = [
    "江岸签约了哪些项目？",
    "宝钢黄石新港二期工程是哪一年开工的？",
    "三峡集团每年用于长江流域大保护的投资有多少？",
    "江岸簽約了哪些項目？",
]

CSS = """
.sources-panel mark { background: #ffe58a; padding: 0 2px; }
.src { border-left: 3px solid #d0d7de; padding: 4px 10px; margin: 8px 0; }
.src-meta { color: #57606a; font-size: 0.9em; }
.src-text { white-space: pre-wrap; margin: 4px 0 0; }
.note { color: #9a6700; }
@media (max-width: 640px) { .gradio-container { padding: 4px !important; } }
"""


# --- REST -------------------------------------------------------------------------------------
class SearchBody(BaseModel):
    query: str = Field(..., description="keywords or a question", examples=["江岸签约了哪些项目？"])
    k: int = Field(5, description=f"number of passages, 1..{MAX_K}")
    sources: list[str] | None = Field(None, description="only these publications (see Retriever.sources())")
    date_from: str | None = Field(None, description="ISO date, inclusive", examples=["2021-01-01"])
    date_to: str | None = Field(None, description="ISO date, inclusive")


class FilterBody(BaseModel):
    sources: list[str] | None = None
    date_from: str | None = None
    date_to: str | None = None


class AskBody(BaseModel):
    question: str = Field(..., examples=["江岸签约了哪些项目？"])
    history: list[dict[str, Any]] | None = Field(None, description="earlier turns: [{role, content}]")
    k: int | None = Field(None, description=f"passages to answer from, 1..{MAX_K}")
    filters: FilterBody | None = None


class UploadedFile(BaseModel):
    name: str
    status: str = Field(..., description="new, updated (replaced a file of that name) or unchanged")


class UploadResult(BaseModel):
    files: list[UploadedFile]
    added: list[str] = Field(..., description="ids of new articles")
    changed: list[str] = Field(..., description="ids of articles whose text changed")
    removed: list[str] = Field(..., description="ids of articles no longer in the data folder")
    unchanged: int
    embedded: int = Field(..., description="chunks embedded (new or changed text)")
    reused: int = Field(..., description="chunks whose vectors were reused")
    seconds: float
    errors: list[str] = Field(..., description="files (or JSONL lines) that could not be read, by name")
    summary: str


class FeedbackBody(BaseModel):
    question: str
    answer: str
    sources: list[dict[str, Any]] = []
    vote: str = Field(..., description="up or down")


def make_api(service: Service) -> FastAPI:
    api = FastAPI(title="新闻问答 API", version=rag.__version__, description="Cited answers from Chinese news.")

    @api.exception_handler(QueryError)
    async def _bad_request(_: Request, e: QueryError) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "detail": str(e)}, status_code=422)

    @api.exception_handler(NotReadyError)
    async def _not_ready(_: Request, e: NotReadyError) -> JSONResponse:
        return JSONResponse({"error": "not_ready", "detail": str(e)}, status_code=503, headers={"Retry-After": "5"})

    @api.exception_handler(IndexLockedError)
    async def _locked(_: Request, e: IndexLockedError) -> JSONResponse:
        return JSONResponse({"error": "index_busy", "detail": str(e)}, status_code=409, headers={"Retry-After": "5"})

    @api.exception_handler(RagError)
    async def _rag_error(_: Request, e: RagError) -> JSONResponse:
        log.error("request failed: %s", e)
        return JSONResponse({"error": type(e).__name__, "detail": str(e)}, status_code=500)

    @api.post("/api/search", summary="Passages for a query")
    def search(body: SearchBody) -> dict:
        return service.search(body.model_dump())

    @api.post("/api/ask", summary="A cited answer (Answer.to_dict())")
    def ask(body: AskBody) -> dict:
        return service.ask(body.model_dump())

    @api.post("/api/feedback", summary="Record a thumbs up/down")
    def feedback(body: FeedbackBody) -> dict:
        path = service.feedback(body.question, body.answer, body.sources, body.vote)
        return {"ok": True, "file": str(path)}

    @api.post(
        "/api/documents",
        summary="Upload article files and index them",
        description=(
            f"Multipart upload of one or more files ({', '.join(UPLOAD_SUFFIXES)}) under the field `files`. "
            "Each is saved in the data folder under its own name (a file of that name is replaced and "
            "reported as `updated`), then the index is brought up to date; requests keep being answered "
            "meanwhile. 422 names a file of an unsupported type (nothing is saved then); 409 when another "
            "process is writing the index."
        ),
        response_model=UploadResult,
        responses={422: {"description": "unsupported file type, bad name or file too large"},
                   409: {"description": "the index is being written by another process"}},
    )
    async def documents(files: list[UploadFile] = File(..., description="article files")) -> dict:
        payload = [(f.filename or "", await f.read()) for f in files]
        return await run_in_threadpool(service.upload, payload)

    @api.get("/api/health", summary="Index status")
    def health() -> dict:
        return {"ready": service.ready, "status": service.status, "sources": service.sources()}

    return api


# --- chat page ----------------------------------------------------------------------------
def _linked(text: str, n_sources: int) -> str:
    """Citation markers [n] as links to the source cards."""
    return re.sub(
        r"\[(\d{1,2})\]",
        lambda m: f'<a href="#src-{m.group(1)}" class="cite">[{m.group(1)}]</a>' if 1 <= int(m.group(1)) <= n_sources else m.group(0),
        text,
    )


def _highlighted(passage: str, sentence: str) -> str:
    i = passage.find(sentence) if sentence else -1
    if i < 0:
        return html.escape(passage)
    j = i + len(sentence)
    return html.escape(passage[:i]) + "<mark>" + html.escape(passage[i:j]) + "</mark>" + html.escape(passage[j:])


def _date(d: str | None) -> str:
    m = re.fullmatch(r"--(\d{2})-(\d{2})", d or "")
    return f"{int(m.group(1))}月{int(m.group(2))}日（未注明年份）" if m else (d or "日期不详")


def sources_html(answer: rag.Answer | None) -> str:
    if answer is None or not answer.citations:
        return '<div class="sources-panel"><p>（暂无出处）</p></div>'
    cards = []
    for n, p in enumerate(answer.citations, 1):
        hl = answer.highlights[n - 1] if n - 1 < len(answer.highlights) else ""
        meta = " · ".join(html.escape(x) for x in (p.source or "来源不详", _date(p.date)))
        title = html.escape(p.title)
        if p.url:
            title = f'<a href="{html.escape(p.url)}" target="_blank" rel="noopener">{title}</a>'
        cards.append(
            f'<div class="src" id="src-{n}"><div><b>[{n}]</b> {title}</div>'
            f'<div class="src-meta">{meta}</div><p class="src-text">{_highlighted(p.text, hl)}</p></div>'
        )
    return '<div class="sources-panel">' + "".join(cards) + "</div>"


def answer_markdown(answer: rag.Answer) -> str:
    text = _linked(html.escape(answer.text), len(answer.citations))
    if answer.note:
        text += f'\n\n<span class="note">⚠ {html.escape(answer.note)}</span>'
    return text


_FILE_STATUS = {"new": "新文件", "updated": "更新（替换了同名文件）", "unchanged": "未变化"}


def upload_files(service: Service, paths: list | None) -> str:
    """The upload tab's handler: save the uploaded files (Gradio temp paths, original names kept)
    into the data folder, update the index, and describe what changed as Markdown."""
    if not paths:
        return "请先选择要上传的文件。"
    files = []
    for p in paths:
        path = getattr(p, "name", None) or getattr(p, "path", None) or str(p)
        with open(path, "rb") as f:
            files.append((os.path.basename(path), f.read()))
    try:
        r = service.upload(files)
    except QueryError as e:
        return f"⚠ 未上传：{e}"
    except (NotReadyError, IndexLockedError) as e:
        return f"⚠ 暂时无法更新索引：{e}"
    except RagError as e:
        log.error("upload failed: %s", e)
        return f"⚠ 更新失败：{e}"
    lines = ["### 更新报告", ""]
    lines += [f"- {html.escape(f['name'])}：{_FILE_STATUS.get(f['status'], f['status'])}" for f in r["files"]]
    lines += [
        "",
        f"新增文章 {len(r['added'])} 篇，修改 {len(r['changed'])} 篇，删除 {len(r['removed'])} 篇，"
        f"未变 {r['unchanged']} 篇；嵌入 {r['embedded']} 个段落（复用 {r['reused']} 个），用时 {r['seconds']:.1f} 秒。",
    ]
    if r["errors"]:
        lines += ["", f"**{len(r['errors'])} 个文件出错：**"] + [f"- {html.escape(e)}" for e in r["errors"]]
    return "\n".join(lines)


def make_blocks(service: Service) -> gr.Blocks:
    with gr.Blocks(title="新闻问答") as demo:
        gr.Markdown("## 新闻问答\n根据新闻文章回答问题，每个答案都注明出处。")
        status = gr.Markdown(service.status, elem_id="status")
        last = gr.State({})  # assistant message index → {question, answer, sources}
        with gr.Tabs():
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
                        gr.Markdown("### 出处")
                        panel = gr.HTML(sources_html(None), elem_id="sources")
                        with gr.Accordion("筛选", open=False):
                            pubs = gr.Dropdown(choices=service.sources(), multiselect=True, label="媒体（不选则全部）")
                            date_from = gr.Textbox(label="起始日期", placeholder="2021-01-01")
                            date_to = gr.Textbox(label="结束日期", placeholder="2021-12-31")
                            k = gr.Slider(1, 10, value=3, step=1, label="参考段落数（top-k）")
            with gr.Tab("上传文章", id="upload-tab"):
                gr.Markdown(
                    "上传 .txt、.md、.html 或 .jsonl 文件：文件保存到数据文件夹并加入索引，"
                    "更新期间问答照常进行。同名文件会被替换（报告中标为“更新”）。"
                )
                files = gr.File(label="文章文件", file_count="multiple", file_types=list(UPLOAD_SUFFIXES),
                                elem_id="upload-files")
                upload_btn = gr.Button("上传并更新索引", variant="primary", elem_id="upload")
                upload_report = gr.Markdown(elem_id="upload-report")

        def ask(message: str, history: list, sources: list | None, d_from: str, d_to: str, top_k: float, memo: dict):
            history = list(history or [])
            req = {"question": message, "history": history, "k": int(top_k),
                   "filters": {"sources": sources or None, "date_from": d_from or None, "date_to": d_to or None}}
            turn = history + [{"role": "user", "content": message}]
            try:
                for item in service.stream(req):
                    if isinstance(item, str):
                        yield turn + [{"role": "assistant", "content": html.escape(item)}], gr.update(), "", memo
                    else:
                        memo = dict(memo or {})
                        memo[str(len(turn))] = {"question": message, "answer": item.text,
                                                "sources": [p.to_dict() for p in item.citations]}
                        yield (turn + [{"role": "assistant", "content": answer_markdown(item)}],
                               sources_html(item), "", memo)
            except (QueryError, NotReadyError) as e:
                text = "请先输入问题。" if isinstance(e, QueryError) and "empty" in str(e) else f"⚠ {e}"
                yield turn + [{"role": "assistant", "content": html.escape(text)}], gr.update(), "", memo

        inputs = [box, chat, pubs, date_from, date_to, k, last]
        outputs = [chat, panel, box, last]
        # several chats at once: retrieval is thread-safe and each turn is short
        box.submit(ask, inputs, outputs, api_name="ask", concurrency_limit=4)
        send.click(ask, inputs, outputs, api_name=False, concurrency_limit=4)
        clear.click(lambda: ([], sources_html(None), {}), None, [chat, panel, last], api_name=False)

        def vote(data: gr.LikeData, history: list, memo: dict) -> None:
            idx = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
            rec = (memo or {}).get(str(idx))
            if rec is None:
                return
            service.feedback(rec["question"], rec["answer"], rec["sources"], "up" if data.liked else "down")

        chat.like(vote, [chat, last], None, api_name=False)

        def refresh():
            return service.status, gr.update(choices=service.sources())

        def on_upload(paths: list | None):
            return upload_files(service, paths), *refresh()

        upload_btn.click(on_upload, [files], [upload_report, status, pubs], api_name=False)

        timer = gr.Timer(2.0)
        timer.tick(lambda: (*refresh(), gr.Timer(active=not service.ready)), None, [status, pubs, timer], api_name=False)
        demo.load(refresh, None, [status, pubs], api_name=False)
    return demo


def make_app(service: Service) -> FastAPI:
    """REST under /api, OpenAPI docs at /docs, the chat at /."""
    return gr.mount_gradio_app(make_api(service), make_blocks(service), path="/", css=CSS, footer_links=["api"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="新闻问答 chat and REST API")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default 7860; env GRADIO_SERVER_PORT)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--data", default=os.environ.get("RAG_DATA_DIR", "data"), help="articles folder (env RAG_DATA_DIR)")
    p.add_argument("--index", default=os.environ.get("RAG_INDEX_DIR", "index"), help="index folder (env RAG_INDEX_DIR)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = Service(args.data, args.index)
    service.start_in_background(show_progress=True)
    log.info("chat on http://%s:%d/ , API docs on http://%s:%d/docs", args.host, args.port, args.host, args.port)
    uvicorn.run(make_app(service), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
