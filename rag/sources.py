"""Reading and cleaning sources: files in → clean Articles out.

Handles plain text, Markdown with YAML front matter, HTML, JSONL (one article per
line), listing pages of several articles, scraped pages with navigation and footer
junk, and pinyin-annotated Traditional text; decodes UTF-8, GB18030 and Big5.
This module owns the HTML parser (selectolax) and YAML.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date as _date
from datetime import datetime
from pathlib import Path
from typing import Iterable

from .errors import SourceError
from .records import Article
from .text import strip_pinyin_noise, to_simplified

__all__ = ["read_articles", "read_file", "read_bytes", "IngestResult", "SUPPORTED_SUFFIXES", "decode_bytes", "file_article_ids"]

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".jsonl")
# Larger files are refused: 16 MB of Chinese text is ~5 million characters, hours of
# embedding on a CPU, and almost surely a dump that should be split into articles (JSONL).
MAX_FILE_BYTES = 16 * 1024 * 1024
# A .jsonl file is already one article per line (a corpus export), so it may be much larger.
MAX_JSONL_BYTES = 1024 * 1024 * 1024


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
    hand-written guess it replaced).
    """
    if not data.strip():
        raise SourceError(path, "empty file: nothing to index")
    if b"\x00" in data[:8192]:
        raise SourceError(path, "binary file (contains NUL bytes): expected UTF-8, GB18030 or Big5 text")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        first_bad = e.start
    # UTF-8 with a few broken bytes (a file cut mid-character, a stray byte): keep the text
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    if bad <= max(2, len(lenient) // 1000):
        log.warning("%s: %d undecodable byte sequence(s) in UTF-8 text (first at byte %d) dropped", path, bad, first_bad)
        return lenient.replace("\ufffd", "")
    from charset_normalizer import from_bytes

    best = from_bytes(data, cp_isolation=["gb18030", "big5"]).best()
    if best is None:
        raise SourceError(path, "cannot decode the text: it is not UTF-8, GB18030 or Big5")
    return str(best)


# --- small helpers ----------------------------------------------------------------------------
_ISO_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?")


def normalize_date(value: object) -> str | None:
    """An ISO date from what a source states, or None: '2022-01-19 13:34:56 +0800' → '2022-01-19'."""
    if value is None or value == "":
        return None
    if isinstance(value, (datetime, _date)):
        return value.strftime("%Y-%m-%d")
    s = str(value).strip()
    m = _ISO_DATE.search(s)
    if m:
        y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if 1 <= mo <= 12 and 1 <= d <= 31:
            return f"{y:04d}-{mo:02d}-{d:02d}"
    m = re.fullmatch(r"--(\d{2})-(\d{2})", s)
    if m:
        return s
    m = re.fullmatch(r"(\d{4})", s)
    if m:
        return s
    return None


def _clean_lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u3000", " ").replace("\xa0", " ")
    return [ln.strip() for ln in text.split("\n")]


# --- cleaning of a single article's lines ----------------------------------------------------
_FOOTER = re.compile(
    r"^(上一[条篇]|下一[条篇]|与我们联系|联系我们|copyright|©|版权所有|版权声明|长按二维码|关注精彩内容|"
    r"更多精彩资讯|有想补充的信息|(责任)?编辑[:：]|返回首页|分享到|扫一扫|相关阅读|相关新闻|热点推荐)",
    re.IGNORECASE,
)
_NAV = re.compile(r"(您现在的位置|当前位置|首页\s*[>›»])")
_META = re.compile(r"(发布时间|发布日期|时间)[:：]\s*(\d{4}[-/年]\d{1,2}[-/月]\d{1,2}日?)")
_SOURCE_FIELD = re.compile(r"来源[:：]\s*([^\s　|｜]+)")
_SOURCE_NOTE = re.compile(r"^[（(]\s*(?:文章)?来源[:：]\s*([^）)]+)[）)]$")
_CAPTION = re.compile(r"(供图|摄|摄影|图片来源\S*)\s*[)）]?$")
_LINK_LINE = re.compile(r"^(<https?://[^>]+>|\[[^\]]*\]\([^)]*\)([|｜\s]*\[[^\]]*\]\([^)]*\))*|https?://\S+)$")
_DATELINE = re.compile(
    r"^(?P<pre>[^\s,，。(（]{0,24}?)(?:(?P<y>\d{4})年)?(?P<m>\d{1,2})月(?P<d>\d{1,2})日(?:电|讯|消息)"
)
_OUTLET = re.compile(r"^(.{2,8}?(?:网|日报|晚报|晨报|时报|商报|新闻|电视台|广播电台|通讯社|新华社|社))")
_TITLE_PUNCT = re.compile(r"[。！？!?；;:：,，]$")


@dataclass
class _Draft:
    title: str | None = None
    date: str | None = None
    source: str | None = None
    url: str | None = None
    lines: list[str] = field(default_factory=list)


def _clean_article_lines(lines: list[str], draft: _Draft, *, title_from_first_line: bool) -> _Draft:
    """Drop navigation, metadata, captions, links and footer; fill title/date/source from what the text states."""
    simp = [to_simplified(ln) for ln in lines]

    # the footer: everything from the first footer marker on
    for i, s in enumerate(simp):
        if s and _FOOTER.match(s) and i > 0:
            lines, simp = lines[:i], simp[:i]
            break

    # a scraped page: banner and breadcrumb above the title, then a metadata line
    meta_idx = next((i for i, s in enumerate(simp) if _META.search(s)), None)
    if meta_idx is not None:
        m = _META.search(simp[meta_idx])
        draft.date = draft.date or normalize_date(m.group(2))
        sm = _SOURCE_FIELD.search(simp[meta_idx])
        if sm and not draft.source:
            draft.source = sm.group(1)
        title_idx = next((j for j in range(meta_idx - 1, -1, -1) if lines[j] and not _NAV.search(simp[j])), None)
        if title_idx is not None and not draft.title:
            draft.title = lines[title_idx]
        lines, simp = lines[meta_idx + 1 :], simp[meta_idx + 1 :]
        title_from_first_line = False

    kept: list[tuple[str, str]] = []
    for ln, s in zip(lines, simp):
        if not ln:
            kept.append(("", ""))
            continue
        if _NAV.search(s):
            continue
        src = re.fullmatch(r"来源[:：]\s*(\S+)", s)
        if src:
            draft.source = draft.source or src.group(1)
            continue
        note = _SOURCE_NOTE.match(s)
        if note:
            draft.source = draft.source or note.group(1).strip()
            continue
        if _LINK_LINE.match(ln):
            if not draft.url and ln.startswith("<http"):
                draft.url = ln.strip("<>")
            continue
        if len(s) <= 60 and _CAPTION.search(s) and not _TITLE_PUNCT.search(s[:-1] or "x"):
            continue
        kept.append((ln, s))

    # drop leading/trailing blank lines
    while kept and not kept[0][0]:
        kept.pop(0)
    while kept and not kept[-1][0]:
        kept.pop()

    if title_from_first_line and kept and not draft.title:
        first, first_s = kept[0]
        if len(first) <= 60 and not _TITLE_PUNCT.search(first_s):
            draft.title = first
            kept.pop(0)
            while kept and not kept[0][0]:
                kept.pop(0)

    # dateline of the lead paragraph: 长江日报大武汉客户端11月29日讯 / 央广网上海11月1日消息
    if kept:
        dl = _DATELINE.match(kept[0][1])
        if dl:
            if not draft.date:
                if dl.group("y"):
                    draft.date = normalize_date(f"{dl.group('y')}-{dl.group('m')}-{dl.group('d')}")
                else:
                    draft.date = f"--{int(dl.group('m')):02d}-{int(dl.group('d')):02d}"
            if not draft.source:
                om = _OUTLET.match(dl.group("pre"))
                if om:
                    draft.source = om.group(1)

    draft.lines = [ln for ln, _ in kept]
    return draft


def _derive_title(text: str) -> str:
    """A title for an article that has none: its first sentence without the dateline, shortened."""
    first = re.split(r"[。！？!?\n]", text, maxsplit=1)[0]
    first = re.sub(r"^[^(（]{0,24}?\d{1,2}月\d{1,2}日(?:电|讯|消息)\s*([(（][^)）]{0,30}[)）])?", "", first)
    first = first.strip(" ,，")
    clause = re.split(r"[,，;；]", first, maxsplit=1)[0]
    if 8 <= len(clause) <= 40:
        return clause
    if not first:  # the text starts with a sentence end or dateline only ("!", "。…")
        first = " ".join(text.split())
    return first if len(first) <= 40 else first[:39] + "…"


def _finish(draft: _Draft, *, doc_id: str, origin: str) -> Article | None:
    body = "\n".join(draft.lines)
    body = re.sub(r"\n{2,}", "\n", body).strip()
    if not body:
        return None
    title = (draft.title or "").strip() or _derive_title(body)
    source = to_simplified(draft.source.strip()) if draft.source else None
    return Article(
        id=doc_id, title=title, text=body, date=draft.date, source=source or None, url=draft.url, origin=origin
    )


# --- formats ----------------------------------------------------------------------------------
_LISTING_SEP = re.compile(r"^\s*-\s*$")
_HEADLINE = re.compile(r"^【([^】]{1,20})】(.+)$")
_DATE_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _is_listing(lines: list[str]) -> bool:
    seps = sum(1 for ln in lines if _LISTING_SEP.match(ln))
    heads = sum(1 for ln in lines if _HEADLINE.match(ln))
    return seps >= 2 and heads >= 2


def _parse_listing(lines: list[str], stem: str, origin: str) -> list[Article]:
    groups: list[list[str]] = [[]]
    for ln in lines:
        if _LISTING_SEP.match(ln):
            groups.append([])
        else:
            groups[-1].append(ln)
    articles: list[Article] = []
    for g in groups:
        g = [ln for ln in g if ln.strip()]
        head_idx = next((i for i, ln in enumerate(g) if _HEADLINE.match(ln)), None)
        if head_idx is None:
            continue  # page header or trailer, not an article
        title = _HEADLINE.match(g[head_idx]).group(2).strip()
        body = g[head_idx + 1 :]
        draft = _Draft(title=title)
        date_idx = next((i for i, ln in enumerate(body) if _DATE_LINE.match(ln)), None)
        if date_idx is not None:
            draft.date = normalize_date(body[date_idx])
            body = body[:date_idx]  # what follows the date line is page trailer
        _clean_article_lines(body, draft, title_from_first_line=False)
        art = _finish(draft, doc_id=f"{stem}-{len(articles) + 1:02d}", origin=origin)
        if art:
            articles.append(art)
    return articles


def _front_matter(text: str, path: str) -> tuple[dict, str]:
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", text, re.DOTALL)
    if not m:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as e:
        raise SourceError(path, f"invalid YAML front matter: {e}") from e
    if not isinstance(meta, dict):
        raise SourceError(path, "YAML front matter must be a mapping of fields (title, date, ...)")
    return meta, text[m.end() :]


_HTML_HINT = re.compile(r"<(p|div|br|h[1-6]|article|body|span)\b", re.IGNORECASE)
_BLOCKS = "p, h1, h2, h3, h4, h5, h6, li, blockquote, pre, td"


def _html_to_lines(html: str) -> tuple[list[str], dict]:
    """Paragraph texts of an HTML document or fragment, and metadata it states."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    tree = HTMLParser(html)
    meta: dict = {}
    for sel, key in (
        ('meta[property="og:title"]', "title"),
        ('meta[property="article:published_time"]', "date"),
        ('meta[name="pubdate"]', "date"),
        ('meta[name="publishdate"]', "date"),
        ('meta[name="source"]', "source"),
        ('meta[property="og:site_name"]', "source"),
        ('link[rel="canonical"]', "url"),
        ('meta[property="og:url"]', "url"),
    ):
        node = tree.css_first(sel)
        if node and key not in meta:
            val = node.attributes.get("content") or node.attributes.get("href")
            if val:
                meta[key] = val.strip()
    if "date" not in meta:
        t = tree.css_first("time[datetime]")
        if t:
            meta["date"] = t.attributes.get("datetime")
    h1 = tree.css_first("h1")
    if h1 and h1.text(strip=True):
        meta.setdefault("title", h1.text(strip=True))
    elif tree.css_first("title") and tree.css_first("title").text(strip=True):
        meta.setdefault("title", tree.css_first("title").text(strip=True))
    for junk in tree.css("script, style, nav, header, footer, aside, noscript, form, iframe, title, h1"):
        junk.decompose()
    root = tree.css_first("article") or tree.body or tree.root
    lines: list[str] = []
    if root is not None:
        blocks = root.css(_BLOCKS)
        if blocks:
            for b in blocks:
                if len(b.css(_BLOCKS)) > 1:  # css() includes the node itself
                    continue  # a container of other blocks: its children are listed themselves
                t = b.text(separator="", strip=True)
                if t:
                    lines.append(t)
        else:
            lines = _clean_lines(root.text(separator="\n", strip=True))
    return lines, meta


_MD_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")


def _markdown_headings(lines: list[str], meta: dict) -> list[str]:
    """Markdown headings without their ``#`` marks; the first one is the title when none is given
    (and is dropped when it repeats the given title)."""
    out: list[str] = []
    for ln in lines:
        m = _MD_HEADING.match(ln)
        if not m:
            out.append(ln)
            continue
        heading = m.group(1).strip()
        if not meta.get("title"):
            meta["title"] = heading
            continue
        if to_simplified(heading) == to_simplified(str(meta["title"]).strip()):
            continue
        out.append(heading)
    return out


def _parse_text_document(text: str, stem: str, origin: str, path: str, *, is_html: bool) -> list[Article]:
    meta, body = _front_matter(text, path)
    if is_html or _HTML_HINT.search(body):
        # HTML, possibly followed by Markdown link lines outside the markup
        tail_links = []
        if not is_html:
            closes = list(re.finditer(r"</[a-zA-Z][a-zA-Z0-9]*>", body))
            if closes:
                end = closes[-1].end()
                body, tail_links = body[:end], _clean_lines(body[end:])
        lines, html_meta = _html_to_lines(body)
        for k, v in html_meta.items():
            meta.setdefault(k, v)
        lines += tail_links
    else:
        lines = _clean_lines(strip_pinyin_noise(body))
        if _is_listing(lines):
            return _parse_listing(lines, stem, origin)
        lines = _markdown_headings(lines, meta)
    lines = [strip_pinyin_noise(ln) for ln in lines] if is_html else lines
    draft = _Draft(
        title=str(meta["title"]).strip() if meta.get("title") else None,
        date=normalize_date(meta.get("date")),
        source=str(meta["source"]).strip() if meta.get("source") else None,
        url=str(meta["url"]).strip() if meta.get("url") else None,
    )
    _clean_article_lines(lines, draft, title_from_first_line=not draft.title)
    art = _finish(draft, doc_id=stem, origin=origin)
    if art is None:
        raise SourceError(path, "no article text found (the file holds only markup, metadata or page furniture)")
    return [art]


def _parse_jsonl(text: str, origin: str, path: str, errors: list[SourceError]) -> list[Article]:
    articles: list[Article] = []
    seen: set[str] = set()
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as e:
            errors.append(SourceError(path, f"malformed JSON ({e.msg} at column {e.colno}); line skipped", line=n))
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
        clean = "\n".join(ln for ln in _clean_lines(strip_pinyin_noise(body)) if ln)
        title = str(rec.get("title") or "").strip() or _derive_title(clean)
        articles.append(
            Article(
                id=doc_id,
                title=strip_pinyin_noise(title),
                text=clean,
                date=normalize_date(rec.get("date")),
                source=to_simplified(str(rec["source"]).strip()) if rec.get("source") else None,
                url=str(rec["url"]).strip() if rec.get("url") else None,
                origin=origin,
            )
        )
    return articles


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
            data = p.read_bytes()
        except OSError as e:
            raise SourceError(str(p), f"cannot read the file: {e.strerror or e}") from e
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


def _parse_bytes(data: bytes, suffix: str, origin: str, path: str, result: IngestResult) -> None:
    text = decode_bytes(data, path)
    if suffix == ".jsonl":
        result.articles = _parse_jsonl(text, origin, path, result.errors)
        if not result.articles and not result.errors:
            raise SourceError(path, "no articles: every line is empty")
        return
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
