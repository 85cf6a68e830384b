"""Text normalisation, script conversion, pinyin-noise repair, sentence splitting and tokenising.

This module owns jieba, opencc and pypinyin: nothing else imports them.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import zlib
from array import array
from pathlib import Path
import threading
import unicodedata
from functools import lru_cache

import numpy as np

__all__ = [
    "normalize",
    "fold",
    "to_simplified",
    "to_traditional",
    "is_traditional",
    "tokenize",
    "pos_tag",
    "keywords",
    "strip_pinyin_noise",
    "split_sentences",
    "compact",
    "STOP_WORDS",
    "QUESTION_FRAME_WORDS",
]

log = logging.getLogger(__name__)

_lock = threading.Lock()

# Function words and question words that carry no topic; dropped from keyword queries.
STOP_WORDS = frozenset(
    """的 了 是 在 和 与 及 或 也 都 而 并 就 又 其 之 于 对 把 被 从 向 为 以 等 着 过 这 那 这些 那些 这个 那个
    该 此 其中 一个 有 没有 我 你 他 她 它 我们 你们 他们 它们 吗 呢 吧 啊 呀 哪些 哪个 哪里 哪 什么 怎么 怎样 如何
    为什么 多少 几 谁 何时 什么时候 是否 是不是 请问 请 由 给 到 上 中 下 会 能 要 将 已 已经 还 个 年 月 日 名字 叫
    目前 今天 现在 所 地 得 之一 时候 情况""".split()
)

# Words that frame a question rather than name its topic: question words ("何年", "甚么"), what
# the question says about the text ("文中提及") and the kind of answer asked for ("什么颜色",
# "哪个朝代"): a passage holding the answer rarely contains them. Taken from the content words of
# the CMRC 2018 and DRCD questions outside the held-out split that occur in their gold paragraph
# for under 30% of at least 8 questions, keeping the framing words and no topic word.
QUESTION_FRAME_WORDS = frozenset(
    """一种 一场 一项 一家 一座 一本 一国 甚么 为何 何年 何处 何人 何时 何地 何种 何者 多久 第几 一共 文中 提及
    提到 叫做 称之为 是因为 还有 以及 有关 地方 原因 东西 类型 特点 事情 当中 之外 之前 除了 如果 不是 曾经 有着
    是从 中有 年时 曾于 西元 颜色 职位 单位 朝代 形状 性质 意义""".split()
)

_PUNCT_RE = re.compile(r"^[\W_]+$", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")


_jieba = None


def _tokenizer():
    """The process-wide jieba tokenizer, created on first use (loading takes ~1 s)."""
    global _jieba
    if _jieba is None:
        with _lock:
            if _jieba is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
                _jieba = tok
    return _jieba


def to_simplified(text: str) -> str:
    """Traditional → Simplified script (opencc t2s); Simplified text is returned unchanged."""
    return _t2s().convert(text) if text else text


def to_traditional(text: str, like: list[str] | tuple[str, ...] = ()) -> str:
    """Simplified → Traditional script (opencc s2t).

    ``like``: texts whose Traditional characters are kept, where s2t would pick another form
    (the user's 簽約 rather than s2t's 籤約); texts in Simplified script are ignored.
    """
    if not text:
        return text
    chars: dict[str, str] = {}
    for src in like:
        if src and len(simp := to_simplified(src)) == len(src) and simp != src:
            for a, b in zip(simp, src):
                chars.setdefault(a, b)
    if not chars:
        return _s2t().convert(text)
    known = "".join(map(re.escape, chars))
    return re.sub(f"[{known}]|[^{known}]+", lambda m: chars.get(m.group(0)) or _s2t().convert(m.group(0)), text)


def is_traditional(text: str) -> bool:
    """True when the text contains characters that t2s would change."""
    return bool(text) and to_simplified(text) != text


_CACHE: dict[str, Path] = {"dir": Path.home() / ".cache" / "rag"}


def set_cache_dir(folder: str | Path) -> None:
    """Where the computed OpenCC variant table is kept (``Config.cache_dir``; set by the Retriever)."""
    _CACHE["dir"] = Path(folder)


@lru_cache(maxsize=1)
def _variant_table() -> dict[int, str]:
    """Characters that t2s leaves alone but whose Traditional form t2s maps elsewhere
    (麹 → 麴 → 曲): map them to that Simplified form, so both scripts fold alike.

    Computed once per opencc version and kept in the user cache: computing it loads the
    s2t converter (~26 MB), which a process otherwise needs only to answer in Traditional.
    """
    import importlib.metadata
    import json
    import os

    try:
        version = importlib.metadata.version("opencc")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    path = _CACHE["dir"] / f"opencc-{version}-variants.json"
    try:
        return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError):
        pass
    table = _compute_variant_table()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache only costs the computation next time
        log.debug("cannot cache %s: %s", path, e)
    return table


def _compute_variant_table() -> dict[int, str]:
    chars = [chr(cp) for r in ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)) for cp in range(r[0], r[1] + 1)]
    simp = to_simplified("\n".join(chars)).split("\n")
    back = to_simplified(to_traditional("\n".join(simp))).split("\n")
    if not (len(chars) == len(simp) == len(back)):
        return {}
    table: dict[int, str] = {}
    for c, s, b in zip(chars, simp, back):
        target = b if s != b else s
        if len(target) == 1 and target != c:
            table[ord(c)] = target
    # follow chains to a fixed point so that folding twice changes nothing
    for cp, t in list(table.items()):
        seen = {cp}
        while ord(t) in table and ord(t) not in seen:
            seen.add(ord(t))
            t = table[ord(t)]
        table[cp] = t
    return table


def fold(text: str) -> str:
    """NFKC width folding and Traditional → Simplified, case kept (what the embedder sees)."""
    if not text:
        return ""
    folded = unicodedata.normalize("NFKC", text)
    simp = unicodedata.normalize("NFKC", to_simplified(folded))
    return simp.translate(_variant_table())


def normalize(text: str) -> str:
    """Matching form: NFKC width folding, Traditional → Simplified, lower case.

    Idempotent, and the same for a text in either script.
    """
    return fold(text).lower()


def compact(text: str) -> str:
    """Normalised with all whitespace removed (for comparing answers with expected strings)."""
    return _SPACE_RE.sub("", normalize(text))


def tokenize(text: str, *, keep_stop_words: bool = False) -> list[str]:
    """jieba search-mode tokens of the normalised text, without punctuation, spaces or stop words."""
    norm = normalize(text)
    if not norm:
        return []
    out: list[str] = []
    for tok in _tokenizer().cut_for_search(norm):
        tok = tok.strip()
        if not tok or _PUNCT_RE.match(tok):
            continue
        if not keep_stop_words and tok in STOP_WORDS:
            continue
        out.append(tok)
    return out


_posseg = None


def _tag_key(word: bytes) -> int:
    return (zlib.crc32(word) << 32) | zlib.adler32(word)


class _TagTable:
    """jieba's word → part-of-speech table kept as sorted 64-bit hashes and tag ids (about 3 MB)
    instead of the 349,000-entry dict posseg builds (44 MB). ``get`` is all posseg asks of it."""

    def __init__(self, dictionary) -> None:
        keys, tags, names = array("Q"), bytearray(), {}
        with dictionary as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    keys.append(_tag_key(parts[0]))
                    tags.append(names.setdefault(parts[2].decode("ascii"), len(names)))
        order = np.argsort(np.frombuffer(keys, dtype=np.uint64), kind="stable")
        self._keys = np.frombuffer(keys, dtype=np.uint64)[order]
        self._tags = np.frombuffer(bytes(tags), dtype=np.uint8)[order]
        self._names = list(names)

    def get(self, word: str, default: str | None = None) -> str | None:
        key = np.uint64(_tag_key(word.encode("utf-8")))
        i = int(np.searchsorted(self._keys, key))
        if i < len(self._keys) and self._keys[i] == key:
            return self._names[self._tags[i]]
        return default

    def update(self, other: dict) -> None:
        raise NotImplementedError("user dictionaries with tags are not supported by rag.text.pos_tag")


def _import_posseg():
    """jieba.posseg, imported without the 44 MB word → tag dict it builds for its default
    tokenizer at import time; that tokenizer gets the compact table instead (same tags)."""
    import jieba

    if "jieba.posseg" in sys.modules:
        return sys.modules["jieba.posseg"]
    saved = jieba.dt.dictionary
    jieba.dt.dictionary = os.devnull  # an empty dictionary, for the import only
    try:
        from jieba import posseg
    finally:
        jieba.dt.dictionary = saved
    return posseg


def pos_tag(text: str) -> list[tuple[str, str]]:
    """jieba part-of-speech tags ``[(word, flag), ...]`` of the text as given (not normalised),
    e.g. ``ns`` place, ``nt`` organisation, ``nr`` person, ``n`` noun, ``v`` verb, ``r`` pronoun."""
    global _posseg
    if not text:
        return []
    if _posseg is None:
        tokenizer = _tokenizer()  # outside the lock, which _tokenizer takes itself
        with _lock:
            if _posseg is None:
                posseg = _import_posseg()
                table = _TagTable(tokenizer.get_dict_file())
                if not posseg.dt.word_tag_tab:  # the default tokenizer was given the empty dictionary
                    posseg.dt.word_tag_tab = table
                tagger = posseg.POSTokenizer.__new__(posseg.POSTokenizer)
                tagger.tokenizer = tokenizer
                tagger.word_tag_tab = table
                _posseg = tagger
    return [(p.word, p.flag) for p in _posseg.lcut(text)]


_QUESTION_PREFIX = re.compile(r"^(哪些|哪个|哪一|哪位|哪家|哪天|哪里|哪|什么|多少|几)")


def keywords(text: str) -> list[str]:
    """Content words of a question or sentence (jieba precise mode, normalised), without
    stop words, punctuation or lone characters other than digits; order kept, no repeats."""
    norm = normalize(text)
    out: list[str] = []
    for tok in _tokenizer().cut(norm):
        tok = _QUESTION_PREFIX.sub("", tok.strip())  # 哪些项目 → 项目, 哪一年 → 年
        if not tok or _PUNCT_RE.match(tok) or tok in STOP_WORDS:
            continue
        if len(tok) == 1 and not tok.isdigit():
            continue
        if tok not in out:
            out.append(tok)
    return out


# --- pinyin noise ------------------------------------------------------------------------------
_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ"
_PINYIN = rf"[a-zü{_TONED}]{{1,6}}"
# A parenthesised pinyin syllable glued to the character it annotates: 長(zhǎng)
_PINYIN_AFTER_HAN = re.compile(rf"(?<=[\u3400-\u9fff])\(({_PINYIN})\)")
# A character lost in transcoding, shown as '?' but still annotated: 日?(bào)
# (the opening bracket is often lost with the character: 日?qǐng)?bào))
_LOST_CHAR = re.compile(rf"\?\(?({_PINYIN})\)([^\u3400-\u9fff\s，。、；：！？,.;:!?“”\"'（）()?]{{0,3}})")
_HAS_TONE = re.compile(f"[{_TONED}]")


@lru_cache(maxsize=1)
def _chars_by_pinyin() -> dict[str, list[str]]:
    from pypinyin import Style, lazy_pinyin  # noqa: F401  (import checks the package)
    from pypinyin.pinyin_dict import pinyin_dict

    table: dict[str, list[str]] = {}
    for cp, readings in pinyin_dict.items():
        for reading in readings.split(","):
            table.setdefault(reading, []).append(chr(cp))
    return table


def _restore_lost_char(prev: str, nxt: str, reading: str) -> str:
    """The character with this pinyin that forms a dictionary word with its neighbour, or ''."""
    freq = _tokenizer().FREQ
    best, best_f = "", 50  # a rare "word" is more likely a wrong guess than a restoration
    for cand in _chars_by_pinyin().get(reading, ()):
        for word in (prev + cand if prev else "", cand + nxt if nxt else ""):
            f = freq.get(to_simplified(word), 0) if len(word) == 2 else 0
            if f > best_f:
                best, best_f = cand, f
    if best:
        # keep the script of the surrounding text
        if is_traditional(prev + nxt):
            best = to_traditional(best)
        return best
    return ""


def strip_pinyin_noise(text: str) -> str:
    """Remove pinyin annotations such as ``長(zhǎng)江`` → ``長江``.

    Only acts when the text shows the pattern repeatedly (at least three toned
    syllables), so a lone ``(abc)`` in ordinary text is left alone. Characters
    lost in transcoding (``日?(bào)``) are restored from their pinyin when that
    gives a dictionary word with a neighbour, otherwise dropped with the debris
    that follows them.
    """
    hits = [m for m in _PINYIN_AFTER_HAN.finditer(text) if _HAS_TONE.search(m.group(1))]
    lost = list(_LOST_CHAR.finditer(text))
    if len(hits) + len(lost) < 3:
        return text

    # lost characters first (left to right, so a restored one is the next one's neighbour);
    # their annotation must not be stripped before we read it
    text = _PINYIN_AFTER_HAN.sub("", text)
    out: list[str] = []
    pos = 0
    for m in _LOST_CHAR.finditer(text):
        out.append(text[pos : m.start()])
        prev = out[-1][-1:] if out and out[-1] else ("".join(out)[-1:])
        nxt = text[m.end() : m.end() + 1]
        out.append(_restore_lost_char(prev, "" if nxt == "?" else nxt, m.group(1)))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# --- sentences ---------------------------------------------------------------------------------
_SENT_END = re.compile(r"(?:[。！？!?；;]+|…+|\.{3,})[”’」』\"'）)]*|\n+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans ``(start, end)`` covering ``text`` end to end.

    Boundaries: 。！？；!?; and ellipses, with any closing quotes or brackets kept
    with the sentence they close, and line breaks.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end()
        if end > start:
            spans.append((start, end))
        start = end
    if start < len(text):
        spans.append((start, len(text)))
    return spans
