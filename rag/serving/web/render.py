"""What the chat page shows, as HTML and Markdown: answers with linked citations, source cards with the
supporting sentence marked, and the upload report. No gradio here (the layout is in chat.py)."""
from __future__ import annotations

import html
import logging
import os
import re

from ...errors import AccessError, IndexLockedError, NotReadyError, QueryError, RagError
from ...reading.sources import MAX_FILE_BYTES
from ...records import Answer, Passage, readable_date
from ...text import to_simplified
from ..service import Service
from .zh import zh_error, zh_message

log = logging.getLogger(__name__)


def _linked(text: str, n_sources: int) -> str:
    """Citation markers [n] as links to the source cards."""
    return re.sub(
        r"\[(\d{1,2})\]",
        lambda m: f'<a href="#src-{m.group(1)}" class="cite">[{m.group(1)}]</a>' if 1 <= int(m.group(1)) <= n_sources else m.group(0),
        text,
    )


def _find_in_either_script(text: str, span: str) -> int:
    """Where ``span`` (in the question's script) starts in ``text`` (in the article's), or -1."""
    if not span:
        return -1
    k = text.find(span)
    if k < 0:
        folded = to_simplified(text)
        if len(folded) == len(text):  # character for character, so offsets carry over
            k = folded.find(to_simplified(span))
    return k


def _highlighted(passage: str, sentence: str, span: str = "") -> str:
    """The passage with its supporting sentence marked, and the short answer inside it marked again."""
    i = passage.find(sentence) if sentence else -1
    if i < 0:
        return html.escape(passage)
    j = i + len(sentence)
    inner = html.escape(passage[i:j])
    k = _find_in_either_script(passage[i:j], span)
    if k >= 0:
        a, b = i + k, i + k + len(span)
        inner = (html.escape(passage[i:a]) + '<span class="span">' + html.escape(passage[a:b]) + "</span>"
                 + html.escape(passage[b:j]))
    return html.escape(passage[:i]) + "<mark>" + inner + "</mark>" + html.escape(passage[j:])


def _date(p: Passage) -> str:
    return readable_date(p.date, p.month, p.day) or "日期不详"


def _also(p: Passage) -> str:
    """Where else the story ran (folded into this passage): "亦见于：湖北日报、新民晚报", and for
    articles without a named outlet their number ("另有2篇相同报道")."""
    outlets = [x for x in p.also_in if x not in p.same_story]
    unnamed = len(p.also_in) - len(outlets)
    parts = []
    if outlets:
        parts.append("亦见于：" + "、".join(outlets))
    if unnamed:
        parts.append(f"另有{unnamed}篇相同报道")
    return "；".join(parts)


def _cards(answer: Answer, id_prefix: str) -> str:
    cards = []
    for n, p in enumerate(answer.citations, 1):
        hl = answer.highlights[n - 1] if n - 1 < len(answer.highlights) else ""
        meta = " · ".join(html.escape(x) for x in (p.source or "来源不详", _date(p), _also(p)) if x)
        title = html.escape(p.title)
        if p.url:
            title = f'<a href="{html.escape(p.url)}" target="_blank" rel="noopener">{title}</a>'
        span = answer.short if n == 1 else ""
        text = _highlighted(p.text, hl, span).replace("\n", "<br>")  # no raw newline: the chat renders Markdown
        cards.append(
            f'<div class="src" id="{id_prefix}{n}"><div><b>[{n}]</b> {title}</div>'
            f'<div class="src-meta">{meta}</div><p class="src-text">{text}</p></div>'
        )
    return "".join(cards)


def sources_html(answer: Answer | None) -> str:
    """The side panel of the latest answer's sources (wide screens)."""
    if answer is None or not answer.citations:
        return '<div class="sources-panel"><p>（暂无出处）</p></div>'
    return '<div class="sources-panel">' + _cards(answer, "src-") + "</div>"


def inline_sources_html(answer: Answer) -> str:
    """The sources directly under an answer in the chat, for narrow screens (CSS hides them on wide
    ones): one line per source, tap to unfold the passages with the supporting sentence marked."""
    if not answer.citations:
        return ""
    heads = "".join(
        f'<span class="inline-src">[{n}] {html.escape(p.title)} · {html.escape(p.source or "来源不详")} · {html.escape(_date(p))}</span>'
        for n, p in enumerate(answer.citations, 1)
    )
    return (f'<details class="inline-sources"><summary><b>出处</b>（点开看原文）{heads}</summary>'
            f'{_cards(answer, "m-src-")}</details>')


_INLINE = re.compile(r'\s*<details class="inline-sources">.*?</details>', re.DOTALL)


def without_inline_sources(message: dict) -> dict:
    """A chat message without its inline sources (only the latest answer keeps them)."""
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _INLINE.sub("", content)}
    if isinstance(content, list):
        parts = [{**p, "text": _INLINE.sub("", p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                 for p in content]
        return {**message, "content": parts}
    return message


def _same_question(a: str, b: str) -> bool:
    return re.sub(r"[\s？?。！!，,]", "", a) == re.sub(r"[\s？?。！!，,]", "", b)


def answer_markdown(answer: Answer, asked: str | None = None) -> str:
    """The short answer in bold, then the supporting sentences with linked citations; for a
    follow-up read differently from how it was typed, the question answered, so a wrong reading shows."""
    parts = []
    if asked is not None and answer.question and not _same_question(asked, answer.question):
        parts.append(f'<span class="asked">按“{html.escape(answer.question)}”回答</span>')
    story = f'<span class="story">{html.escape(answer.story)}</span>' if answer.story else ""
    if answer.short:
        parts.append(f'<b class="short">{html.escape(answer.short)}</b>' + (f" · {story}" if story else ""))
    elif story:
        parts.append(f"出自 {story}")
    parts.append(_linked(html.escape(answer.text), len(answer.citations)))
    text = "\n\n".join(parts)
    if answer.note:
        text += f'\n\n<span class="note">⚠ {html.escape(answer.note)}</span>'
    return text


def chat_message(answer: Answer, asked: str | None = None) -> str:
    """The answer as shown in the chat: linked citations, then the sources (for narrow screens)."""
    inline = inline_sources_html(answer)
    return answer_markdown(answer, asked) + ("\n\n" + inline if inline else "")


_FILE_STATUS = {"new": "新文件", "updated": "更新（替换了同名文件，旧文件已保留）", "unchanged": "未变化"}


def upload_files(service: Service, paths: list | None, token: str | None = None, via_proxy: bool = False,
                 client: str = "unknown") -> str:
    """The upload tab's handler: save the uploaded files (Gradio temp paths, original names kept)
    into the data folder, update the index, and describe what changed as Markdown. A refused
    upload is logged with the ``client``'s address."""
    if not paths:
        return "请先选择要上传的文件。"
    files = []
    for p in paths:
        path = getattr(p, "name", None) or getattr(p, "path", None) or str(p)
        with open(path, "rb") as f:
            files.append((os.path.basename(path), f.read(MAX_FILE_BYTES + 1)))
    try:
        r = service.upload(files, token=token or None, via_proxy=via_proxy)
    except (AccessError, QueryError) as e:
        log.warning("refused upload (chat) of %s from %s: %s", ", ".join(n for n, _ in files)[:200], client, str(e)[:300])
        if isinstance(e, AccessError):
            return "⚠ 未上传：" + ("管理口令不对或未填写。" if not e.read_only else html.escape(zh_error(e), quote=False))
        return f"⚠ 未上传，没有保存任何文件：{html.escape(zh_error(e), quote=False)}"
    except (NotReadyError, IndexLockedError) as e:
        return f"⚠ 暂时无法更新索引，没有保存任何文件：{html.escape(zh_error(e), quote=False)}"
    except RagError as e:
        log.error("upload failed: %s", e)
        return f"⚠ 更新失败，没有保存任何文件：{html.escape(str(e))}"
    lines = ["### 更新报告", ""]
    lines += [f"- {html.escape(f['name'])}：{_FILE_STATUS.get(f['status'], f['status'])}" for f in r["files"]]
    lines += [
        "",
        f"新增文章 {len(r['added'])} 篇，修改 {len(r['changed'])} 篇，删除 {len(r['removed'])} 篇，"
        f"未变 {r['unchanged']} 篇；嵌入 {r['embedded']} 个段落（复用 {r['reused']} 个），用时 {r['seconds']:.1f} 秒。",
    ]
    if any(f["status"] == "updated" for f in r["files"]):
        lines += ["", "被替换的旧文件保存在数据文件夹的 .trash/ 中，可用 `POST /api/documents/restore` 恢复（见 README）。"]
    if r["errors"]:
        lines += ["", f"**{len(r['errors'])} 处无法读取：**"] + [f"- {html.escape(zh_message(e))}" for e in r["errors"]]
    return "\n".join(lines)


def feedback_source(p: Passage) -> dict:
    """What a vote records of a cited passage: enough to find it again, not its text."""
    return {"doc_id": p.doc_id, "chunk_id": p.chunk_id, "title": p.title, "source": p.source, "date": p.date,
            "month": p.month, "day": p.day}

