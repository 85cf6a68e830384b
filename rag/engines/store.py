"""The index folder: versioned generations, manifest, atomic swap and the writer lock.

Layout::

    index/CURRENT          name of the live generation (replaced atomically)
    index/g-<stamp>/       manifest.json, articles.jsonl, chunks.jsonl, and the engine's files
                           (the default engine: vectors.faiss, bm25/)
    index/.lock            held by the one writer

A writer builds a complete new generation beside the live one, fsyncs it, then
points CURRENT at it with ``os.replace``; a crash at any moment leaves the
previous generation live and whole.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import IndexCorruptError, IndexLockedError, IndexMissingError
from ..loading import taking_turns
from ..records import Article, Chunk

__all__ = ["IndexStore", "FORMAT_VERSION", "REBUILD"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1

# index root → (owning thread, open lock file, depth): the locks this process holds
_HELD: dict[str, tuple[int, object, int]] = {}
_HELD_GUARD = threading.Lock()
MANIFEST = "manifest.json"
ARTICLES = "articles.jsonl"
CHUNKS = "chunks.jsonl"
REQUIRED = (MANIFEST, ARTICLES, CHUNKS)
REBUILD = "rebuild it with `rag build --data DATA_DIR --index {root}`"


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexStore:
    """Where an index lives on disk; hands out the live generation and writes new ones."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # --- reading ------------------------------------------------------------------------------
    def current(self) -> Path:
        """Folder of the live generation; IndexMissingError / IndexCorruptError otherwise."""
        pointer = self.root / "CURRENT"
        if not pointer.exists():
            raise IndexMissingError(
                f"no index at {self.root}: build one with `rag build --data DATA_DIR --index {self.root}`"
            )
        name = pointer.read_text(encoding="utf-8").strip()
        gen = self.root / name
        missing = [f for f in REQUIRED if not (gen / f).exists()]
        if not name or missing:
            raise IndexCorruptError(
                f"index at {self.root} is damaged: generation {name!r} lacks {', '.join(missing) or 'a name'}; "
                f"rebuild it with `rag build --data DATA_DIR --index {self.root}`"
            )
        return gen

    def exists(self) -> bool:
        return (self.root / "CURRENT").exists()

    def manifest(self) -> dict:
        path = self.current() / MANIFEST
        try:
            m = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise IndexCorruptError(
                f"{path}: unreadable manifest ({e}); rebuild with `rag build --data DATA_DIR --index {self.root}`"
            ) from e
        if m.get("format_version") != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{path}: index format {m.get('format_version')} but this version reads format {FORMAT_VERSION}; "
                f"rebuild with `rag build --data DATA_DIR --index {self.root}`"
            )
        return m

    def read_records(self, gen: Path | None = None) -> tuple[dict[str, Article], list[Chunk]]:
        """The article and chunk records of a generation (the live one by default), in saved order."""
        gen = gen or self.current()
        try:
            with open(gen / ARTICLES, encoding="utf-8") as f:
                articles = {a.id: a for a in (Article.from_dict(json.loads(line)) for line in taking_turns(f))}
            with open(gen / CHUNKS, encoding="utf-8") as f:
                chunks = [Chunk.from_dict(json.loads(line)) for line in taking_turns(f)]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise IndexCorruptError(f"{gen}: damaged article or chunk records ({e}); {REBUILD.format(root=self.root)}") from e
        return articles, chunks

    def write(self, articles: Iterable[Article], chunks: Iterable[Chunk], manifest: dict, save_engine) -> str:
        """Write a complete generation (records, ``save_engine(folder) -> dict`` recorded as the
        manifest's ``engine``, then the manifest) and make it live; returns its token."""
        with self.writer() as gen:
            with open(gen / ARTICLES, "w", encoding="utf-8") as f:
                for a in articles:
                    f.write(json.dumps(a.to_dict(), ensure_ascii=False) + "\n")
            with open(gen / CHUNKS, "w", encoding="utf-8") as f:
                for c in chunks:
                    f.write(json.dumps(c.to_dict(), ensure_ascii=False) + "\n")
            manifest["engine"] = save_engine(gen)
            with open(gen / MANIFEST, "w", encoding="utf-8") as f:
                json.dump(manifest, f, ensure_ascii=False, indent=2)
            token = gen.name
        return token

    def generation_token(self) -> str:
        """Changes whenever a new generation goes live (used to reload without restart)."""
        try:
            return (self.root / "CURRENT").read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    # --- writing ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the writer lock (re-entrant within a thread), for a read-modify-write of the index.

        Another process or thread holding it gives IndexLockedError at once; the kernel drops
        the lock of a process that dies, so a killed writer never blocks the next one.
        """
        key = str(self.root.resolve())
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held and held[0] == threading.get_ident():
                _HELD[key] = (held[0], held[1], held[2] + 1)
                reentered = True
            else:
                reentered = False
        if reentered:
            try:
                yield
            finally:
                with _HELD_GUARD:
                    owner, f, depth = _HELD[key]
                    _HELD[key] = (owner, f, depth - 1)
            return
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / ".lock", "a+")
        try:
            if held:
                raise BlockingIOError
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise IndexLockedError(
                f"index at {self.root} is being written by another process; wait for it to finish and try again"
            ) from None
        with _HELD_GUARD:
            _HELD[key] = (threading.get_ident(), f, 1)
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    @contextlib.contextmanager
    def writer(self) -> Iterator[Path]:
        """Lock the index, yield an empty folder for the new generation, publish it on success.

        If the body raises (or the process dies) the new folder is discarded and the
        live generation is untouched.
        """
        with self.lock():
            yield from self._write()

    def _write(self) -> Iterator[Path]:
        new = self.root / f"g-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        try:
            self._sweep()
            new.mkdir()
            yield new
            _fsync_tree(new)
            tmp = self.root / f".CURRENT.{uuid.uuid4().hex[:6]}"
            tmp.write_text(new.name, encoding="utf-8")
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.root / "CURRENT")
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            log.info("index generation %s is live at %s", new.name, self.root)
            self._sweep(keep_previous=True)
        except BaseException:
            shutil.rmtree(new, ignore_errors=True)
            raise

    def _sweep(self, keep_previous: bool = False) -> None:
        """Remove generations that are not live (and leftovers of crashed writers).

        With ``keep_previous`` the newest non-live generation survives, so a reader that
        opened it a moment ago can finish.
        """
        live = self.generation_token()
        gens = sorted((p for p in self.root.glob("g-*") if p.is_dir() and p.name != live), key=lambda p: p.name)
        if keep_previous and gens:
            gens = gens[:-1]
        for p in gens:
            shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".CURRENT.*"):
            with contextlib.suppress(OSError):
                p.unlink()
