"""The feedback log: users' votes on answers, bounded in size, rate and file length."""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..errors import QueryError, RateLimitError

__all__ = ["FeedbackLimits", "FeedbackLog"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedbackLimits:
    """Bounds on the feedback log: one entry's size, entries per minute from one client, and
    the file size at which ``feedback.jsonl`` is rotated (to ``feedback.1.jsonl`` …, ``keep`` old files)."""

    entry_bytes: int = 16 * 1024
    per_minute: int = 20
    file_bytes: int = 5 * 2**20
    keep: int = 3


class FeedbackLog:
    """Appends votes to ``<folder>/feedback.jsonl`` within ``limits``; safe across threads.

    Example::

        log = FeedbackLog("feedback")
        log.record("江岸签约了哪些项目？", "…等6个项目 [1]", [{"id": "cjrb-1"}], "up", client="10.0.0.7")
    """

    def __init__(self, folder: str | Path, limits: FeedbackLimits = FeedbackLimits()) -> None:
        self.folder = Path(folder)
        self.limits = limits
        self._lock = threading.Lock()
        self._votes: dict[str, deque] = {}

    @property
    def path(self) -> Path:
        return self.folder / "feedback.jsonl"

    def record(self, question: str, answer: str, sources: list, vote: str, *, client: str = "local") -> Path:
        """Append one vote (``up`` / ``down``); returns the file.

        An entry over ``entry_bytes`` is refused (QueryError), more than ``per_minute`` votes
        from one ``client`` raise RateLimitError, and the file is rotated when it would pass
        ``file_bytes``."""
        if vote not in ("up", "down"):
            raise QueryError(f"vote must be 'up' or 'down', got {vote!r}")
        record = {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "question": question,
            "answer": answer,
            "sources": sources,
            "vote": vote,
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        if len(line) > self.limits.entry_bytes:
            raise QueryError(f"feedback entry is {len(line)} bytes; the limit is {self.limits.entry_bytes}: "
                             "send shorter text and only the sources' ids, titles, outlets and dates")
        path = self.path
        with self._lock:
            self._count_vote(client)
            self.folder.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(line) > self.limits.file_bytes:
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
        if len(q) >= self.limits.per_minute:
            wait = int(60 - (now - q[0])) + 1
            raise RateLimitError(f"too many votes from {client}: at most {self.limits.per_minute} a minute; "
                                 f"retry in {wait} s", retry_after=wait)
        q.append(now)

    def _rotate(self, path: Path) -> None:
        keep = self.limits.keep
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
