"""Serving: framework-free request handling for the chat and REST API (index lifecycle, validation, feedback)."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .answering import Assistant
from .config import Config
from .errors import NotReadyError, QueryError, RagError
from .llm import ChatModel
from .records import Answer
from .query import Query
from .retrieval import Retriever
from .sources import MAX_FILE_BYTES, SUPPORTED_SUFFIXES

__all__ = ["Service", "Filters", "MAX_K", "UPLOAD_SUFFIXES", "history_messages"]

log = logging.getLogger(__name__)

MAX_K = 20
UPLOAD_SUFFIXES = SUPPORTED_SUFFIXES
_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


@dataclass(frozen=True)
class Filters:
    """Validated search filters: publications and an inclusive ISO date range."""

    sources: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None

    @classmethod
    def make(cls, sources: Any = None, date_from: Any = None, date_to: Any = None) -> "Filters":
        if isinstance(sources, str):
            sources = [sources]
        if sources is not None and not (isinstance(sources, (list, tuple)) and all(isinstance(s, str) for s in sources)):
            raise QueryError("sources must be a list of publication names, e.g. [\"长江日报\"]")
        dates = []
        for name, value in (("date_from", date_from), ("date_to", date_to)):
            value = (value or "").strip() if isinstance(value, str) or value is None else value
            if value and not (isinstance(value, str) and _DATE.fullmatch(value)):
                raise QueryError(f"{name} must be an ISO date like 2021-12-03 (or 2021, 2021-12), got {value!r}")
            dates.append(value or None)
        if dates[0] and dates[1] and dates[0] > dates[1]:
            raise QueryError(f"date_from ({dates[0]}) is after date_to ({dates[1]})")
        return cls(tuple(s for s in (sources or []) if s.strip()), dates[0], dates[1])

    def kwargs(self) -> dict[str, Any]:
        return {"sources": list(self.sources) or None, "date_from": self.date_from, "date_to": self.date_to}


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be a whole number from 1 to {MAX_K}, got {k!r}")
    return k


def history_messages(history: Any) -> list[dict]:
    """Chat history as plain ``{"role", "content": str}`` dicts (Gradio may send content as a list of parts)."""
    if history is None:
        return []
    if not isinstance(history, list):
        raise QueryError("history must be a list of {\"role\": ..., \"content\": ...} messages")
    out = []
    for turn in history:
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            raise QueryError("each history message needs role 'user' or 'assistant' and a content")
        content = turn.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
        if isinstance(content, str):
            out.append({"role": turn["role"], "content": content})
    return out


class Service:
    """The index and assistant behind the web app: built or loaded once, in the background.

    Example::

        svc = Service("data", "index")
        svc.start()                      # builds index/ when stale, else loads it
        svc.search({"query": "江岸签约", "k": 3})     # {"passages": [...]}
        svc.ask({"question": "江岸签约了哪些项目？"})  # Answer.to_dict()
    """

    def __init__(
        self,
        data_dir: str | Path,
        index_dir: str | Path,
        *,
        config: Config | None = None,
        feedback_dir: str | Path | None = None,
        llm: ChatModel | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.index_dir = Path(index_dir)
        self.config = config or Config.from_env()
        self.feedback_dir = Path(feedback_dir or os.environ.get("RAG_FEEDBACK_DIR") or "feedback")
        self.llm = llm if llm is not None else ChatModel.from_config(self.config)
        self.status = "not started"
        self.error: str | None = None
        self.retriever: Retriever | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._feedback_lock = threading.Lock()
        self._reload_lock = threading.Lock()  # one request at a time loads a new generation
        self._write_lock = threading.Lock()  # uploads of this process one after another

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, show_progress: bool = False) -> None:
        """Build the index when it is stale (logging why), else load it. Safe to call once per process."""
        with self._lock:
            if self._ready.is_set():
                return
            try:
                reason = Retriever.is_stale(self.data_dir, self.index_dir, self.config)
                if reason:
                    self.status = f"正在建立索引（{reason}）…"
                    log.info("building %s from %s: %s", self.index_dir, self.data_dir, reason)
                    self.retriever = Retriever.build(self.data_dir, self.index_dir, config=self.config, show_progress=show_progress)
                else:
                    self.status = "正在载入索引…"
                    log.info("loading index %s", self.index_dir)
                    self.retriever = Retriever.load(self.index_dir, config=self.config)
                self._set_ready_status(self.retriever)
                log.info("ready: %s", self.status)
            except Exception as e:  # recorded so requests get 503 with the reason instead of waiting forever
                self.error = str(e) if isinstance(e, RagError) else f"{type(e).__name__}: {e}"
                self.status = f"索引不可用：{e}"
                log.error("index unavailable: %s", e)
                raise
            finally:
                self._ready.set()

    def start_in_background(self, show_progress: bool = False) -> threading.Thread:
        def run() -> None:
            try:
                self.start(show_progress)
            except Exception:
                pass  # logged and recorded in self.error; requests get 503 with the reason

        t = threading.Thread(target=run, name="rag-index", daemon=True)
        t.start()
        return t

    @property
    def ready(self) -> bool:
        return self.retriever is not None

    def wait(self, timeout: float | None = None) -> bool:
        self._ready.wait(timeout)
        return self.ready

    def _set_ready_status(self, r: Retriever) -> None:
        self.status = f"就绪：{len(r.articles)} 篇文章，{len(r.chunks)} 个段落"

    def _retriever(self) -> Retriever:
        """The live retriever, after swapping in a generation another process published (``rag add``,
        ``rag sync``). The check reads one small file; when it finds a new generation, one request
        loads it while the others go on with the old retriever, and every request finishes on the
        retriever it started with."""
        r = self.retriever
        if r is None:
            raise NotReadyError(self.error or f"index {self.index_dir} is still loading; retry in a few seconds")
        if not self._reload_lock.acquire(blocking=False):
            return r
        try:
            r = self.retriever
            fresh = r.latest()
            if fresh is not r:
                self.retriever = fresh
                self._set_ready_status(fresh)
                log.info("now serving %s", self.status)
            return fresh
        finally:
            self._reload_lock.release()

    def assistant(self, k: int | None = None) -> Assistant:
        r = self._retriever()
        config = r.config.with_(answer_passages=k) if k else r.config
        return Assistant(r, config, llm=self.llm)

    def sources(self) -> list[str]:
        return self._retriever().sources() if self.retriever else []

    # --- requests ----------------------------------------------------------------------------
    def search(self, req: dict) -> dict:
        """``{query, k?, sources?, date_from?, date_to?}`` → ``{"passages": [Passage.to_dict()]}``."""
        query = Query.of(req.get("query")).text
        k = check_k(req.get("k", 5))
        f = Filters.make(req.get("sources"), req.get("date_from"), req.get("date_to"))
        return {"passages": [p.to_dict() for p in self._retriever().search(query, k, **f.kwargs())]}

    def _ask_args(self, req: dict) -> tuple[str, list[dict], int | None, Filters]:
        question = Query.of(req.get("question")).text
        k = check_k(req["k"]) if req.get("k") is not None else None
        raw = req.get("filters") or {}
        if not isinstance(raw, dict):
            raise QueryError("filters must be an object with sources, date_from, date_to")
        f = Filters.make(raw.get("sources", req.get("sources")), raw.get("date_from", req.get("date_from")),
                         raw.get("date_to", req.get("date_to")))
        return question, history_messages(req.get("history")), k, f

    def ask(self, req: dict) -> dict:
        """``{question, history?, k?, filters?: {sources, date_from, date_to}}`` → ``Answer.to_dict()``."""
        question, history, k, f = self._ask_args(req)
        return self.assistant(k).ask(question, history=history, **f.kwargs()).to_dict()

    def stream(self, req: dict) -> Iterator[str | Answer]:
        question, history, k, f = self._ask_args(req)
        return self.assistant(k).stream(question, history=history, **f.kwargs())

    # --- uploads ----------------------------------------------------------------------------
    def upload(self, files: list[tuple[str, bytes]]) -> dict:
        """Save uploaded article files into the data folder and bring the index up to date with it.

        ``files`` are ``(file name, content)`` pairs. The name is kept (without any folder part);
        a file of that name already in the folder is replaced and reported as ``updated``
        (``unchanged`` when the bytes are the same). The index follows the folder with
        ``Retriever.sync``, so a replaced file's old articles go away. Requests keep being answered
        on the old index until the new one is saved. Returns ``{"files": [{name, status}],
        **UpdateReport, "summary"}``; unreadable files are listed by name in ``errors``.

        Raises QueryError, naming the file, for an unsupported type, a bad name or a file over the
        size limit; nothing is written then.
        """
        if not files:
            raise QueryError("no files: upload one or more .txt, .md, .html or .jsonl files")
        checked: list[tuple[str, bytes]] = []
        for raw_name, content in files:
            name = (raw_name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
            if not name or name.startswith("."):
                raise QueryError(f"file name {raw_name!r} is not usable: give the file a name like article.txt")
            if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
                raise QueryError(
                    f"{name}: unsupported file type {Path(name).suffix or '(none)'!r}; "
                    f"upload {', '.join(UPLOAD_SUFFIXES)} files"
                )
            if len(content) > MAX_FILE_BYTES:
                raise QueryError(
                    f"{name}: file is {len(content) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB per file: "
                    "split it into several uploads, or put a larger corpus in the data folder (`rag add FILE`)"
                )
            checked.append((name, content))
        live = self._retriever()
        with self._write_lock:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            saved = []
            for name, content in checked:
                target = self.data_dir / name
                status = "new"
                if target.exists():
                    status = "unchanged" if target.read_bytes() == content else "updated"
                if status != "unchanged":
                    tmp = self.data_dir / f".upload-{os.getpid()}-{threading.get_ident()}-{name}"
                    tmp.write_bytes(content)
                    os.replace(tmp, target)
                    log.info("upload: %s %s (%d bytes)", status, target, len(content))
                saved.append({"name": name, "status": status})
            # the update hands back a new retriever: requests in flight keep the live one untouched
            report = (self.retriever or live).sync(self.data_dir)
            self.retriever = report.retriever
            self._set_ready_status(report.retriever)
        return {"files": saved, **report.to_dict(), "summary": report.summary()}

    # --- feedback ----------------------------------------------------------------------------
    def feedback(self, question: str, answer: str, sources: list, vote: str) -> Path:
        """Append one vote (``up`` / ``down``) to ``<feedback_dir>/feedback.jsonl``; returns the file."""
        if vote not in ("up", "down"):
            raise QueryError(f"vote must be 'up' or 'down', got {vote!r}")
        self.feedback_dir.mkdir(parents=True, exist_ok=True)
        path = self.feedback_dir / "feedback.jsonl"
        record = {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "question": question,
            "answer": answer,
            "sources": sources,
            "vote": vote,
        }
        with self._feedback_lock, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        log.info("feedback %s recorded in %s", vote, path)
        return path
