"""The web app: a Gradio chat and a REST API (FastAPI) over rag.Service; the only module importing gradio."""
from __future__ import annotations

import argparse
import html
import logging
import os
import re
import sys
from typing import Annotated, Any, Literal

import gradio as gr
import uvicorn
from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, ValidationError, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

import rag
from rag.errors import AccessError, IndexLockedError, NotReadyError, QueryError, RagError, RateLimitError, SourceError
from rag.serving.service import MAX_K, MAX_UPLOAD_FILES, UPLOAD_SUFFIXES, Service, listens_on_loopback_only
from rag.reading.sources import MAX_FILE_BYTES
from rag.text import to_simplified

log = logging.getLogger("app")

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
.asked { color: #57606a; font-size: 0.9em; }
.src { border-left: 3px solid #d0d7de; padding: 4px 10px; margin: 8px 0; }
.src-meta { color: #57606a; font-size: 0.9em; }
.src-text { white-space: pre-wrap; margin: 4px 0 0; }
.note { color: #9a6700; }
.inline-sources { display: none; }
.inline-sources summary { cursor: pointer; }
.inline-src { display: block; color: #57606a; font-size: 0.9em; }
@media (max-width: 640px) {
  .gradio-container { padding: 4px !important; }
  .inline-sources { display: block; margin-top: 6px; border-top: 1px solid #d0d7de; padding-top: 4px; }
  #sources, #sources-heading { display: none !important; }
}
"""


# --- REST -------------------------------------------------------------------------------------
MAX_TEXT = 10_000  # characters of a query, question or history message
_ISO_DATE = r"^\d{4}(-\d{2}(-\d{2})?)?$"
IsoDate = Annotated[str, StringConstraints(pattern=_ISO_DATE),
                    Field(description="ISO date, inclusive: 2021-12-03, 2021-12 or 2021", examples=["2021-12-03"])]
K = Annotated[StrictInt, Field(ge=1, le=MAX_K, description=f"number of passages, 1..{MAX_K}")]
Publication = Annotated[str, StringConstraints(max_length=100)]
# at least one character that clean_query keeps (not blank, not a control or invisible character)
_VISIBLE = r"[^\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]"
Query = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=_VISIBLE)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DateRange(Body):
    date_from: IsoDate | None = None
    date_to: IsoDate | None = None

    @model_validator(mode="after")
    def _ordered(self):
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from ({self.date_from}) is after date_to ({self.date_to})")
        return self


class SearchBody(DateRange):
    query: Query = Field(..., description="keywords or a question", examples=["江岸签约了哪些项目？"])
    k: K = 5
    sources: list[Publication] | None = Field(None, max_length=50, description="only these publications (GET /api/health lists them)")


class FilterBody(DateRange):
    sources: list[Publication] | None = Field(None, max_length=50)


class Message(Body):
    role: Literal["user", "assistant"]
    content: str = Field(..., max_length=MAX_TEXT)


class AskBody(Body):
    question: Query = Field(..., examples=["江岸签约了哪些项目？"])
    history: list[Message] | None = Field(None, max_length=50, description="earlier turns, oldest first")
    k: K | None = Field(None, description=f"passages to answer from, 1..{MAX_K}")
    filters: FilterBody | None = None


class FeedbackBody(Body):
    question: str = Field(..., max_length=2000)
    answer: str = Field(..., max_length=MAX_TEXT)
    sources: list[dict[str, Any]] = Field([], max_length=20, description="the cited passages (ids, titles, outlets, dates)")
    vote: Literal["up", "down"]


class RestoreBody(Body):
    name: str = Field(..., max_length=300, description="file name in the data folder", examples=["yuehu.txt"])
    version: str | None = Field(None, pattern=r"^\d{8}T\d{6}\.\d{6}Z$",
                                description="a kept version (GET /api/documents/kept); default the newest")


class ErrorBody(BaseModel):
    error: str = Field(..., description="bad_request, unauthorized, forbidden, not_found, method_not_allowed, "
                                        "index_busy, too_many_requests, not_ready or internal_error")
    detail: str = Field(..., description="what went wrong and how to fix it")


class PassageOut(BaseModel):
    doc_id: str
    title: str
    date: str | None
    source: str | None
    text: str
    score: float
    chunk_id: str
    url: str | None
    start: int
    end: int
    also_in: list[str] = Field(..., description="other outlets that carried the same story")


class SearchResult(BaseModel):
    passages: list[PassageOut]


class AnswerOut(BaseModel):
    short: str = Field(..., description="the answer itself, a span of citations[0] as the article words it "
                       "(in the question's script); empty when declining or when no span is confident enough")
    text: str = Field(..., description="the supporting sentences, citing passages as [1], [2]")
    question: str = Field(..., description="the question answered: a follow-up rewritten from the history "
                          "into a standalone question, else the question as asked")
    grounded: bool = Field(..., description="false when the articles do not hold the answer")
    citations: list[PassageOut]
    highlights: list[str] = Field(..., description="the supporting sentence of each citation")
    query: str
    note: str


class HealthOut(BaseModel):
    ready: bool
    status: str
    sources: list[str]
    writes: Literal["token", "local", "read-only"] = Field(
        ..., description="token: uploads need the admin token; local: open (loopback only); read-only")


class FeedbackOut(BaseModel):
    ok: bool
    file: str


class UpdateOut(BaseModel):
    added: list[str] = Field(..., description="ids of new articles")
    changed: list[str] = Field(..., description="ids of articles whose text changed")
    removed: list[str] = Field(..., description="ids of articles no longer in the data folder")
    unchanged: int
    embedded: int = Field(..., description="chunks embedded (new or changed text)")
    reused: int = Field(..., description="chunks whose vectors were reused")
    seconds: float
    errors: list[str] = Field(..., description="files (or JSONL lines) that could not be read, by name")
    summary: str


class UploadedFile(BaseModel):
    name: str
    status: Literal["new", "updated", "unchanged"] = Field(..., description="updated: replaced a file of that name")
    kept: str | None = Field(..., description="version the replaced file is kept under, for restore")


class UploadResult(UpdateOut):
    files: list[UploadedFile]


class DeleteResult(UpdateOut):
    name: str
    kept: str = Field(..., description="version the removed file is kept under, for restore")


class RestoreResult(UpdateOut):
    name: str
    restored: str = Field(..., description="the version put back")
    kept: str | None = Field(..., description="version the replaced file is kept under (restore it to undo)")


class KeptFile(BaseModel):
    name: str
    version: str
    bytes: int


_ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                409: "index_busy", 413: "too_large", 422: "bad_request", 429: "too_many_requests",
                500: "internal_error", 503: "not_ready"}
_DESCRIPTIONS = {
    400: "the request body could not be parsed (not UTF-8 JSON, or broken multipart)",
    401: "the admin token is missing or wrong (send `Authorization: Bearer <RAG_ADMIN_TOKEN>`)",
    403: "read-only: the app runs on a non-loopback address without RAG_ADMIN_TOKEN",
    409: "another process is writing the index; retry",
    422: "invalid request: the detail names the field (or the file) and what is expected",
    429: "too many requests from this client; see Retry-After",
    500: "unexpected server error",
    503: "the index is still loading (or failed to load: the detail says why); see Retry-After",
}


def _responses(*codes: int) -> dict:
    return {c: {"model": ErrorBody, "description": _DESCRIPTIONS[c]} for c in (*codes, 500)}


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": _ERROR_CODES.get(status, "error"), "detail": detail}, status_code=status, headers=headers)


def _validation_detail(errors: list[dict]) -> str:
    """Pydantic's errors as one line: ``k: Input should be less than or equal to 20 (got 500)``."""
    parts = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]
        kind, msg, got = e.get("type"), str(e.get("msg", "invalid")).removeprefix("Value error, "), e.get("input")
        if kind == "json_invalid":
            parts.append(f"invalid JSON at character {loc[0] if loc else 0}: {(e.get('ctx') or {}).get('error', msg)}")
            continue
        where = ".".join(str(x) for x in loc)
        if not where:
            parts.append("request body missing: send a JSON object" if kind == "missing" else msg)
            continue
        if kind == "string_pattern_mismatch" and where.split(".")[-1] in ("date_from", "date_to"):
            msg = "must be an ISO date like 2021-12-03 (or 2021, 2021-12)"
        if kind == "string_pattern_mismatch" and where in ("query", "question"):
            msg = "query is empty: type a question or some keywords"
        shown = "" if kind == "missing" or isinstance(got, (dict, list)) else f" (got {got!r:.60})"
        parts.append(f"{where}: {msg}{shown}")
    return "; ".join(parts) or "invalid request"


_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")
bearer = HTTPBearer(auto_error=False, description="RAG_ADMIN_TOKEN, needed to change the articles when it is set")


def _writer(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict:
    """The caller's token and whether the request came through a proxy, for Service.authorize_write."""
    return {"token": cred.credentials if cred else None, "via_proxy": any(h in request.headers for h in _PROXY_HEADERS)}


def make_api(service: Service) -> FastAPI:
    api = FastAPI(title="新闻问答 API", version=rag.__version__,
                  description="Cited answers from Chinese news. Every error is JSON `{\"error\", \"detail\"}`. "
                              "Reading is open; changing the articles needs `Authorization: Bearer <RAG_ADMIN_TOKEN>` "
                              "(or, without a token, an app listening on 127.0.0.1 only).")

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_detail(e.errors()))

    @api.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))

    @api.exception_handler(QueryError)
    async def _bad_request(_: Request, e: QueryError) -> JSONResponse:
        return _error(422, str(e))

    @api.exception_handler(SourceError)
    async def _bad_source(_: Request, e: SourceError) -> JSONResponse:
        return _error(422, str(e))

    @api.exception_handler(AccessError)
    async def _access(_: Request, e: AccessError) -> JSONResponse:
        if e.read_only:
            return _error(403, str(e))
        return _error(401, str(e), {"WWW-Authenticate": "Bearer"})

    @api.exception_handler(RateLimitError)
    async def _slow_down(_: Request, e: RateLimitError) -> JSONResponse:
        return _error(429, str(e), {"Retry-After": str(e.retry_after)})

    @api.exception_handler(NotReadyError)
    async def _not_ready(_: Request, e: NotReadyError) -> JSONResponse:
        return _error(503, str(e), {"Retry-After": "5"})

    @api.exception_handler(IndexLockedError)
    async def _locked(_: Request, e: IndexLockedError) -> JSONResponse:
        return _error(409, str(e), {"Retry-After": "5"})

    @api.exception_handler(RagError)
    async def _rag_error(_: Request, e: RagError) -> JSONResponse:
        log.error("request failed: %s", e)
        return _error(500, f"{type(e).__name__}: {e}")

    @api.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"unexpected {type(e).__name__}; the server log has the details")

    @api.post("/api/search", summary="Passages for a query", response_model=SearchResult,
              responses=_responses(400, 422, 503))
    def search(body: SearchBody) -> dict:
        passages = service.search(body.query, body.k, sources=body.sources, date_from=body.date_from, date_to=body.date_to)
        return {"passages": [p.to_dict() for p in passages]}

    @api.post("/api/ask", summary="A cited answer", response_model=AnswerOut, responses=_responses(400, 422, 503))
    def ask(body: AskBody) -> dict:
        f = body.filters or FilterBody()
        return service.ask(body.question, [m.model_dump() for m in body.history or []], k=body.k,
                           sources=f.sources, date_from=f.date_from, date_to=f.date_to).to_dict()

    @api.post("/api/feedback", summary="Record a thumbs up/down", response_model=FeedbackOut,
              responses=_responses(400, 422, 429))
    def feedback(body: FeedbackBody, request: Request) -> dict:
        client = request.client.host if request.client else "unknown"
        path = service.feedback(body.question, body.answer, body.sources, body.vote, client=client)
        return {"ok": True, "file": str(path)}

    writes = "Needs `Authorization: Bearer <RAG_ADMIN_TOKEN>` when the token is set; 403 when the app is read-only."

    @api.post(
        "/api/documents",
        summary="Upload article files and index them",
        description=(
            f"Multipart upload of up to {MAX_UPLOAD_FILES} files ({', '.join(UPLOAD_SUFFIXES)}) under the field `files`. "
            "Every file is checked before any is saved: a bad name, an unsupported type, more than 16 MB, text that is "
            "not UTF-8, GB18030 or Big5, or content without an article gives 422 naming the file, and nothing is saved. "
            "Each file is saved in the data folder under its own name; a file of that name is replaced, reported as "
            "`updated` and kept for `POST /api/documents/restore`. Then the index is brought up to date; requests "
            "keep being answered meanwhile. " + writes
        ),
        response_model=UploadResult,
        responses=_responses(400, 401, 403, 409, 422, 503),
    )
    async def documents(files: list[UploadFile] = File(..., description="article files"),
                        who: dict = Depends(_writer)) -> dict:
        service.authorize_write(**who)  # before reading the bodies
        payload = [(f.filename or "", await f.read(MAX_FILE_BYTES + 1)) for f in files]
        return await run_in_threadpool(lambda: service.upload(payload, **who))

    @api.delete("/api/documents/{name}", summary="Remove an article file (kept for restore)",
                description="The file leaves the data folder and the index; `POST /api/documents/restore` puts it back. " + writes,
                response_model=DeleteResult, responses=_responses(401, 403, 409, 422, 503))
    def delete(name: Annotated[str, PathParam(max_length=300, description="file name in the data folder")],
               who: dict = Depends(_writer)) -> dict:
        return service.delete(name, **who)

    @api.post("/api/documents/restore", summary="Undo the last upload or removal of a file",
              description="Puts back the kept copy of `name` (the newest, or `version`) and updates the index; the file "
                          "it replaces is kept in turn, so running it again undoes the restore. " + writes,
              response_model=RestoreResult, responses=_responses(400, 401, 403, 409, 422, 503))
    def restore(body: RestoreBody, who: dict = Depends(_writer)) -> dict:
        return service.restore(body.name, body.version, **who)

    @api.get("/api/documents/kept", summary="Kept copies of replaced and removed files, newest first",
             response_model=list[KeptFile], responses=_responses(401, 403))
    def kept(who: dict = Depends(_writer)) -> list[dict]:
        return service.kept(**who)

    @api.get("/api/health", summary="Index status, publications and who may upload", response_model=HealthOut,
             responses=_responses())
    def health() -> dict:
        return {"ready": service.ready, "status": service.status, "sources": service.sources(), "writes": service.writes}

    def openapi() -> dict:
        """FastAPI's schema; the bearer token is optional while writes are open (loopback, no token)."""
        if api.openapi_schema is None:
            spec = FastAPI.openapi(api)
            if service.writes != "token":
                for ops in spec["paths"].values():
                    for op in ops.values():
                        if "security" in op:
                            op["security"] = [*op["security"], {}]
            api.openapi_schema = spec
        return api.openapi_schema

    api.openapi = openapi
    known = {r.path: r.methods for r in api.routes if isinstance(r, APIRoute)}

    @api.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    def unknown(path: str, request: Request) -> JSONResponse:
        allowed = known.get(f"/api/{path}")
        if allowed:
            return _error(405, f"{request.method} is not allowed on /api/{path}; use {', '.join(sorted(allowed))}",
                          {"Allow": ", ".join(sorted(allowed))})
        return _error(404, f"no such endpoint /api/{path}; the API is described at /docs")

    return api


# --- chat page ----------------------------------------------------------------------------
def _linked(text: str, n_sources: int) -> str:
    """Citation markers [n] as links to the source cards."""
    return re.sub(
        r"\[(\d{1,2})\]",
        lambda m: f'<a href="#src-{m.group(1)}" class="cite">[{m.group(1)}]</a>' if 1 <= int(m.group(1)) <= n_sources else m.group(0),
        text,
    )


def _find_in_either_script(text: str, span: str) -> int:
    """Where ``span`` (in the question's script) starts in ``text`` (in the article's), or -1."""
    if not span:
        return -1
    k = text.find(span)
    if k < 0:
        folded = to_simplified(text)
        if len(folded) == len(text):  # character for character, so offsets carry over
            k = folded.find(to_simplified(span))
    return k


def _highlighted(passage: str, sentence: str, span: str = "") -> str:
    """The passage with its supporting sentence marked, and the short answer inside it marked again."""
    i = passage.find(sentence) if sentence else -1
    if i < 0:
        return html.escape(passage)
    j = i + len(sentence)
    inner = html.escape(passage[i:j])
    k = _find_in_either_script(passage[i:j], span)
    if k >= 0:
        a, b = i + k, i + k + len(span)
        inner = (html.escape(passage[i:a]) + '<span class="span">' + html.escape(passage[a:b]) + "</span>"
                 + html.escape(passage[b:j]))
    return html.escape(passage[:i]) + "<mark>" + inner + "</mark>" + html.escape(passage[j:])


def _date(d: str | None) -> str:
    m = re.fullmatch(r"--(\d{2})-(\d{2})", d or "")
    return f"{int(m.group(1))}月{int(m.group(2))}日（未注明年份）" if m else (d or "日期不详")


def _also(p: rag.Passage) -> str:
    """Where else the story ran (folded into this passage): "亦见于：湖北日报、新民晚报", and for
    articles without a named outlet their number ("另有2篇相同报道")."""
    outlets = [x for x in p.also_in if x not in p.same_story]
    unnamed = len(p.also_in) - len(outlets)
    parts = []
    if outlets:
        parts.append("亦见于：" + "、".join(outlets))
    if unnamed:
        parts.append(f"另有{unnamed}篇相同报道")
    return "；".join(parts)


def _cards(answer: rag.Answer, id_prefix: str) -> str:
    cards = []
    for n, p in enumerate(answer.citations, 1):
        hl = answer.highlights[n - 1] if n - 1 < len(answer.highlights) else ""
        meta = " · ".join(html.escape(x) for x in (p.source or "来源不详", _date(p.date), _also(p)) if x)
        title = html.escape(p.title)
        if p.url:
            title = f'<a href="{html.escape(p.url)}" target="_blank" rel="noopener">{title}</a>'
        span = answer.short if n == 1 else ""
        text = _highlighted(p.text, hl, span).replace("\n", "<br>")  # no raw newline: the chat renders Markdown
        cards.append(
            f'<div class="src" id="{id_prefix}{n}"><div><b>[{n}]</b> {title}</div>'
            f'<div class="src-meta">{meta}</div><p class="src-text">{text}</p></div>'
        )
    return "".join(cards)


def sources_html(answer: rag.Answer | None) -> str:
    """The side panel of the latest answer's sources (wide screens)."""
    if answer is None or not answer.citations:
        return '<div class="sources-panel"><p>（暂无出处）</p></div>'
    return '<div class="sources-panel">' + _cards(answer, "src-") + "</div>"


def inline_sources_html(answer: rag.Answer) -> str:
    """The sources directly under an answer in the chat, for narrow screens (CSS hides them on wide
    ones): one line per source, tap to unfold the passages with the supporting sentence marked."""
    if not answer.citations:
        return ""
    heads = "".join(
        f'<span class="inline-src">[{n}] {html.escape(p.title)} · {html.escape(p.source or "来源不详")} · {html.escape(_date(p.date))}</span>'
        for n, p in enumerate(answer.citations, 1)
    )
    return (f'<details class="inline-sources"><summary><b>出处</b>（点开看原文）{heads}</summary>'
            f'{_cards(answer, "m-src-")}</details>')


_INLINE = re.compile(r'\s*<details class="inline-sources">.*?</details>', re.DOTALL)


def without_inline_sources(message: dict) -> dict:
    """A chat message without its inline sources (only the latest answer keeps them)."""
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _INLINE.sub("", content)}
    if isinstance(content, list):
        parts = [{**p, "text": _INLINE.sub("", p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                 for p in content]
        return {**message, "content": parts}
    return message


def _same_question(a: str, b: str) -> bool:
    return re.sub(r"[\s？?。！!，,]", "", a) == re.sub(r"[\s？?。！!，,]", "", b)


def answer_markdown(answer: rag.Answer, asked: str | None = None) -> str:
    """The short answer in bold, then the supporting sentences with linked citations; for a
    follow-up read differently from how it was typed, the question answered, so a wrong reading shows."""
    parts = []
    if asked is not None and answer.question and not _same_question(asked, answer.question):
        parts.append(f'<span class="asked">按“{html.escape(answer.question)}”回答</span>')
    if answer.short:
        parts.append(f'<b class="short">{html.escape(answer.short)}</b>')
    parts.append(_linked(html.escape(answer.text), len(answer.citations)))
    text = "\n\n".join(parts)
    if answer.note:
        text += f'\n\n<span class="note">⚠ {html.escape(answer.note)}</span>'
    return text


def chat_message(answer: rag.Answer, asked: str | None = None) -> str:
    """The answer as shown in the chat: linked citations, then the sources (for narrow screens)."""
    inline = inline_sources_html(answer)
    return answer_markdown(answer, asked) + ("\n\n" + inline if inline else "")


_FILE_STATUS = {"new": "新文件", "updated": "更新（替换了同名文件，旧文件已保留）", "unchanged": "未变化"}


def upload_files(service: Service, paths: list | None, token: str | None = None, via_proxy: bool = False) -> str:
    """The upload tab's handler: save the uploaded files (Gradio temp paths, original names kept)
    into the data folder, update the index, and describe what changed as Markdown."""
    if not paths:
        return "请先选择要上传的文件。"
    files = []
    for p in paths:
        path = getattr(p, "name", None) or getattr(p, "path", None) or str(p)
        with open(path, "rb") as f:
            files.append((os.path.basename(path), f.read(MAX_FILE_BYTES + 1)))
    try:
        r = service.upload(files, token=token or None, via_proxy=via_proxy)
    except AccessError as e:
        return f"⚠ 未上传：{'管理口令不对或未填写。' if not e.read_only else '本服务为只读。'}（{e}）"
    except QueryError as e:
        return f"⚠ 未上传，没有保存任何文件：{e}"
    except (NotReadyError, IndexLockedError) as e:
        return f"⚠ 暂时无法更新索引，没有保存任何文件：{e}"
    except RagError as e:
        log.error("upload failed: %s", e)
        return f"⚠ 更新失败，没有保存任何文件：{e}"
    lines = ["### 更新报告", ""]
    lines += [f"- {html.escape(f['name'])}：{_FILE_STATUS.get(f['status'], f['status'])}" for f in r["files"]]
    lines += [
        "",
        f"新增文章 {len(r['added'])} 篇，修改 {len(r['changed'])} 篇，删除 {len(r['removed'])} 篇，"
        f"未变 {r['unchanged']} 篇；嵌入 {r['embedded']} 个段落（复用 {r['reused']} 个），用时 {r['seconds']:.1f} 秒。",
    ]
    if any(f["status"] == "updated" for f in r["files"]):
        lines += ["", "被替换的旧文件保存在数据文件夹的 .trash/ 中，可用 `POST /api/documents/restore` 恢复（见 README）。"]
    if r["errors"]:
        lines += ["", f"**{len(r['errors'])} 处无法读取：**"] + [f"- {html.escape(e)}" for e in r["errors"]]
    return "\n".join(lines)


def _via_proxy(request: gr.Request | None) -> bool:
    headers = getattr(request, "headers", None) or {}
    return any(h in headers for h in _PROXY_HEADERS)


def _client(request: gr.Request | None) -> str:
    client = getattr(request, "client", None)
    return getattr(client, "host", None) or "unknown"


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
                        gr.Markdown("### 出处", elem_id="sources-heading")
                        panel = gr.HTML(sources_html(None), elem_id="sources")
                        with gr.Accordion("筛选", open=False):
                            pubs = gr.Dropdown(choices=service.sources(), multiselect=True, label="媒体（不选则全部）")
                            date_from = gr.Textbox(label="起始日期", placeholder="2021-01-01")
                            date_to = gr.Textbox(label="结束日期", placeholder="2021-12-31")
                            k = gr.Slider(1, 10, value=3, step=1, label="参考段落数（top-k）")
            if service.writes != "read-only":  # read-only: no upload tab (and no handler to call)
                with gr.Tab("上传文章", id="upload-tab"):
                    gr.Markdown(
                        "上传 .txt、.md、.html 或 .jsonl 文件（UTF-8、GB18030 或 Big5）：每个文件先检查，"
                        "有一个读不出文章就一个也不保存；通过后保存到数据文件夹并加入索引，更新期间问答照常进行。"
                        "同名文件会被替换（报告中标为“更新”），旧文件保留在 .trash/ 中以便恢复。"
                    )
                    token = gr.Textbox(label="管理口令（RAG_ADMIN_TOKEN）", type="password", elem_id="admin-token",
                                       visible=service.writes == "token")
                    files = gr.File(label="文章文件（拖到这里，或点击选择）", file_count="multiple",
                                    file_types=list(UPLOAD_SUFFIXES), elem_id="upload-files")
                    upload_btn = gr.Button("上传并更新索引", variant="primary", elem_id="upload")
                    upload_report = gr.Markdown(elem_id="upload-report")

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
                                                "sources": [_feedback_source(p) for p in item.citations]}
                        yield (turn + [{"role": "assistant", "content": chat_message(item, message)}],
                               sources_html(item), "", memo)
            except ValidationError as e:
                text = "⚠ 筛选条件有误：" + _validation_detail(e.errors())
                yield turn + [{"role": "assistant", "content": html.escape(text)}], gr.update(), "", memo
            except (QueryError, NotReadyError) as e:
                text = "请先输入问题。" if isinstance(e, QueryError) and "empty" in str(e) else f"⚠ {e}"
                yield turn + [{"role": "assistant", "content": html.escape(text)}], gr.update(), "", memo

        inputs = [box, chat, pubs, date_from, date_to, k, last]
        outputs = [chat, panel, box, last]
        # several chats at once: retrieval is thread-safe and each turn is short
        box.submit(ask, inputs, outputs, api_name="ask", concurrency_limit=4)
        send.click(ask, inputs, outputs, api_name=False, concurrency_limit=4)
        clear.click(lambda: ([], sources_html(None), {}), None, [chat, panel, last], api_name=False)

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

        chat.like(vote, [chat, last], None, api_name=False)

        def refresh():
            return service.status, gr.update(choices=service.sources())

        if service.writes != "read-only":
            def on_upload(paths: list | None, key: str, request: gr.Request):
                return upload_files(service, paths, key, _via_proxy(request)), *refresh()

            upload_btn.click(on_upload, [files, token], [upload_report, status, pubs], api_name=False)

        timer = gr.Timer(2.0)
        timer.tick(lambda: (*refresh(), gr.Timer(active=not service.ready)), None, [status, pubs, timer], api_name=False)
        demo.load(refresh, None, [status, pubs], api_name=False)
    return demo


def _feedback_source(p: rag.Passage) -> dict:
    """What a vote records of a cited passage: enough to find it again, not its text."""
    return {"doc_id": p.doc_id, "chunk_id": p.chunk_id, "title": p.title, "source": p.source, "date": p.date}


# Gradio picks its own words (upload area, buttons, tooltips) by the browser's language; the page is
# Chinese whatever the browser says, so the page tells Gradio the browser prefers Chinese.
_ZH_SCRIPT = (b"<script>(function(){var l=['zh-CN','zh'];try{Object.defineProperty(navigator,'language',"
              b"{get:function(){return l[0]}});Object.defineProperty(navigator,'languages',{get:function(){return l}})}"
              b"catch(e){}})();</script>")


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


_NOISY = ("faiss", "bm25s", "httpx", "httpcore", "urllib3", "gradio", "gradio_client", "jieba", "sentence_transformers",
          "huggingface_hub", "onnxruntime", "asyncio", "multipart", "python_multipart", "charset_normalizer", "PIL")


def _quiet_third_parties(record: logging.LogRecord) -> bool:
    """Below WARNING, only our own lines: not the libraries' loaders, progress or every HTTP call."""
    return record.levelno >= logging.WARNING or record.name.split(".")[0] not in _NOISY


def main(argv: list[str] | None = None) -> None:
    """The edge: reads the command line and environment and hands them to Service as arguments."""
    p = argparse.ArgumentParser(description="新闻问答 chat and REST API")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                   help="port (default 7860; env GRADIO_SERVER_PORT)")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   help="interface to listen on (default 127.0.0.1; 0.0.0.0 for all, read-only unless RAG_ADMIN_TOKEN is set)")
    p.add_argument("--data", default=os.environ.get("RAG_DATA_DIR", "data"), help="articles folder (env RAG_DATA_DIR)")
    p.add_argument("--index", default=os.environ.get("RAG_INDEX_DIR", "index"), help="index folder (env RAG_INDEX_DIR)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # a filter, as some set their own level when imported (bm25s)
        handler.addFilter(_quiet_third_parties)
    service = Service(
        args.data, args.index,
        config=rag.Config.from_env(),
        feedback_dir=os.environ.get("RAG_FEEDBACK_DIR") or "feedback",
        admin_token=os.environ.get("RAG_ADMIN_TOKEN") or None,
        local_only=listens_on_loopback_only(args.host),
    )
    service.start_in_background(show_progress=sys.stderr.isatty())  # progress bars on a terminal only
    log.info("chat on http://%s:%d/ , API docs on http://%s:%d/docs", args.host, args.port, args.host, args.port)
    log.info({"token": "changing the articles needs RAG_ADMIN_TOKEN",
              "local": "anyone on this machine may upload (listening on loopback only; set RAG_ADMIN_TOKEN to require a key)",
              "read-only": f"read-only: listening on {args.host} without RAG_ADMIN_TOKEN, so uploads are off"}[service.writes])
    uvicorn.run(make_app(service), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
