"""Markup of article files: YAML front matter, HTML (the selectolax parser) and Markdown headings.
This module owns the HTML parser and YAML."""
from __future__ import annotations

import re

from .cleaning import clean_lines
from ..errors import SourceError
from ..text import to_simplified

__all__ = ["HTML_HINT", "front_matter", "html_to_lines", "markdown_headings"]


def front_matter(text: str, path: str) -> tuple[dict, str]:
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


HTML_HINT = re.compile(r"<(p|div|br|h[1-6]|article|body|span)\b", re.IGNORECASE)
_BLOCKS = "p, h1, h2, h3, h4, h5, h6, li, blockquote, pre, td"


def html_to_lines(html: str) -> tuple[list[str], dict]:
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
