"""The REST API under /api: request and response schema, errors mapped to JSON ``{error, detail}``, the routes."""
from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, File, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...errors import AccessError, IndexLockedError, NotFoundError, NotReadyError, QueryError, RagError, RateLimitError, SourceError
from ...reading.sources import MAX_FILE_BYTES
from ...version import __version__
from ..service import MAX_K, MAX_UPLOAD_FILES, UPLOAD_SUFFIXES, Service

log = logging.getLogger(__name__)

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
    per_article: Annotated[StrictInt, Field(ge=1, le=MAX_K)] | None = Field(
        1, description="passages of one article at most (default 1: each article once; null: any number)")


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


class PassageOut(BaseModel):  # the REST schema of rag.records.Passage.to_dict(): the same fields, by design
    doc_id: str
    title: str
    date: str | None = Field(..., description="ISO date when the year is known: 2021-12-03 (or 2021 when only the "
                             "year is stated); null when the article states no year", examples=["2021-12-03"])
    month: int | None = Field(None, description="the month the article states (1-12), also without a year; else null")
    day: int | None = Field(None, description="the day of the month the article states, also without a year; else null")
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
    text: str = Field(..., description="the supporting sentences, citing passages as [1], [2]; when other "
                      "stories answer the question differently, a last line names them (另见：…[4])")
    story: str = Field(..., description="which story the answer comes from: 《title》（outlet，date） of citations[0]; "
                       "empty when declining")
    others: list[int] = Field(..., description="1-based numbers of the citations from other stories that answer "
                              "the question differently")
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
    404: "no such file in the data folder (the detail names it)",
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


def validation_detail(errors: list[dict]) -> str:
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


def came_through_proxy(headers: Any) -> bool:
    """Whether a request carries a proxy's forwarding header (then it is not a loopback caller's)."""
    return any(h in headers for h in _PROXY_HEADERS)


def _writer(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> dict:
    """The caller's token and whether the request came through a proxy, for Service.authorize_write."""
    return {"token": cred.credentials if cred else None, "via_proxy": came_through_proxy(request.headers)}


# each library error as (status, extra headers); AccessError depends on the case, RagError last
_ERROR_STATUS: list[tuple[type[RagError], int, dict | None]] = [
    (NotFoundError, 404, None),
    (QueryError, 422, None),
    (SourceError, 422, None),
    (RateLimitError, 429, None),  # Retry-After from the error
    (NotReadyError, 503, {"Retry-After": "5"}),
    (IndexLockedError, 409, {"Retry-After": "5"}),
]


def client_address(request: Request) -> str:
    """The caller's address as the server sees it (a proxy's, behind one)."""
    return request.client.host if request.client else "unknown"


def _logged_if_refused_write(request: Request, status: int, detail: str) -> None:
    """A refused change of the articles (401, 403, or a 4xx from the document routes) in the log,
    with the client's address: who tried what, and why it was refused."""
    if status in (401, 403) or (request.url.path.startswith("/api/documents") and 400 <= status < 500):
        log.warning("refused %s %s from %s: %d %s", request.method, request.url.path, client_address(request),
                    status, detail[:300])


def _add_error_handlers(api: FastAPI) -> None:
    """Every error as JSON ``{error, detail}`` with the status and headers that fit it."""

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        detail = validation_detail(e.errors())
        _logged_if_refused_write(request, 422, detail)
        return _error(422, detail)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        _logged_if_refused_write(request, e.status_code, str(e.detail))
        return _error(e.status_code, str(e.detail), getattr(e, "headers", None))

    for kind, status, headers in _ERROR_STATUS:
        async def handler(request: Request, e: RagError, status=status, headers=headers) -> JSONResponse:
            _logged_if_refused_write(request, status, str(e))
            if isinstance(e, RateLimitError):
                return _error(status, str(e), {"Retry-After": str(e.retry_after)})
            return _error(status, str(e), headers)

        api.add_exception_handler(kind, handler)

    @api.exception_handler(AccessError)
    async def _access(request: Request, e: AccessError) -> JSONResponse:
        status = 403 if e.read_only else 401
        _logged_if_refused_write(request, status, str(e))
        if e.read_only:
            return _error(403, str(e))
        return _error(401, str(e), {"WWW-Authenticate": "Bearer"})

    @api.exception_handler(RagError)
    async def _rag_error(_: Request, e: RagError) -> JSONResponse:
        log.error("request failed: %s", e)
        return _error(500, f"{type(e).__name__}: {e}")

    @api.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, f"unexpected {type(e).__name__}; the server log has the details")


def _add_reading_routes(api: FastAPI, service: Service) -> None:
    """Search, ask and feedback: open to every caller."""

    @api.post("/api/search", summary="Passages for a query", response_model=SearchResult,
              responses=_responses(400, 422, 503))
    def search(body: SearchBody) -> dict:
        passages = service.search(body.query, body.k, sources=body.sources, date_from=body.date_from, date_to=body.date_to,
                                  per_article=body.per_article)
        return {"passages": [p.to_dict() for p in passages]}

    @api.post("/api/ask", summary="A cited answer", response_model=AnswerOut, responses=_responses(400, 422, 503))
    def ask(body: AskBody) -> dict:
        f = body.filters or FilterBody()
        return service.ask(body.question, [m.model_dump() for m in body.history or []], k=body.k,
                           sources=f.sources, date_from=f.date_from, date_to=f.date_to).to_dict()

    @api.post("/api/feedback", summary="Record a thumbs up/down", response_model=FeedbackOut,
              responses=_responses(400, 422, 429))
    def feedback(body: FeedbackBody, request: Request) -> dict:
        path = service.feedback(body.question, body.answer, body.sources, body.vote, client=client_address(request))
        return {"ok": True, "file": str(path)}


_WRITES = "Needs `Authorization: Bearer <RAG_ADMIN_TOKEN>` when the token is set; 403 when the app is read-only."


def _add_document_routes(api: FastAPI, service: Service) -> None:
    """Upload, delete, restore and the kept copies: for callers allowed to write."""

    @api.post(
        "/api/documents",
        summary="Upload article files and index them",
        description=(
            f"Multipart upload of up to {MAX_UPLOAD_FILES} files ({', '.join(UPLOAD_SUFFIXES)}) under the field `files`. "
            "Every file is checked before any is saved: a bad name, an unsupported type, more than 16 MB, text that is "
            "not UTF-8, GB18030 or Big5, or content without an article gives 422 naming the file, and nothing is saved. "
            "Each file is saved in the data folder under its own name; a file of that name is replaced, reported as "
            "`updated` and kept for `POST /api/documents/restore`. Then the index is brought up to date; requests "
            "keep being answered meanwhile. " + _WRITES
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
                description="The file leaves the data folder and the index; `POST /api/documents/restore` puts it back. " + _WRITES,
                response_model=DeleteResult, responses=_responses(401, 403, 404, 409, 422, 503))
    def delete(name: Annotated[str, PathParam(max_length=300, description="file name in the data folder")],
               who: dict = Depends(_writer)) -> dict:
        return service.delete(name, **who)

    @api.post("/api/documents/restore", summary="Undo the last upload or removal of a file",
              description="Puts back the kept copy of `name` (the newest, or `version`) and updates the index; the file "
                          "it replaces is kept in turn, so running it again undoes the restore. " + _WRITES,
              response_model=RestoreResult, responses=_responses(400, 401, 403, 409, 422, 503))
    def restore(body: RestoreBody, who: dict = Depends(_writer)) -> dict:
        return service.restore(body.name, body.version, **who)

    @api.get("/api/documents/kept", summary="Kept copies of replaced and removed files, newest first",
             response_model=list[KeptFile], responses=_responses(401, 403))
    def kept(who: dict = Depends(_writer)) -> list[dict]:
        return service.kept(**who)


def _add_health_route(api: FastAPI, service: Service) -> None:
    """Whether the index is ready, its publications and who may write."""

    @api.get("/api/health", summary="Index status, publications and who may upload", response_model=HealthOut,
             responses=_responses())
    def health() -> dict:
        return {"ready": service.ready, "status": service.status, "sources": service.sources(), "writes": service.writes}


def _add_openapi(api: FastAPI, service: Service) -> None:
    """FastAPI's schema; the bearer token is optional while writes are open (loopback, no token)."""

    def openapi() -> dict:
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


def _add_unknown_route(api: FastAPI) -> None:
    """Any other path under /api: 405 naming the allowed methods, or 404."""
    known = {r.path: r.methods for r in api.routes if isinstance(r, APIRoute)}

    @api.api_route("/api/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                   include_in_schema=False)
    def unknown(path: str, request: Request) -> JSONResponse:
        allowed = known.get(f"/api/{path}")
        if allowed:
            return _error(405, f"{request.method} is not allowed on /api/{path}; use {', '.join(sorted(allowed))}",
                          {"Allow": ", ".join(sorted(allowed))})
        return _error(404, f"no such endpoint /api/{path}; the API is described at /docs")


def make_api(service: Service) -> FastAPI:
    """The REST API over ``service`` (the chat page is mounted on it by :func:`rag.serving.web.chat.make_app`)."""
    api = FastAPI(title="新闻问答 API", version=__version__,
                  description="Cited answers from Chinese news. Every error is JSON `{\"error\", \"detail\"}`. "
                              "Reading is open; changing the articles needs `Authorization: Bearer <RAG_ADMIN_TOKEN>` "
                              "(or, without a token, an app listening on 127.0.0.1 only).")
    _add_error_handlers(api)
    _add_reading_routes(api, service)
    _add_document_routes(api, service)
    _add_health_route(api, service)
    _add_openapi(api, service)
    _add_unknown_route(api)
    return api
