"""Serving: framework-free request handling for the chat and REST API (index lifecycle, who may
change the corpus, checked uploads kept for undo, bounded feedback)."""
from __future__ import annotations

import datetime as _dt
import hmac
import ipaddress
import json
import logging
import os
import shutil
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .answering import Assistant
from .config import Config
from .errors import AccessError, NotReadyError, QueryError, RagError, RateLimitError
from .llm import ChatModel
from .records import Answer, Passage
from .indexing import UpdateReport
from .retrieval import Retriever
from .sources import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, read_bytes

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

log = logging.getLogger(__name__)

MAX_K = 20
UPLOAD_SUFFIXES = SUPPORTED_SUFFIXES
MAX_UPLOAD_FILES = 20
MAX_NAME_BYTES = 200  # file systems allow 255; room for the temporary name
TRASH_DIR = ".trash"  # inside the data folder; dot folders are never indexed
# characters that look like a path separator (or become one under NFKC) without being one
_SLASH_LIKE = set("\u2215\u2044\u29f8\u29f5\u29f9\u2216\u2571\u2572\u3033\u1735\u2cc6\u27cb\u27cd\u20eb\u0338")


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


def check_file_name(raw: Any) -> str:
    """``raw`` if it is a plain, safe file name for the data folder; QueryError naming it otherwise.

    Refused: folder parts (``/``, ``\\``, ``..``), names starting with a dot, control and
    invisible characters, look-alikes of slashes and dots (fullwidth solidus, division slash,
    fullwidth full stop, ...), names over 200 bytes, and types that are not article files.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise QueryError(f"file name {raw!r} is not usable: give the file a name like article.txt")
    name = unicodedata.normalize("NFC", raw.strip())
    shown = repr(name) if len(name) <= 80 else repr(name[:80] + "…")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), None)
    if bad is not None:
        raise QueryError(f"file name {shown} contains the control or invisible character U+{ord(bad):04X}: rename the file")
    folded = unicodedata.normalize("NFKC", name)
    if "/" in name or "\\" in name:
        raise QueryError(f"file name {shown} has a folder part: upload it under a plain name like article.txt")
    if any(c in _SLASH_LIKE for c in name) or "/" in folded or "\\" in folded:
        raise QueryError(f"file name {shown} contains a character that looks like a slash: rename the file")
    if name.startswith(".") or folded.startswith(".") or folded in (".", ".."):
        raise QueryError(f"file name {shown} starts with a dot (hidden file): rename the file")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise QueryError(f"file name {shown} is {len(name.encode('utf-8'))} bytes long; the limit is {MAX_NAME_BYTES}: shorten it")
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise QueryError(f"{name}: unsupported file type {suffix or '(none)'!r}; upload {', '.join(UPLOAD_SUFFIXES)} files")
    return name


# --- kept copies of replaced and removed files ---------------------------------------------------
def _stamp() -> str:
    """A sortable UTC time stamp that names one change: 20261125T103012.123456Z."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def _inside(data_dir: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``data_dir`` (defence in depth after check_file_name)."""
    root = data_dir.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise QueryError(f"{path} is outside the data folder {data_dir}")
    return path


def _trash_path(data_dir: Path, stamp: str, name: str) -> Path:
    path = _inside(data_dir, data_dir / TRASH_DIR / stamp / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _prune(folder: Path) -> None:
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass


def kept_versions(data_dir: str | Path, name: str | None = None) -> list[dict]:
    """Kept copies under ``<data_dir>/.trash/<stamp>/<name>``, newest first, as
    ``{"name", "version", "bytes"}``; only those of ``name`` when given."""
    trash = Path(data_dir) / TRASH_DIR
    if not trash.is_dir():
        return []
    out = []
    for stamp_dir in sorted((d for d in trash.iterdir() if d.is_dir()), key=lambda d: d.name, reverse=True):
        for f in sorted(stamp_dir.iterdir()):
            if f.is_file() and (name is None or f.name == name):
                out.append({"name": f.name, "version": stamp_dir.name, "bytes": f.stat().st_size})
    return out


def restore(data_dir: str | Path, name: str, version: str | None = None) -> dict:
    """Put back the kept copy of ``name`` (the newest, or the one of ``version``) into the data folder.

    The file it replaces is kept in turn, so a restore can itself be undone the same way. Only
    files change: bring the index up to date afterwards (``Retriever.sync``; ``Service.restore``
    does both). Returns ``{"name", "restored": version put back, "kept": version the replaced
    file is kept under, or None when there was none}``. QueryError when there is no such copy.

    Example::

        restore("data", "yuehu.txt")        # undo the last upload that replaced yuehu.txt
        Retriever.load("index").sync("data")
    """
    data_dir = Path(data_dir)
    name = check_file_name(name)
    versions = kept_versions(data_dir, name)
    if version is not None:
        versions = [v for v in versions if v["version"] == version]
    if not versions:
        which = f" from {version}" if version else ""
        known = ", ".join(v["version"] for v in kept_versions(data_dir, name)) or "none"
        raise QueryError(f"{name}: no kept copy{which} in {data_dir / TRASH_DIR} (kept versions: {known}); nothing to restore")
    chosen = versions[0]["version"]
    source = data_dir / TRASH_DIR / chosen / name
    target = _inside(data_dir, data_dir / name)
    kept = None
    if target.exists():
        kept = _stamp()
        os.replace(target, _trash_path(data_dir, kept, name))
    os.replace(source, target)
    _prune(source.parent)
    log.info("restored %s from %s (replaced file kept as %s)", target, chosen, kept)
    return {"name": name, "restored": chosen, "kept": kept}


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


@dataclass(frozen=True)
class FeedbackLimits:
    """Bounds on the feedback log: one entry's size, entries per minute from one client, and
    the file size at which ``feedback.jsonl`` is rotated (to ``feedback.1.jsonl`` …, ``keep`` old files)."""

    entry_bytes: int = 16 * 1024
    per_minute: int = 20
    file_bytes: int = 5 * 2**20
    keep: int = 3


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
        self.admin_token = admin_token or None
        self.local_only = local_only
        self.feedback_limits = feedback_limits
        self.status = "not started"
        self.error: str | None = None
        self.retriever: Retriever | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._feedback_lock = threading.Lock()
        self._votes: dict[str, deque] = {}
        self._reload_lock = threading.Lock()  # one request at a time loads a new generation
        self._write_lock = threading.Lock()  # changes of this process one after another

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

    @property
    def writes(self) -> str:
        """Who may change the corpus: ``token`` (with the admin token), ``local`` (anyone reaching
        the loopback-only app) or ``read-only``."""
        if self.admin_token:
            return "token"
        return "local" if self.local_only else "read-only"

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
                self._serve(fresh)
            return fresh
        finally:
            self._reload_lock.release()

    def _serve(self, r: Retriever) -> None:
        self.retriever = r
        self._set_ready_status(r)
        log.info("now serving %s", self.status)

    def sources(self) -> list[str]:
        return self._retriever().sources() if self.retriever else []

    # --- reading (open to everyone) --------------------------------------------------------------
    def search(self, query: str, k: int = 5, *, sources: list[str] | None = None,
               date_from: str | None = None, date_to: str | None = None) -> list[Passage]:
        """Passages for ``query`` (``Retriever.search`` on the live index)."""
        return self._retriever().search(query, k, sources=sources or None, date_from=date_from, date_to=date_to)

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
        assistant = Assistant(self._retriever(), llm=self.llm)
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
            raise QueryError("no files: upload one or more .txt, .md, .html or .jsonl files")
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
                reasons = "; ".join(str(e) for e in parsed.errors) or f"{name}: no article in it"
                raise QueryError(f"{reasons} (nothing was saved)")
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
        self._retriever()  # 503 before anything is written when the index is not loaded
        with self._write_lock:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            stamp = _stamp()
            saved: list[dict] = []
            undo: list[tuple[Path, Path | None]] = []
            try:
                for name, content in checked:
                    target = _inside(self.data_dir, self.data_dir / name)
                    entry = {"name": name, "status": "new", "kept": None}
                    kept = None
                    if target.exists():
                        if target.read_bytes() == content:
                            saved.append({**entry, "status": "unchanged"})
                            continue
                        kept = _trash_path(self.data_dir, stamp, name)
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
                _prune(self.data_dir / TRASH_DIR / stamp)
                log.warning("upload undone: the index could not be updated")
                raise
        return {"files": saved, **report.to_dict(), "summary": report.summary()}

    def delete(self, name: str, *, token: str | None = None, via_proxy: bool = False) -> dict:
        """Remove an article file from the data folder (kept for ``restore``) and from the index."""
        self.authorize_write(token, via_proxy=via_proxy)
        name = check_file_name(name)
        self._retriever()
        with self._write_lock:
            target = _inside(self.data_dir, self.data_dir / name)
            if not target.is_file():
                raise QueryError(f"{name}: no such file in the data folder {self.data_dir}")
            stamp = _stamp()
            os.replace(target, _trash_path(self.data_dir, stamp, name))
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
        self._retriever()
        with self._write_lock:
            done = restore(self.data_dir, name, version)
            try:
                report = self._sync()
            except BaseException:
                if done["kept"]:
                    restore(self.data_dir, done["name"], done["kept"])
                else:
                    os.replace(self.data_dir / done["name"], _trash_path(self.data_dir, done["restored"], done["name"]))
                raise
        return {**done, **report.to_dict(), "summary": report.summary()}

    def kept(self, *, token: str | None = None, via_proxy: bool = False) -> list[dict]:
        """Kept copies that ``restore`` can put back, newest first (needs write access)."""
        self.authorize_write(token, via_proxy=via_proxy)
        return kept_versions(self.data_dir)

    def _sync(self) -> UpdateReport:
        """The one place that brings the index up to date with the data folder (Retriever.sync).
        The update hands back a new retriever, so requests in flight keep the live one untouched."""
        report = self._retriever().sync(self.data_dir)
        self._serve(report.retriever)
        return report

    # --- feedback ----------------------------------------------------------------------------
    def feedback(self, question: str, answer: str, sources: list, vote: str, *, client: str = "local") -> Path:
        """Append one vote (``up`` / ``down``) to ``<feedback_dir>/feedback.jsonl``; returns the file.

        Bounded by ``feedback_limits``: an entry over ``entry_bytes`` is refused (QueryError),
        more than ``per_minute`` votes from one ``client`` raise RateLimitError, and the file
        is rotated when it would pass ``file_bytes``."""
        if vote not in ("up", "down"):
            raise QueryError(f"vote must be 'up' or 'down', got {vote!r}")
        limits = self.feedback_limits
        record = {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "question": question,
            "answer": answer,
            "sources": sources,
            "vote": vote,
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if len(line) > limits.entry_bytes:
            raise QueryError(f"feedback entry is {len(line)} bytes; the limit is {limits.entry_bytes}: "
                             "send shorter text and only the sources' ids, titles, outlets and dates")
        path = self.feedback_dir / "feedback.jsonl"
        with self._feedback_lock:
            self._count_vote(client)
            self.feedback_dir.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(line) > limits.file_bytes:
                self._rotate(path)
            with open(path, "ab") as f:
                f.write(line)
        log.info("feedback %s recorded in %s", vote, path)
        return path

    def _count_vote(self, client: str) -> None:
        now = time.monotonic()
        if len(self._votes) > 10_000:  # forget clients quiet for a minute, so the table stays small
            self._votes = {c: q for c, q in self._votes.items() if q and now - q[-1] < 60}
        q = self._votes.setdefault(client, deque())
        while q and now - q[0] >= 60:
            q.popleft()
        if len(q) >= self.feedback_limits.per_minute:
            wait = int(60 - (now - q[0])) + 1
            raise RateLimitError(f"too many votes from {client}: at most {self.feedback_limits.per_minute} a minute; "
                                 f"retry in {wait} s", retry_after=wait)
        q.append(now)

    def _rotate(self, path: Path) -> None:
        keep = self.feedback_limits.keep
        old = lambda i: path.with_name(f"{path.stem}.{i}{path.suffix}")  # noqa: E731
        old(keep).unlink(missing_ok=True)
        for i in range(keep - 1, 0, -1):
            if old(i).exists():
                os.replace(old(i), old(i + 1))
        if keep > 0:
            os.replace(path, old(1))
        else:
            path.unlink()
        log.info("feedback log rotated: %s", old(1))
