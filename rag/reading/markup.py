"""Markup of article files: YAML front matter, HTML (the selectolax parser) and Markdown headings.
This module owns the HTML parser and YAML."""
from __future__ import annotations

import functools
import re
from collections import Counter

from .cleaning import clean_lines
from ..errors import SourceError
from ..text import to_simplified

__all__ = ["HTML_HINT", "MAX_FRONT_MATTER_CHARS", "MAX_HTML_ATTRIBUTES", "MAX_HTML_DEPTH", "MAX_HTML_NAMES", "MAX_HTML_TAGS",
           "check_html", "front_matter", "html_to_lines", "markdown_headings"]


# Front matter is a few fields (title, date, source, url): 64 KB is hundreds of times that, and keeps
# PyYAML (pure Python, ~1 MB/s) within a fraction of a second. Aliases are refused: an alias bomb
# ("billion laughs") is a few lines that expand to a huge value once printed or copied.
MAX_FRONT_MATTER_CHARS = 64 * 1024
_FRONT_MATTER = re.compile(r"^---\s*\n(.*?)\n---\s*\n", re.DOTALL)


def _yaml_loader():
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """yaml.safe_load's loader without aliases (``*name``)."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in front matter",
                                                  event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def front_matter(text: str, path: str) -> tuple[dict, str]:
    """The YAML front matter of ``text`` (between ``---`` lines at its start) and the text after it.
    SourceError, naming ``path``, for invalid YAML, aliases, front matter over MAX_FRONT_MATTER_CHARS
    or nested too deep."""
    if not text.startswith("---"):
        return {}, text
    m = _FRONT_MATTER.match(text[: MAX_FRONT_MATTER_CHARS + 16])
    if not m:
        if _FRONT_MATTER.match(text):
            raise SourceError(path, f"YAML front matter longer than {MAX_FRONT_MATTER_CHARS // 1024} KB; the limit is "
                                    f"{MAX_FRONT_MATTER_CHARS // 1024} KB: keep only the fields (title, date, source, url)")
        return {}, text
    import yaml

    try:
        meta = yaml.load(m.group(1), Loader=_yaml_loader()) or {}  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        raise SourceError(path, f"invalid YAML front matter: {e}") from e
    except RecursionError:
        raise SourceError(path, "YAML front matter nested too deep: keep only the fields (title, date, source, url)") from None
    if not isinstance(meta, dict):
        raise SourceError(path, "YAML front matter must be a mapping of fields (title, date, ...)")
    return meta, text[m.end() :]


# --- bounds on HTML, checked before the parser sees it ------------------------------------------
# selectolax (lexbor) is super-linear in a few shapes of input: nesting depth (40k nested <div> took
# 7 s, 80k 32 s), distinct tag or attribute names (50k of either: ~1 min) and attributes on one tag
# (5k: seconds). A linear pre-scan refuses those before parsing; the limits are far above real news
# pages (depth ~20-40, a few dozen names, a dozen attributes) and keep a 16 MB file's parse within
# seconds (docs/benchmarks.md, scripts/bench_hostile.py).
MAX_HTML_DEPTH = 256  # open elements at once
MAX_HTML_TAGS = 400_000  # start and end tags in one file (a long news page has a few thousand)
MAX_HTML_ATTRIBUTES = 256  # on one tag
MAX_HTML_NAMES = 1_000  # distinct tag and attribute names in one file

_VOID = frozenset("area base br col embed hr img input link meta param source track wbr keygen basefont bgsound frame "
                  "image isindex nextid spacer".split())
_RAW_TEXT = frozenset("script style textarea title xmp iframe noembed noframes noscript plaintext".split())
# elements whose end tag may be left out: a start tag of any of them closes an open one on top
_IMPLIED_END = frozenset("p li dt dd option optgroup tr td th thead tbody tfoot colgroup rb rt rp rtc caption".split())
_TAG_OPEN = re.compile(r"<(?:(/?)([A-Za-z][^\s/>\x00]*)|!--|[!?])")
_ATTRIBUTE = re.compile(r"[\s/]*([^\s\"'>/=][^\s\"'>/=]*)(?:\s*=\s*(?:\"|'|[^\s\"'>]*))?")
_TAG_END = re.compile(r"([\s/]*)>")


def check_html(html: str, path: str) -> None:
    """Raise SourceError, naming ``path`` and the limit, when ``html`` is nested deeper than
    MAX_HTML_DEPTH, holds more than MAX_HTML_TAGS tags, a tag with more than
    MAX_HTML_ATTRIBUTES attributes or more than MAX_HTML_NAMES distinct tag and attribute names.

    One linear pass that follows the parser's rules closely enough to over-count, never to
    under-count, nesting: void elements do not nest, elements whose end tag may be left out
    (``<p>``, ``<li>``, ``<td>``...) are closed by the next such start tag, an end tag closes up
    to the nearest open element of its name and is ignored when none is open; the text of
    ``<script>``, ``<style>`` and the like is skipped, as are comments.
    """
    stack: list[str] = []
    open_names: Counter[str] = Counter()
    names: set[str] = set()
    tags = 0
    pos = 0
    while True:
        m = _TAG_OPEN.search(html, pos)
        if m is None:
            return
        if m.group(2) is None:  # <!-- comment -->, <!doctype ...>, <?...>
            end = html.find("-->", m.end()) if m.group(0) == "<!--" else html.find(">", m.end())
            if end < 0:
                return  # the rest of the file is one comment: text to the parser
            pos = end + 1
            continue
        closing, name = m.group(1), m.group(2).lower()
        pos = _skip_attributes(html, m.end(), name, names, path)
        if pos is None:
            return  # an unterminated quoted value: the rest of the file is that value
        t = _TAG_END.match(html, pos)
        self_closing = bool(t and t.group(1).rstrip().endswith("/"))
        pos = t.end() if t else pos
        names.add(name)
        if len(names) > MAX_HTML_NAMES:
            raise SourceError(path, f"HTML with more than {MAX_HTML_NAMES} distinct tag and attribute names; "
                                    "the limit keeps parsing fast: simplify the markup or save the text as .txt")
        tags += 1
        if tags > MAX_HTML_TAGS:
            raise SourceError(path, f"HTML with more than {MAX_HTML_TAGS:,} tags; the limit is {MAX_HTML_TAGS:,} per file: "
                                    "split it into several files")
        if closing:
            if open_names[name]:  # close up to the nearest open element of that name
                while True:
                    top = stack.pop()
                    open_names[top] -= 1
                    if top == name:
                        break
            continue
        if name in _VOID or (self_closing and (open_names["svg"] or open_names["math"])):
            continue
        if name in _RAW_TEXT:  # its text is not markup: go on after its end tag
            if name == "plaintext":
                return
            end = _raw_text_end(name).search(html, pos)
            if end is None:
                return
            pos = end.start()
            continue
        if name in _IMPLIED_END:
            while stack and stack[-1] in _IMPLIED_END:
                open_names[stack.pop()] -= 1
        stack.append(name)
        open_names[name] += 1
        if len(stack) > MAX_HTML_DEPTH:
            raise SourceError(path, f"HTML nested more than {MAX_HTML_DEPTH} elements deep (at <{name[:40]}>); "
                                    f"the limit is {MAX_HTML_DEPTH} levels: simplify the markup or save the text as .txt")


def _skip_attributes(html: str, pos: int, name: str, names: set[str], path: str) -> int | None:
    """Where the attributes of tag ``name`` that start at ``pos`` end, their names added to
    ``names``; None when a quoted value is never closed. Each attribute is read in one step and a
    quoted value skipped with find; SourceError past MAX_HTML_ATTRIBUTES."""
    attributes = 0
    while True:
        a = _ATTRIBUTE.match(html, pos)
        if a is None or a.end() == pos:
            return pos
        attributes += 1
        if attributes > MAX_HTML_ATTRIBUTES:
            raise SourceError(path, f"HTML tag <{name[:40]}> has more than {MAX_HTML_ATTRIBUTES} attributes; "
                                    "the limit keeps parsing fast: simplify the markup or save the text as .txt")
        names.add(a.group(1).lower())
        pos = a.end()
        quote = html[pos - 1]
        if quote in "\"'":  # an opening quote: names and unquoted values hold none
            close = html.find(quote, pos)
            if close < 0:
                return None
            pos = close + 1


@functools.lru_cache(maxsize=None)
def _raw_text_end(name: str) -> re.Pattern:
    return re.compile("</" + name, re.IGNORECASE)


HTML_HINT = re.compile(r"<(p|div|br|h[1-6]|article|body|span)\b", re.IGNORECASE)
_BLOCKS = "p, h1, h2, h3, h4, h5, h6, li, blockquote, pre, td"
_CONTAINERS = f":is({_BLOCKS}):has({_BLOCKS})"


def html_to_lines(html: str, path: str = "<html>") -> tuple[list[str], dict]:
    """Paragraph texts of an HTML document or fragment, and metadata it states. SourceError,
    naming ``path`` and the limit, for markup beyond the bounds of ``check_html``."""
    from selectolax.lexbor import LexborHTMLParser as HTMLParser

    check_html(html, path)
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
            # containers of other blocks are skipped: their children are listed themselves (one query,
            # not one per block: that was quadratic in the nesting)
            containers = {n.mem_id for n in root.css(_CONTAINERS)}
            for b in blocks:
                if b.mem_id in containers:
                    continue
                t = b.text(separator="", strip=True)
                if t:
                    lines.append(t)
        else:
            lines = clean_lines(root.text(separator="\n", strip=True))
    return lines, meta


_MD_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")


def markdown_headings(lines: list[str], meta: dict) -> list[str]:
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
