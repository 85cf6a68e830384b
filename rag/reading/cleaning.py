"""Cleaning one article's lines: navigation, metadata, captions, links and footers dropped; title,
date and outlet taken from what the text states; listing pages split into their articles."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date as _date
from datetime import datetime

from ..records import Article
from ..text import to_simplified

__all__ = ["Draft", "clean_article_lines", "clean_lines", "derive_title", "original_headline", "byline_outlet", "finish", "is_listing",
           "normalize_date", "parse_listing"]

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


def clean_lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u3000", " ").replace("\xa0", " ")
    return [ln.strip() for ln in text.split("\n")]


# --- cleaning of a single article's lines ----------------------------------------------------
_FOOTER = re.compile(
    r"^(上一[条篇]|下一[条篇]|与我们联系|联系我们|copyright|©|版权所有|版权声明|长按二维码|关注精彩内容|"
    r"更多精彩资讯|有想补充的信息|(责任)?编辑[:：]|返回首页|分享到|扫一扫|相关阅读|相关新闻|热点推荐)",
    re.IGNORECASE,
)
# (a table of patterns, one a line: the question patterns of rag/asked.py look alike in shape only)
_NAV = re.compile(r"(您现在的位置|当前位置|首页\s*[>›»])")
_META = re.compile(r"(发布时间|发布日期|时间)[:：]\s*(\d{4}[-/年]\d{1,2}[-/月]\d{1,2}日?)")
_SOURCE_FIELD = re.compile(r"来源[:：]\s*([^\s　|｜]+)")
_SOURCE_NOTE = re.compile(r"^[（(]\s*(?:文章)?来源[:：]\s*([^）)]+)[）)]$")
_CAPTION = re.compile(r"(供图|摄|摄影|图片来源\S*)\s*[)）]?$")
_LINK_LINE = re.compile(r"^(<https?://[^>]+>|\[[^\]]*\]\([^)]*\)([|｜\s]*\[[^\]]*\]\([^)]*\))*|https?://\S+)$")
_DATELINE = re.compile(
    r"^(?P<pre>[^\s,，。(（]{0,24}?)(?:(?P<y>\d{4})年)?(?P<m>\d{1,2})月(?P<d>\d{1,2})日(?:电|讯|消息)"
)
_TITLE_PUNCT = re.compile(r"[。！？!?；;:：,，]$")


@dataclass
class Draft:
    title: str | None = None
    date: str | None = None
    source: str | None = None
    url: str | None = None
    lines: list[str] = field(default_factory=list)


def clean_article_lines(lines: list[str], draft: Draft, *, title_from_first_line: bool) -> Draft:
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
                draft.source = byline_outlet(kept[0][1])

    draft.lines = [ln for ln, _ in kept]
    return draft


# "原标题：<headline>" before the body of a syndicated story: the original headline ends at a run of
# spaces or a line break, or, glued to the body, where a dateline or the outlet's byline begins
_ORIGINAL_HEADLINE = re.compile(r"^(?:原标题[:：]|【原标题】)\s*")
_HEADLINE_GAP = re.compile(r"\s{2,}|\n")
_BYLINE = re.compile(
    r"【[^】]{1,30}】|本文转自|来源[:：]|据[^，。,！？]{0,20}报道|本报|当地时间|记者从|近日，|日前，|"
    r"新华社|新华网|中新社|中新网|中国新闻网|中新经纬|人民网|央视网|央视新闻|央广网|光明网|光明日报|环球网|海外网|"
    r"参考消息网|南都讯|新京报|澎湃新闻|财联社|界面新闻|证券时报|中国青年报|扬子晚报|每经|每日经济新闻|智通财经|"
    r"第一财经|红星新闻|潮新闻|封面新闻|极目新闻|大皖新闻|上观新闻|东方网|红网|齐鲁网|IT之家|湖北日报|长江日报|"
    r"北京日报|新民晚报|北京青年报|潇湘晨报|南方都市报|南方日报|羊城晚报|观察者网"
)
HEADLINE_MAX = 60
_INVISIBLE = re.compile("[\u200b-\u200f\u2060\ufeff]")


def derive_title(text: str) -> str:
    """A title for an article that has none: its first sentence without the dateline, shortened."""
    first = re.split(r"[。！？!?\n]", _ORIGINAL_HEADLINE.sub("", text, count=1), maxsplit=1)[0]
    first = re.sub(r"^[^(（]{0,24}?\d{1,2}月\d{1,2}日(?:电|讯|消息)\s*([(（][^)）]{0,30}[)）])?", "", first)
    first = first.strip(" ,，")
    clause = re.split(r"[,，;；]", first, maxsplit=1)[0]
    if 8 <= len(clause) <= 40:
        return clause
    if not first:  # the text starts with a sentence end or dateline only ("!", "。…")
        first = " ".join(text.split())
    return first if len(first) <= 40 else first[:39] + "…"


def original_headline(text: str) -> tuple[str, str] | None:
    """(headline, body) of a syndicated story that begins with its original headline, as it came
    (its runs of spaces still there): "原标题：最新！泰国国会推迟选举新总理      参考消息网7月25日报道…".
    The headline ends at a run of spaces or a line break, or, glued to the body, where a dateline
    or an outlet's byline begins; None when the text does not begin so or no end is found."""
    lead = _ORIGINAL_HEADLINE.match(text.lstrip())
    if not lead:
        return None
    rest = text.lstrip()[lead.end():]
    gap = _HEADLINE_GAP.search(rest, 0, HEADLINE_MAX + 1)
    byline = _BYLINE.search(rest, 6, HEADLINE_MAX + 1)
    ends = [m.start() for m in (gap, byline) if m]
    if not ends:
        return None
    headline = " ".join(_INVISIBLE.sub("", rest[:min(ends)]).split())
    body = rest[min(ends):].strip()
    return (headline, body) if len(headline) >= 6 and body else None


# the outlet's byline at the start of a news text: "中新社北京7月25日电", "IT之家 8 月 16 日消息",
# "新京报讯（记者…）", "本文转自【央视新闻客户端】", or a "来源：浙江日报" line near the top
_OUTLET_NAME = r"(?P<o>[\u4e00-\u9fffA-Za-z]{1,7}?(?:之家|客户端|新闻网|新闻|日报|晚报|晨报|时报|商报|财经|电视台|广播电台|通讯社|网|社|报))"
_DATED_BYLINE = re.compile(r"^【?" + _OUTLET_NAME + r"[\u4e00-\u9fff·]{0,8}\s*\d{1,2}\s*月\s*\d{1,2}\s*日\s*(?:电|讯|消息|报道)")
_FLASH_BYLINE = re.compile(r"^【?" + _OUTLET_NAME + r"[\u4e00-\u9fff]{0,6}讯")
_CARRIED_FROM = re.compile(r"^本文转自【(?P<o>[^】]{2,12})】")
_SOURCE_LINE = re.compile(r"来源\s*[：:|｜]\s*(?P<o>[\u4e00-\u9fffA-Za-z]{2,12}?)(?=\s|记者|编辑|作者|$|[，,。])")
_NOT_AN_OUTLET = ("本报", "本网", "本台", "本刊", "本社")


def byline_outlet(text: str) -> str | None:
    """The outlet a news text names as its own at its start ("中新社北京7月25日电" → 中新社, "新京报讯" →
    新京报, "本文转自【央视新闻客户端】" → 央视新闻, "来源：浙江日报" → 浙江日报), else None. A report
    that cites an agency ("据新华社…") or calls itself "本报" names no outlet."""
    head = text[:120]
    m = _DATED_BYLINE.match(head) or _FLASH_BYLINE.match(head) or _CARRIED_FROM.match(head) or _SOURCE_LINE.search(head)
    if not m:
        return None
    outlet = m.group("o").removesuffix("客户端")
    if len(outlet) < 2 or outlet.startswith("据") or outlet in _NOT_AN_OUTLET:
        return None
    return outlet


def finish(draft: Draft, *, doc_id: str, origin: str) -> Article | None:
    body = "\n".join(draft.lines)
    body = re.sub(r"\n{2,}", "\n", body).strip()
    if not body:
        return None
    title = (draft.title or "").strip()
    if not title:
        title, body = original_headline(body) or (derive_title(body), body)
    source = to_simplified(draft.source.strip()) if draft.source else byline_outlet(body)
    return Article(
        id=doc_id, title=title, text=body, date=draft.date, source=source or None, url=draft.url, origin=origin
    )


# --- listing pages: several articles, each under a 【outlet】headline -------------------------
_LISTING_SEP = re.compile(r"^\s*-\s*$")
_HEADLINE = re.compile(r"^【([^】]{1,20})】(.+)$")
_DATE_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_listing(lines: list[str]) -> bool:
    seps = sum(1 for ln in lines if _LISTING_SEP.match(ln))
    heads = sum(1 for ln in lines if _HEADLINE.match(ln))
    return seps >= 2 and heads >= 2


def parse_listing(lines: list[str], stem: str, origin: str) -> list[Article]:
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
        draft = Draft(title=title)
        date_idx = next((i for i, ln in enumerate(body) if _DATE_LINE.match(ln)), None)
        if date_idx is not None:
            draft.date = normalize_date(body[date_idx])
            body = body[:date_idx]  # what follows the date line is page trailer
        clean_article_lines(body, draft, title_from_first_line=False)
        art = finish(draft, doc_id=f"{stem}-{len(articles) + 1:02d}", origin=origin)
        if art:
            articles.append(art)
    return articles
