"""Serving: framework-free request handling for the chat and REST API (index lifecycle, who may
change the corpus, checked uploads kept for undo, bounded feedback)."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import shutil
import threading
import contextlib
from pathlib import Path
from typing import Any, Iterator

from ..answering.assistant import Assistant
from ..config import Config
from ..errors import AccessError, NotFoundError, NotReadyError, QueryError, RagError, SourceError
from ..engines.indexing import UpdateReport
from ..answering.llm import ChatModel
from ..records import Answer, Passage
from ..loading import freeze_survivors, kept_out_of_collections
from ..search.retrieval import Retriever
from .datafolder import TRASH_DIR, check_file_name, inside, kept_versions, prune, restore, trash_path
from .datafolder import stamp as new_stamp
from .feedback import FeedbackLimits, FeedbackLog
from ..reading.sources import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, formats_named, read_bytes

__all__ = [
    "Service",
    "FeedbackLimits",
    "MAX_K",
    "MAX_UPLOAD_FILES",
    "UPLOAD_SUFFIXES",
    "TRASH_DIR",
    "check_file_name",
    "history_messages",
    "kept_versions",
    "listens_on_loopback_only",
    "restore",
]

SHUTTING_DOWN = "the app is shutting down: nothing was changed; retry when it is back"
log = logging.getLogger(__name__)

MAX_K = 20
UPLOAD_SUFFIXES = SUPPORTED_SUFFIXES
MAX_UPLOAD_FILES = 20


def listens_on_loopback_only(host: str) -> bool:
    """True when a server bound to ``host`` is reachable from this machine alone
    (127.0.0.1, ::1, localhost); False for 0.0.0.0, ::, a LAN address or a host name."""
    host = (host or "").strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

    Reading is open. Changing the corpus (``upload``, ``delete``, ``restore``) needs
    ``admin_token`` when one is given; without one it is allowed only when ``local_only``
    (the app listens on loopback alone), else the service is read-only. Replaced and removed
    files are kept under ``<data_dir>/.trash/`` for ``restore``.

    Example::

        svc = Service("data", "index", admin_token="s3cret", local_only=False)
        svc.start()                                   # builds index/ when stale, else loads it
        svc.search("江岸签约", k=3)                   # [Passage, ...]
        svc.ask("江岸签约了哪些项目？").text           # '…等6个项目签约江岸…[1]'
        svc.upload([("new.txt", b"...")], token="s3cret")
        svc.restore("new.txt", token="s3cret")        # undo it
    """

    def __init__(
        self,
        data_dir: str | Path,
        index_dir: str | Path,
        *,
        config: Config | None = None,
        feedback_dir: str | Path = "feedback",
        llm: ChatModel | None = None,
        admin_token: str | None = None,
        local_only: bool = True,
        feedback_limits: FeedbackLimits = FeedbackLimits(),
    ) -> None:
        self.data_dir = Path(data_dir)
        self.index_dir = Path(index_dir)
        self.config = config or Config()
        self.feedback_dir = Path(feedback_dir)
        self.llm = llm if llm is not None else ChatModel.from_config(self.config)
        self.admin_token = admin_token or self.config.admin_token or None
        self.local_only = local_only
        self.feedback_limits = feedback_limits
        self.status = "not started"
        self.error: str | None = None
        self.retriever: Retriever | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._feedback = FeedbackLog(self.feedback_dir, feedback_limits)
        self._reload_lock = threading.Lock()  # one request at a time loads a new generation
        self._reloading = threading.Event()  # set while a new generation loads in the background
        self._write_lock = threading.Lock()  # changes of this process one after another
        self._closing = threading.Event()  # set by close(): no change begins after it

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
                    freeze_survivors()
                else:
                    self.status = "正在载入索引…"
                    log.info("loading index %s", self.index_dir)
                    with kept_out_of_collections():
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

    def close(self, timeout: float) -> bool:
        """Let no change of the corpus begin from now on (they get NotReadyError, 503) and wait up to
        ``timeout`` seconds for the one in progress, if any, to finish. True when none is in progress
        any more: the process may then exit at once, leaving the data folder and the index agreeing.
        False when one is still running: an index write is atomic (IndexStore publishes a whole
        generation or nothing), so exiting anyway leaves the previous generation live, and the file
        it was adding in the data folder, which the next start brings into the index."""
        self._closing.set()
        if self._write_lock.acquire(timeout=max(0.0, timeout)):
            return True  # kept: nothing may write after close
        return False

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock for one change of the corpus; NotReadyError once ``close`` has begun, also
        while waiting for the lock (``close`` keeps it: a change waiting for it must not wait forever)."""
        while not self._write_lock.acquire(timeout=0.1):
            if self._closing.is_set():
                raise NotReadyError(SHUTTING_DOWN)
        try:
            if self._closing.is_set():
                raise NotReadyError(SHUTTING_DOWN)
            yield
        finally:
            self._write_lock.release()

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

    @property
    def writes(self) -> str:
        """Who may change the corpus: ``token`` (with the admin token), ``local`` (anyone reaching
        the loopback-only app) or ``read-only``."""
        if self.admin_token:
            return "token"
        return "local" if self.local_only else "read-only"

    def _set_ready_status(self, r: Retriever) -> None:
        self.status = f"就绪：{len(r.articles)} 篇文章，{len(r.chunks)} 个段落"

    def live_retriever(self) -> Retriever:
        """The Retriever requests are answered from now; NotReadyError (503) while none is loaded.

        The one place a new generation is swapped in. A Retriever never changes: when another
        process published a generation (``rag add``, ``rag sync``), the first request to notice
        (``Retriever.superseded``: one small file is read) starts loading it in the background
        (``Retriever.latest``, under :mod:`rag.loading`'s measures for answering while loading) and every
        request goes on with the loaded one until the new one is swapped in: a large archive
        takes seconds to load and nobody waits for it. Each request holds the Retriever it got
        here to its end, so it finishes on the generation it started with."""
        r = self.retriever
        if r is None:
            raise NotReadyError(self.error or f"index {self.index_dir} is still loading; retry in a few seconds")
        if self._reload_lock.acquire(blocking=False):
            if r.superseded():
                self._reloading.set()
                threading.Thread(target=self._load_new, args=(r,), name="index-reload", daemon=True).start()
            else:
                self._reload_lock.release()
        return r

    @property
    def reloading(self) -> bool:
        """True while a newly published generation loads in the background (requests are answered
        from the loaded one meanwhile)."""
        return self._reloading.is_set()

    def _load_new(self, r: Retriever) -> None:
        """Load the published generation and serve it (in the background; holds the reload lock)."""
        try:
            with kept_out_of_collections():
                fresh = r.latest()
            if fresh is not r and self.retriever is r:
                self._serve(fresh)
        except Exception:  # noqa: BLE001 - a failed reload keeps serving the loaded index
            log.exception("loading the new index generation at %s failed; still serving the loaded one", r.index_dir)
        finally:
            self._reloading.clear()
            self._reload_lock.release()

    def wait_for_reload(self, timeout: float = 60.0) -> Retriever:
        """The live retriever after any background reload in progress has finished."""
        self.live_retriever()
        if self._reload_lock.acquire(timeout=timeout):
            self._reload_lock.release()
        return self.live_retriever()

    def _serve(self, r: Retriever) -> None:
        self.retriever = r
        self._set_ready_status(r)
        log.info("now serving %s", self.status)

    def sources(self) -> list[str]:
        return self.live_retriever().sources() if self.retriever else []

    # --- reading (open to everyone) --------------------------------------------------------------
    def search(self, query: str, k: int = 5, *, sources: list[str] | None = None,
               date_from: str | None = None, date_to: str | None = None, per_article: int | None = 1) -> list[Passage]:
        """Passages for ``query`` (``Retriever.search`` on the live index; one per article unless ``per_article``)."""
        return self.live_retriever().search(query, k, sources=sources or None, date_from=date_from, date_to=date_to,
                                        per_article=per_article)

    def ask(self, question: str, history: list[dict] | None = None, *, k: int | None = None,
            sources: list[str] | None = None, date_from: str | None = None, date_to: str | None = None) -> Answer:
        """A cited answer; ``k`` passages to answer from (default: the config's)."""
        return self._answer(False, question, history, k, sources, date_from, date_to)

    def stream(self, question: str, history: list[dict] | None = None, *, k: int | None = None,
               sources: list[str] | None = None, date_from: str | None = None,
               date_to: str | None = None) -> Iterator[str | Answer]:
        """``ask`` streaming: the text so far, then the final Answer."""
        return self._answer(True, question, history, k, sources, date_from, date_to)

    def _answer(self, stream: bool, question, history, k, sources, date_from, date_to):
        """The one place that calls the Assistant."""
        assistant = Assistant(self.live_retriever(), llm=self.llm)
        call = assistant.stream if stream else assistant.ask
        return call(question, history=history_messages(history), k=k, sources=sources or None,
                    date_from=date_from, date_to=date_to)

    # --- changing the corpus (admin token, or loopback only) ---------------------------------------
    def authorize_write(self, token: str | None, *, via_proxy: bool = False) -> None:
        """Raise AccessError unless this caller may change the corpus.

        With an admin token configured, ``token`` must equal it. Without one, changes are open
        only while the app listens on loopback alone, and not to a request that came through a
        proxy (``via_proxy``: it carried Forwarded / X-Forwarded-For)."""
        if self.admin_token:
            if token is None or not hmac.compare_digest(token.encode("utf-8"), self.admin_token.encode("utf-8")):
                raise AccessError("changing the articles needs the admin token: send the header "
                                  "`Authorization: Bearer <RAG_ADMIN_TOKEN>` (in the chat: the 管理口令 field)")
            return
        if not self.local_only:
            raise AccessError("read-only: the app listens on a non-loopback address and has no admin token; "
                              "set RAG_ADMIN_TOKEN and restart to allow uploads (send it as `Authorization: Bearer ...`)",
                              read_only=True)
        if via_proxy:
            raise AccessError("read-only through a proxy: this request carries a Forwarded/X-Forwarded-For header "
                              "and the app has no admin token; set RAG_ADMIN_TOKEN and restart to allow uploads",
                              read_only=True)

    def check_upload(self, files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """``(name, content)`` pairs as they will be saved; QueryError, naming the file, for a bad
        name, an unsupported type, a file over the size limit, text that does not decode as UTF-8,
        GB18030 or Big5, or content that does not parse as its type (no article in it)."""
        if not files:
            raise QueryError(f"no files: upload one or more {formats_named()} files")
        if len(files) > MAX_UPLOAD_FILES:
            raise QueryError(f"{len(files)} files in one upload; the limit is {MAX_UPLOAD_FILES}: upload them in parts")
        checked: list[tuple[str, bytes]] = []
        for raw_name, content in files:
            name = check_file_name(raw_name)
            if name in (n for n, _ in checked):
                raise QueryError(f"{name}: the upload holds two files of this name; send one")
            if len(content) > MAX_FILE_BYTES:
                raise QueryError(
                    f"{name}: file is {len(content) / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB per file: "
                    "split it into several uploads, or put a larger corpus in the data folder (`rag add FILE`)"
                )
            parsed = read_bytes(content, name)
            if not parsed.articles:
                problems = parsed.errors or [SourceError(name, "no article in it")]
                raise QueryError("; ".join(str(e) for e in problems) + " (nothing was saved)", problems=problems)
            checked.append((name, content))
        return checked

    def upload(self, files: list[tuple[str, bytes]], *, token: str | None = None, via_proxy: bool = False) -> dict:
        """Save uploaded article files into the data folder and bring the index up to date with it.

        ``files`` are ``(file name, content)`` pairs, all checked before any is written
        (``check_upload``). A file of the same name is replaced, reported as ``updated``
        (``unchanged`` when the bytes are the same), and kept under ``.trash/<version>/`` for
        ``restore``. The index follows the folder with ``Retriever.sync``; requests keep being
        answered on the old index until the new one is saved. If the update fails, the files
        are put back as they were. Returns ``{"files": [{name, status, kept}], **UpdateReport,
        "summary"}``; JSONL lines that could not be read are listed in ``errors``.
        """
        self.authorize_write(token, via_proxy=via_proxy)
        checked = self.check_upload(files)
        self.live_retriever()  # 503 before anything is written when the index is not loaded
        with self._writing():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            stamp = new_stamp()
            saved: list[dict] = []
            undo: list[tuple[Path, Path | None]] = []
            try:
                for name, content in checked:
                    target = inside(self.data_dir, self.data_dir / name)
                    entry = {"name": name, "status": "new", "kept": None}
                    kept = None
                    if target.exists():
                        if target.read_bytes() == content:
                            saved.append({**entry, "status": "unchanged"})
                            continue
                        kept = trash_path(self.data_dir, stamp, name)
                        shutil.copy2(target, kept)
                        entry = {**entry, "status": "updated", "kept": stamp}
                    tmp = self.data_dir / f".upload-{os.getpid()}-{threading.get_ident()}.tmp"
                    tmp.write_bytes(content)
                    os.replace(tmp, target)
                    undo.append((target, kept))
                    log.info("upload: %s %s (%d bytes)", entry["status"], target, len(content))
                    saved.append(entry)
                report = self._sync()
            except BaseException:
                for target, kept in reversed(undo):
                    if kept is not None:
                        os.replace(kept, target)
                    else:
                        target.unlink(missing_ok=True)
                prune(self.data_dir / TRASH_DIR / stamp)
                log.warning("upload undone: the index could not be updated")
                raise
        return {"files": saved, **report.to_dict(), "summary": report.summary()}

    def delete(self, name: str, *, token: str | None = None, via_proxy: bool = False) -> dict:
        """Remove an article file from the data folder (kept for ``restore``) and from the index."""
        self.authorize_write(token, via_proxy=via_proxy)
        name = check_file_name(name)
        self.live_retriever()
        with self._writing():
            target = inside(self.data_dir, self.data_dir / name)
            if not target.is_file():
                raise NotFoundError(f"{name}: no such file in the data folder {self.data_dir}")
            stamp = new_stamp()
            os.replace(target, trash_path(self.data_dir, stamp, name))
            try:
                report = self._sync()
            except BaseException:
                restore(self.data_dir, name, stamp)
                raise
        log.info("deleted %s (kept as %s)", target, stamp)
        return {"name": name, "kept": stamp, **report.to_dict(), "summary": report.summary()}

    def restore(self, name: str, version: str | None = None, *, token: str | None = None,
                via_proxy: bool = False) -> dict:
        """Undo the last upload or delete of ``name`` (or put back the copy of ``version``) and
        update the index. The module function ``restore`` does the file part."""
        self.authorize_write(token, via_proxy=via_proxy)
        self.live_retriever()
        with self._writing():
            done = restore(self.data_dir, name, version)
            try:
                report = self._sync()
            except BaseException:
                if done["kept"]:
                    restore(self.data_dir, done["name"], done["kept"])
                else:
                    os.replace(self.data_dir / done["name"], trash_path(self.data_dir, done["restored"], done["name"]))
                raise
        return {**done, **report.to_dict(), "summary": report.summary()}

    def kept(self, *, token: str | None = None, via_proxy: bool = False) -> list[dict]:
        """Kept copies that ``restore`` can put back, newest first (needs write access)."""
        self.authorize_write(token, via_proxy=via_proxy)
        return kept_versions(self.data_dir)

    def _sync(self) -> UpdateReport:
        """The one place that brings the index up to date with the data folder (Retriever.sync).
        The update hands back a new retriever, so requests in flight keep the live one untouched."""
        report = self.live_retriever().sync(self.data_dir)
        self._serve(report.retriever)
        return report

    # --- feedback ----------------------------------------------------------------------------
    def feedback(self, question: str, answer: str, sources: list, vote: str, *, client: str = "local") -> Path:
        """Append one vote (``up`` / ``down``) to ``<feedback_dir>/feedback.jsonl``; returns the file.
        Bounded by ``feedback_limits`` (``FeedbackLog.record``)."""
        return self._feedback.record(question, answer, sources, vote, client=client)
