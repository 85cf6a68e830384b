"""Reading and cleaning sources: files in → clean Articles out.

Handles plain text, Markdown with YAML front matter, HTML, JSONL (one article per
line), listing pages of several articles, scraped pages with navigation and footer
junk, and pinyin-annotated Traditional text; decodes UTF-8, GB18030 and Big5.
Cleaning is in ``cleaning``, markup (HTML, YAML front matter, Markdown) in ``markup``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from .cleaning import (Draft, byline_outlet, clean_article_lines, clean_lines, derive_title, finish, is_listing, normalize_date,
                       original_headline, parse_listing)
from ..errors import SourceError
from .markup import HTML_HINT, front_matter, html_to_lines, markdown_headings
from ..records import Article
from ..text import strip_pinyin_noise, to_simplified

__all__ = ["read_articles", "read_file", "read_bytes", "IngestResult", "SUPPORTED_SUFFIXES", "decode_bytes", "file_article_ids",
           "file_fingerprints", "formats_named"]

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")  # the one list of file types read


def formats_named(sep: str = ", ", last: str = " or ") -> str:
    """The supported file types for a message: ``.txt, .md, .markdown, .html, .htm or .jsonl``."""
    return sep.join(SUPPORTED_SUFFIXES[:-1]) + last + SUPPORTED_SUFFIXES[-1]
# Larger files are refused: 16 MB of Chinese text is ~5 million characters, hours of
# embedding on a CPU, and almost surely a dump that should be split into articles (JSONL).
MAX_FILE_BYTES = 16 * 1024 * 1024
# A .jsonl file is already one article per line (a corpus export), so it may be much larger.
MAX_JSONL_BYTES = 1024 * 1024 * 1024
# A .jsonl line is one article: as large as an article file may be. Lines are read one at a time, so
# a 1 GB file of one line costs this much memory, not a gigabyte.
MAX_JSONL_LINE_BYTES = MAX_FILE_BYTES
# charset-normalizer looks at this much of a file that is not UTF-8 (its time grows with the input)
DETECT_SAMPLE_BYTES = 256 * 1024


@dataclass
class IngestResult:
    """Articles read from some files, and one error per file (or JSONL line) that failed."""

    articles: list[Article] = field(default_factory=list)
    errors: list[SourceError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


# --- decoding ---------------------------------------------------------------------------------
def decode_bytes(data: bytes, path: str = "<bytes>") -> str:
    """Decode UTF-8 (with or without BOM), GB18030 or Big5; raise SourceError otherwise.

    UTF-8 is tried first (strictly, then allowing a few broken sequences such as a file cut
    mid-character); other text goes to charset-normalizer, limited to GB18030 and Big5, which
    refuses bytes that read as neither (scripts/measure_decoding.py compares it with the
    hand-written guess it replaced). It looks at the first DETECT_SAMPLE_BYTES only (cut at a line
    end), so hostile bytes cost it a bounded time; the whole file must then decode in the encoding
    it chose.
    """
    return _decode(data, path)[0]


def _decode(data: bytes, path: str) -> tuple[str, str]:
    """``decode_bytes`` and the encoding it used."""
    if not data.strip():
        raise SourceError(path, "empty file: nothing to index")
    if b"\x00" in data[:8192]:
        raise SourceError(path, "binary file (contains NUL bytes): expected UTF-8, GB18030 or Big5 text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        first_bad = e.start
    # UTF-8 with a few broken bytes (a file cut mid-character, a stray byte): keep the text
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    if bad <= max(2, len(lenient) // 1000):
        log.warning("%s: %d undecodable byte sequence(s) in UTF-8 text (first at byte %d) dropped", path, bad, first_bad)
        return lenient.replace("\ufffd", ""), "utf-8"
    del lenient
    from charset_normalizer import from_bytes

    sample = data
    if len(data) > DETECT_SAMPLE_BYTES:  # cut at a line end: never inside a GB18030 or Big5 character
        cut = data.rfind(b"\n", 0, DETECT_SAMPLE_BYTES)
        sample = data[: cut + 1 if cut > 0 else DETECT_SAMPLE_BYTES]
    best = from_bytes(sample, cp_isolation=["gb18030", "big5"]).best()
    if best is None:
        raise SourceError(path, "cannot decode the text: it is not UTF-8, GB18030 or Big5")
    try:
        return data.decode(best.encoding), best.encoding
    except UnicodeDecodeError as e:
        raise SourceError(path, f"cannot decode the text: it reads as {best.encoding} at first but not at byte {e.start}; "
                                "save it as UTF-8") from None


def _parse_text_document(text: str, stem: str, origin: str, path: str, *, is_html: bool) -> list[Article]:
    meta, body = front_matter(text, path)
    if is_html or HTML_HINT.search(body):
        # HTML, possibly followed by Markdown link lines outside the markup
        tail_links = []
        if not is_html:
            closes = list(re.finditer(r"</[a-zA-Z][a-zA-Z0-9]*>", body))
            if closes:
                end = closes[-1].end()
                body, tail_links = body[:end], clean_lines(body[end:])
        lines, html_meta = html_to_lines(body, path)
        for k, v in html_meta.items():
            meta.setdefault(k, v)
        lines += tail_links
    else:
        lines = clean_lines(strip_pinyin_noise(body))
        if is_listing(lines):
            return parse_listing(lines, stem, origin)
        lines = markdown_headings(lines, meta)
    lines = [strip_pinyin_noise(ln) for ln in lines] if is_html else lines
    draft = Draft(
        title=str(meta["title"]).strip() if meta.get("title") else None,
        date=normalize_date(meta.get("date")),
        source=str(meta["source"]).strip() if meta.get("source") else None,
        url=str(meta["url"]).strip() if meta.get("url") else None,
    )
    clean_article_lines(lines, draft, title_from_first_line=not draft.title)
    art = finish(draft, doc_id=stem, origin=origin)
    if art is None:
        raise SourceError(path, "no article text found (the file holds only markup, metadata or page furniture)")
    return [art]


def _jsonl_lines(f: BinaryIO, path: str, errors: list[SourceError]) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each line of a JSONL file, read one line at a time: memory is bounded
    by MAX_JSONL_LINE_BYTES, whatever the file's size. A longer line is skipped without being held
    (an error naming the line and the limit)."""
    n = 0
    while True:
        raw = f.readline(MAX_JSONL_LINE_BYTES + 1)
        if not raw:
            return
        n += 1
        if len(raw) > MAX_JSONL_LINE_BYTES and not raw.endswith(b"\n"):
            size = len(raw)
            del raw
            while True:  # the rest of the line, in bounded pieces
                piece = f.readline(1 << 20)
                size += len(piece)
                if not piece or piece.endswith(b"\n"):
                    break
            errors.append(SourceError(path, f"line is {size / 2**20:.0f} MB; the limit is {MAX_JSONL_LINE_BYTES // 2**20} MB "
                                            "per line (one article): line skipped", line=n))
            continue
        yield n, raw


def _parse_jsonl(f: BinaryIO, origin: str, path: str, errors: list[SourceError]) -> list[Article]:
    """Articles of a JSONL file read line by line from ``f`` (binary); lines that fail are errors."""
    head = f.read(8192)
    if b"\x00" in head:
        raise SourceError(path, "binary file (contains NUL bytes): expected UTF-8, GB18030 or Big5 text")
    f.seek(0)
    articles: list[Article] = []
    seen: set[str] = set()
    encoding: list[str] = []  # the file's encoding once a line is not UTF-8 (found on that line)
    blank = True
    for n, data in _jsonl_lines(f, path, errors):
        if not data.strip():
            continue
        blank = False
        try:
            raw = _decode_line(data, path, encoding)
        except SourceError as e:
            errors.append(SourceError(path, f"{e.reason}; line skipped", line=n))
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            errors.append(SourceError(path, f"malformed JSON ({e.msg} at column {e.colno}); line skipped", line=n))
            continue
        except RecursionError:
            errors.append(SourceError(path, "JSON nested too deep; line skipped", line=n))
            continue
        if not isinstance(rec, dict):
            errors.append(SourceError(path, "expected a JSON object with 'id' and 'text'; line skipped", line=n))
            continue
        doc_id, body = rec.get("id"), rec.get("text")
        if doc_id is None or str(doc_id).strip() == "":
            errors.append(SourceError(path, "field 'id' is missing or empty; line skipped", line=n))
            continue
        if not isinstance(body, str) or not body.strip():
            errors.append(SourceError(path, f"field 'text' is missing or empty for id {doc_id!r}; line skipped", line=n))
            continue
        doc_id = str(doc_id).strip()
        if doc_id in seen:
            errors.append(SourceError(path, f"duplicate article id {doc_id!r}; the first one is kept", line=n))
            continue
        seen.add(doc_id)
        raw = strip_pinyin_noise(body)
        title = str(rec.get("title") or "").strip()
        if not title:  # read before cleaning: a run of spaces may be where the original headline ends
            title, raw = original_headline(raw) or ("", raw)
        clean = "\n".join(ln for ln in clean_lines(raw) if ln)
        title = title or derive_title(clean)
        articles.append(
            Article(
                id=doc_id,
                title=strip_pinyin_noise(title),
                text=clean,
                date=normalize_date(rec.get("date")),
                source=to_simplified(str(rec["source"]).strip()) if rec.get("source") else byline_outlet(clean),
                url=str(rec["url"]).strip() if rec.get("url") else None,
                origin=origin,
            )
        )
    if blank and not errors:
        raise SourceError(path, "empty file: nothing to index")
    return articles


def _decode_line(data: bytes, path: str, encoding: list[str]) -> str:
    """One JSONL line: UTF-8 (a BOM dropped), else the file's encoding found on an earlier line,
    else decode_bytes (GB18030 or Big5), whose choice is kept for the next lines."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if encoding:
        try:
            return data.decode(encoding[0])
        except UnicodeDecodeError:
            pass
    text, chosen = _decode(data, path)
    if chosen not in ("utf-8", None) and not encoding:
        encoding.append(chosen)
    return text




def read_file(path: str | Path, *, root: str | Path | None = None) -> IngestResult:
    """Articles of one file. Errors are collected in the result, never raised."""
    p = Path(path)
    origin = str(p.relative_to(root)) if root else p.name
    result = IngestResult(files=[origin])
    try:
        suffix = p.suffix.lower()
        _check_suffix(suffix, str(p))
        try:
            size = p.stat().st_size
            _check_size(size, suffix, str(p))
            if suffix == ".jsonl":  # read a line at a time: a JSONL file may be a gigabyte
                with open(p, "rb") as f:
                    _parse_jsonl_file(f, origin, str(p), result)
                data = None
            else:
                data = p.read_bytes()
        except OSError as e:
            raise SourceError(str(p), f"cannot read the file: {e.strerror or e}") from e
        if data is not None:
            _parse_bytes(data, suffix, origin, str(p), result)
    except SourceError as e:
        result.errors.append(e)
    for e in result.errors:
        log.warning("skipped: %s", e)
    return result


def read_bytes(data: bytes, name: str) -> IngestResult:
    """Articles of one file's content, as ``read_file`` would read a file called ``name``
    (which names the errors and gives the ids); nothing touches the disk. Errors are
    collected in the result, never raised.

    Example::

        r = read_bytes("标题\n正文。".encode("gb18030"), "new.txt")
        r.articles[0].id, r.errors        # ('new', [])
    """
    result = IngestResult(files=[name])
    try:
        suffix = Path(name).suffix.lower()
        _check_suffix(suffix, name)
        _check_size(len(data), suffix, name)
        _parse_bytes(data, suffix, name, name, result)
    except SourceError as e:
        result.errors.append(e)
    return result


def _check_suffix(suffix: str, path: str) -> None:
    if suffix not in SUPPORTED_SUFFIXES:
        raise SourceError(path, f"unsupported file type {suffix or '(none)'}: expected one of {', '.join(SUPPORTED_SUFFIXES)}")


def _check_size(size: int, suffix: str, path: str) -> None:
    if suffix == ".jsonl" and size > MAX_JSONL_BYTES:
        raise SourceError(path, f"file is {size / 2**30:.1f} GB; the limit is {MAX_JSONL_BYTES // 2**30} GB per .jsonl file: split it into several files")
    if suffix != ".jsonl" and size > MAX_FILE_BYTES:
        raise SourceError(
            path,
            f"file is {size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB per file: "
            "split it into several files, or one article per line in a .jsonl file",
        )


_ANY_TAG = re.compile(r"<(!doctype|[a-zA-Z][a-zA-Z0-9-]*)[\s/>]", re.IGNORECASE)


def _parse_jsonl_file(f: BinaryIO, origin: str, path: str, result: IngestResult) -> None:
    result.articles = _parse_jsonl(f, origin, path, result.errors)
    if not result.articles and not result.errors:
        raise SourceError(path, "no articles: every line is empty")


def _parse_bytes(data: bytes, suffix: str, origin: str, path: str, result: IngestResult) -> None:
    if suffix == ".jsonl":
        _parse_jsonl_file(io.BytesIO(data), origin, path, result)
        return
    text = decode_bytes(data, path)
    is_html = suffix in (".html", ".htm")
    if is_html and not _ANY_TAG.search(text):
        raise SourceError(path, f"not HTML: no tags found; save plain text as .txt instead of {suffix}")
    stem = Path(origin).with_suffix("").as_posix()
    result.articles = _parse_text_document(text, stem, origin, path, is_html=is_html)


def iter_source_files(paths: Iterable[str | Path]) -> Iterable[tuple[Path, Path | None]]:
    """(file, root) for each file given, and each supported file under each folder given."""
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    if f.suffix.lower() in SUPPORTED_SUFFIXES:
                        yield f, p
                    elif f.name.lower() not in ("readme", "readme.md"):
                        log.info("ignoring %s: not a supported article file", f)
        else:
            yield p, None


def read_articles(paths: str | Path | Iterable[str | Path]) -> IngestResult:
    """Read every supported file under the given folders or files.

    Unreadable files are reported in ``errors`` (naming the file and reason) and the
    rest are still read. Article ids must be unique across files: a duplicate is an
    error and the first article keeps the id.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    total = IngestResult()
    seen: dict[str, str] = {}
    for f, root in iter_source_files(paths):
        if not f.exists():
            total.errors.append(SourceError(str(f), "no such file or folder"))
            continue
        r = read_file(f, root=root)
        total.files += r.files
        total.errors += r.errors
        for a in r.articles:
            if a.id in seen:
                total.errors.append(SourceError(str(f), f"duplicate article id {a.id!r} (already read from {seen[a.id]}); skipped"))
                continue
            seen[a.id] = a.origin or str(f)
            total.articles.append(a)
    return total


def file_article_ids(result: IngestResult) -> dict[str, list[str]]:
    """origin file → ids of the articles read from it."""
    out: dict[str, list[str]] = {}
    for a in result.articles:
        out.setdefault(a.origin or "", []).append(a.id)
    return out


def file_fingerprints(paths: Iterable[str | Path]) -> dict[str, str]:
    """origin → sha256 of the bytes, for every supported file under the given paths."""
    out: dict[str, str] = {}
    for f, root in iter_source_files(paths):
        if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES:
            origin = str(f.relative_to(root)) if root else f.name
            with open(f, "rb") as fh:  # in pieces: a .jsonl file may be a gigabyte
                out[origin] = hashlib.file_digest(fh, "sha256").hexdigest()
    return out
