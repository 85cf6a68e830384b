"""The data folder's files: safe upload names, kept copies of replaced and removed files, restore.

A file replaced by an upload or removed is moved to ``<data_dir>/.trash/<stamp>/<name>`` (dot
folders are never indexed), so one command puts it back: ``rag restore NAME``.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import unicodedata
from pathlib import Path
from typing import Any

from ..errors import QueryError
from ..reading.sources import SUPPORTED_SUFFIXES

__all__ = ["TRASH_DIR", "MAX_NAME_BYTES", "check_file_name", "inside", "kept_versions", "prune",
           "restore", "stamp", "trash_path"]

log = logging.getLogger(__name__)

MAX_NAME_BYTES = 200  # file systems allow 255; room for the temporary name
TRASH_DIR = ".trash"  # inside the data folder; dot folders are never indexed
# characters that look like a path separator (or become one under NFKC) without being one
_SLASH_LIKE = set("\u2215\u2044\u29f8\u29f5\u29f9\u2216\u2571\u2572\u3033\u1735\u2cc6\u27cb\u27cd\u20eb\u0338")


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
    if suffix not in SUPPORTED_SUFFIXES:
        raise QueryError(f"{name}: unsupported file type {suffix or '(none)'!r}; upload {', '.join(SUPPORTED_SUFFIXES)} files")
    return name


def stamp() -> str:
    """A sortable UTC time stamp that names one change: 20261125T103012.123456Z."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")


def inside(data_dir: Path, path: Path) -> Path:
    """``path`` if it resolves inside ``data_dir`` (defence in depth after check_file_name)."""
    root = data_dir.resolve()
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise QueryError(f"{path} is outside the data folder {data_dir}")
    return path


def trash_path(data_dir: Path, version: str, name: str) -> Path:
    """Where ``name`` is kept under ``version`` (a ``stamp()``); its folder is created."""
    path = inside(data_dir, data_dir / TRASH_DIR / version / name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def prune(folder: Path) -> None:
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
    target = inside(data_dir, data_dir / name)
    kept = None
    if target.exists():
        kept = stamp()
        os.replace(target, trash_path(data_dir, kept, name))
    os.replace(source, target)
    prune(source.parent)
    log.info("restored %s from %s (replaced file kept as %s)", target, chosen, kept)
    return {"name": name, "restored": chosen, "kept": kept}

