"""Follow-up questions: an elliptical or referring question rewritten into a standalone one.

Rules, against the previous user turn (itself made standalone first); anything else is left as it is:
1. ``那X呢``: X replaces its parallel: a word ending alike (二期 → 一期, 2022年 → 2023年, 江岸区 → 江夏区), the
   phrase after the same preposition (在宜昌 → 在武汉), a proper noun, else the attribute asked for (营收 → 总投资).
2. 它们/这些/该/其/他/她…: the pronoun (or demonstrative + noun) becomes the previous question's topic: what it
   asked for ("江岸签约了哪些项目" → 江岸签约的项目), else its subject; 该区 → the phrase there ending in 区.
3. Elided subject: a question opening with a verb, preposition, 有/是 or question word (目前有多少家成员单位),
   or a short one about a bare common noun (总投资多少), gets the previous subject prepended.
Only user turns are read: the previous question describes an answer's list ("江岸签约的项目") better for
retrieval than the list, and stays right when the answer was wrong or a refusal. The question's script is kept.
"""
from __future__ import annotations

import logging
import re
from typing import NamedTuple

from ..errors import LLMError
from ..text import is_traditional, pos_tag, to_simplified, to_traditional

__all__ = ["rewrite", "rewrite_with_llm", "REWRITE_PROMPT"]

log = logging.getLogger(__name__)

_END = re.compile(r"[\s？?！!。.，,]+$")
_PARALLEL = re.compile(r"^(?:那么?|还有|另外|而)?[，,\s]*(?P<x>[^，,？?]{1,20}?)(?:又|的情况|的)?呢$")
_QWORD = re.compile(r"什么时候|哪一年|哪年|哪天|哪里|哪儿|哪些|哪几|哪个|哪家|哪位|哪|多少|几|谁|何时|什么|怎么样|怎样|怎么|如何|是否|为什么|为何")
_LIST_QWORD = {"哪些", "哪几", "哪个", "哪家", "哪位", "几", "多少"}
_CLASSIFIER = re.compile(r"^[个家项所位名座条批种类只台件次]")
_PRONOUNS = {"它们", "它", "他们", "她们", "他", "她", "其", "其中", "这些", "那些", "上述"}
_DEMONSTRATIVES = ("这些", "那些", "这个", "那个", "这家", "那家", "这位", "那位", "这项", "上述", "此次", "这次", "该", "此", "这")
_PROPER = ("nr", "ns", "nt", "nz", "s", "eng")
_ADVERBIAL = {"同比", "环比", "累计", "全面", "共", "总共", "一共", "已经", "目前", "现在", "如今"}
_NOT_DEM = {"这样", "这么", "这里", "那里", "那样", "那么", "这儿", "那儿", "此外", "因此", "这时", "此时", "那时"}
_CONNECTIVE = re.compile(r"^(?:那么|那(?![些个家位里样儿时边])|另外|而)[，,\s]*")
_SKIP_START = {"那", "那么", "另外", "还有", "此外", "请问", "而", "《", "》"}
_AMOUNT = re.compile(r"投资|营收|收入|产值|规模|金额|面积|数量|人数|产量|占比|比例|增长|利润|税收|成本|资金|总额|成员|多少")
_PERSON = re.compile(r"[长者人]$|主任|书记|代表|经理|教授|董事")
_TIME = re.compile(r"时间|日期|时候")


def _nounish(word: str, flag: str) -> bool:
    """A word that can sit inside a noun phrase (nouns, names, numbers, measure and time words)."""
    if word in _ADVERBIAL or word in ("的", "上", "下") or _QWORD.match(word):
        return False
    return flag[:1] in ("n", "m", "q", "t", "j", "b", "s") or flag in ("vn", "an", "eng", "f")


def _proper(words: list[tuple[str, str]]) -> bool:
    return any(f.startswith(_PROPER) or w in ("《", "》") for w, f in words)


def _lead(words: list[tuple[str, str]], ok=_nounish) -> int:  # how many words at the start pass ok
    return next((n for n, w in enumerate(words) if not ok(*w)), len(words))


def _join(words: list[tuple[str, str]]) -> str:
    return "".join(w for w, _ in words)


class _Frame(NamedTuple):
    """A question's ``topic`` (for pronouns), ``entity`` (elided subject), ``attr`` (营收 in …的营收是多少)."""
    text: str
    topic: str
    entity: str
    attr: str = ""


def _strip_tail(words: list[tuple[str, str]]) -> list[tuple[str, str]]:  # 江岸签约了 → 江岸签约
    return words[: len(words) - _lead(words[::-1], lambda w, f: w in ("了", "有", "是", "在", "为", "共", "一共", "总共"))]


def _frame(text: str) -> _Frame | None:
    """The topic of a standalone (Simplified) question, or None when it has no question word."""
    if not (m := _QWORD.search(text)):
        return None
    pre, qword, post = text[: m.start()], m.group(0), text[m.end():]
    if qword in _LIST_QWORD:  # 江岸签约了哪些项目 / 点军区集中开工了几个生态环保项目 → the things asked for
        rest = _CLASSIFIER.sub("", post, count=1) if qword in ("几", "多少", "哪") else post
        words = pos_tag(rest)
        n = _lead(words)
        noun, after = _join(words[:n]), _join(_strip_tail(words[n:]))
        if noun and not after.startswith("的"):
            subj = _join(_strip_tail(pos_tag(pre)))
            # 哪些单位与…签订了协议 → 与…签订了协议的单位; 华东师范大学的哪位教授… → …的华东师范大学的教授
            topic = (f"{after}的" if after else "") + subj + noun if not subj or subj.endswith("的") else f"{subj}{after}的{noun}"
            return _Frame(text, topic, topic)
    # the subject: a leading noun phrase (的 links allowed) or a relative clause ending in a noun
    words = _strip_tail(pos_tag(pre))
    n = _lead(words, lambda w, f: _nounish(w, f) or w in ("的", "、"))
    last_de = max((i for i, (w, _) in enumerate(words) if w == "的"), default=-1)
    if last_de >= 0 and last_de < len(words) - 1 and all(_nounish(*w) for w in words[last_de + 1 :]):
        n = max(n, len(words))
    while n and words[n - 1][0] in ("的", "、"):
        n -= 1
    if not n:
        return None
    subject = words[:n]
    des = [i for i, (w, _) in enumerate(subject) if w == "的"]
    if not des or not _nounish(*subject[0]):
        return _Frame(text, _join(subject), _join(subject))
    head = subject[: _lead(subject)]  # 三峡集团(每年用于…的投资), 江岸区生态环保产业2022年(的营收)
    while len(head) > 1 and head[-1][1][:1] in ("m", "t", "q"):  # 江岸区生态环保产业2022年 → …产业
        head = head[:-1]
    return _Frame(text, _join(subject), _join(head), _join(subject[des[-1] + 1 :]))


def _parallel(x: str, frame: _Frame) -> str:
    """``那X呢``: X substituted for its parallel in the previous question."""
    prev = frame.text
    if x in prev:
        return prev
    xw = pos_tag(x)
    core = _join(w for w in xw if w[1] != "p") or x
    spans, pos = [], 0
    for w, f in pos_tag(prev):  # (start, end, word, flag)
        spans.append((pos, pos + len(w), w, f))
        pos += len(w)
    best = None
    for k in range(len(core), 0, -1):  # 1. a word ending like X: 二期(工程) → 一期, 江岸区 → 江夏区, 2022年 → 2023年
        for m in re.finditer(re.escape(core[-k:]), prev):
            i = next((n for n, s in enumerate(spans) if s[0] <= m.start() < s[1]), 0)
            if spans[i][3] == "vn" or spans[i][3][:1] in ("v", "p", "u", "r", "c", "y", "x"):
                continue
            while i and (spans[i][3][:1] in ("m", "q") and spans[i - 1][3] == "m"  # 2022 年 → 2022年
                         or len(prev[spans[i][0] : m.end()]) < len(core) and _nounish(*spans[i - 1][2:]) and not _proper([spans[i - 1][2:]])):
                i -= 1  # 高端车型 → 新能源车型
            if prev[spans[i][0] : m.end()] != core:
                best = (spans[i][0], m.end())
                break
        if best:
            break
    if best is None and xw[0][1] == "p" and (j := next((n for n, s in enumerate(spans) if s[2] == xw[0][0]), -1)) >= 0:
        if run := _lead([s[2:] for s in spans[j + 1 :]]):  # 2. after the same preposition: 在深圳宝安区 → 在东莞
            best, core = (spans[j + 1][0], spans[j + run][1]), _join(xw[1:])
    if best is None and _proper(xw):  # 2. a proper noun: of the same kind (宜昌 → 武汉), else the first one
        kinds = {f for _, f in xw if f.startswith(_PROPER)}
        same = [s for s in spans if s[3] in kinds] or [s for s in spans if s[3].startswith(_PROPER)][:1]
        best = same[-1] if same else None
    if best is not None:
        return prev[: best[0]] + core + prev[best[1] :]
    if frame.attr and frame.attr in prev:  # 3. the attribute asked for: 营收 → 总投资
        return core.join(prev.rsplit(frame.attr, 1))
    ask = "是什么时候" if _TIME.search(core) else "是谁" if _PERSON.search(core) else "是多少" if _AMOUNT.search(core) else "是什么"
    return f"{frame.entity}的{core}{ask}"


def _resolve_reference(q: str, frame: _Frame) -> str | None:
    """它们/这些项目/该区/其…: the first pronoun or demonstrative replaced by what it points to."""
    words, pos = pos_tag(q), 0
    for i, (w, f) in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ("", "x")
        dem = next((d for d in _DEMONSTRATIVES if w.startswith(d)), "") if f.startswith("r") and w not in _NOT_DEM else ""
        if dem and (dem != "这" or _nounish(*nxt) or w != dem):  # 该区 is one jieba word: 该 + 区
            run = ([w[len(dem) :]] if w != dem else []) + [x for x, _ in words[i + 1 : i + 1 + _lead(words[i + 1 :])]]
            for k in range(len(run), 0, -1):  # 这些项目计划总投资 → try 项目计划总投资 … 项目
                if target := _noun_in(noun := "".join(run[:k]), frame):
                    return q[:pos] + target + q[pos + len(dem) + len(noun) :]
            if run:  # 该项目 after 宝钢黄石新港二期… → 宝钢黄石新港二期; 这些企业 → 江岸签约的项目的企业
                return q[:pos] + frame.topic + ("的" + q[pos + len(dem) :] if dem in _PRONOUNS else q[pos + len(dem) + len(run[0]) :])
        if (w in _PRONOUNS or w in ("这", "那") and nxt[0] == "是") and f.startswith("r"):  # 这是… → <topic>是…
            glue = "中" if w == "其中" else "的" if w == "其" and _nounish(*nxt) else ""  # 其中 → …中, 其总投资 → …的总投资
            return q[:pos] + frame.topic + glue + q[pos + len(w) :]
        pos += len(w)
    return None


def _noun_in(noun: str, frame: _Frame) -> str:
    """The phrase of the previous question that ``这些/该 + noun`` points to, or ''."""
    if frame.topic.endswith(noun):
        return frame.topic
    if 0 < (i := frame.text.find(noun)) < (_QWORD.search(frame.text) or re.search("$", frame.text)).start():
        return frame.text[: i + len(noun)]  # 宜昌2019年推进的磷石膏建材应用项目(累计消耗了多少…)
    run = ""
    for w, f in pos_tag(frame.text):
        run = run + w if _nounish(w, f) else ""
        if run.endswith(noun) and len(run) > len(noun):
            return run
    return ""


def _complete_subject(q: str, frame: _Frame) -> str | None:
    """目前有多少家成员单位 → <entity>目前有多少家成员单位; None when the question has its own subject."""
    words, i = pos_tag(q), 0
    while i < len(words):  # skip 那/目前/今年/2022年的… to the first word that could be a subject
        w, f = words[i]
        date = f == "m" and i + 1 < len(words) and words[i + 1][0] in ("年", "月")
        if not (w in _SKIP_START or w in _ADVERBIAL or f[:1] in ("t", "d", "c") or date or i and w in ("年", "月", "的")):
            break
        i += 1
    skipped = any(f[:1] in ("t", "m") or w in _ADVERBIAL for w, f in words[:i])
    if i >= len(words):
        return None
    w, f = words[i]
    if w in ("哪些", "哪个", "哪家", "哪位", "谁") or _proper(words[i:i + 1]):
        return None
    rest = _join(words[i:])
    if f.startswith("v") and f != "vn":
        own = _frame(rest)
        if own and "的" in own.topic and _proper(pos_tag(own.topic)):
            return None  # a relative-clause subject: 参加长江经济带座谈会的企业代表有多少家
    if _nounish(w, f):
        run = words[i : i + _lead(words[i:])]
        if _proper(run) or len(_join(run)) > 4 or len(rest) > 10:
            return None
        return frame.entity + ("" if skipped else "的") + q
    if f.startswith(("v", "p", "m", "d")) or w in ("有", "是") or _QWORD.match(w):
        return frame.entity + q
    return None


def _rewrite_one(q: str, prev: str) -> tuple[str, str]:
    """(standalone question, rule used) for Simplified ``q`` after the standalone Simplified ``prev``."""
    if (frame := _frame(_END.sub("", prev))) is None:
        return q, "no-topic"
    body, tail = _END.sub("", q), q[len(_END.sub("", q)) :].strip() or "？"
    m = _PARALLEL.match(body)
    if m and not _QWORD.search(m.group("x")) and not any(p in m.group("x") for p in (*_PRONOUNS, *_DEMONSTRATIVES)):
        out = _parallel(m.group("x"), frame)
        return out + ("" if _END.search(out) else tail), "parallel"
    body = _CONNECTIVE.sub("", body)  # 那么它们的… → 它们的…
    for rule, step in (("reference", _resolve_reference), ("subject", _complete_subject)):
        if out := step(body, frame):
            return out + tail, rule
    return q, "standalone"


def _user_turns(history: list[dict] | None) -> list[str]:  # the last four non-empty user turns
    turns = [t.get("content") for t in (history or []) if isinstance(t, dict) and t.get("role") == "user"]
    return [t.strip() for t in turns if isinstance(t, str) and t.strip()][-4:]


def rewrite(question: str, history: list[dict]) -> str:
    """The standalone form of ``question`` given the conversation ``history`` (oldest first).

    >>> rewrite("那一期呢？", [{"role": "user", "content": "宝钢黄石新港二期什么时候开工？"}])
    '宝钢黄石新港一期什么时候开工？'
    """
    turns = _user_turns(history)
    if not question or not question.strip() or not turns:
        return question
    prev = to_simplified(turns[0])
    for turn in turns[1:]:  # earlier follow-ups are made standalone first: 二期 → 那一期呢 → 那三期呢
        prev = _rewrite_one(to_simplified(turn), prev)[0]
    q = to_simplified(question.strip())
    out, rule = _rewrite_one(q, prev)
    if out == q:
        return question
    if _wants_traditional(question, turns):
        out = to_traditional(out, like=[question, *turns])
    log.debug("follow-up %r → %r (%s)", question, out, rule)
    return out


def _wants_traditional(question: str, turns: list[str]) -> bool:  # or neutral (那一期呢) after a Traditional turn
    return is_traditional(question) or (is_traditional(turns[-1]) and to_traditional(question) == question)


REWRITE_PROMPT = (
    "把对话里的最后一个问题改写成一个不看对话也能看懂的完整问题：补全省略的主语，把代词（它们、这些、该、其、他、她）"
    "换成所指的事物，“那X呢”换成完整的问题。与前面无关或本身已完整的问题原样输出。"
    "只输出改写后的一个问题，不要回答，不要解释，用与最后一个问题相同的简体或繁体书写。"
)
_LABEL = re.compile(r"^(?:改写后的问题|改寫後的問題|完整问题|完整問題|问题|問題)[:：]\s*")
_QUOTES = "\"'“”‘’「」『』"


def _valid(reply: str, question: str, turns: list[str]) -> str:
    """The reply as a question, or '' when it is empty, several lines, too long, an answer or in the wrong script."""
    text = _LABEL.sub("", reply.strip()).strip(_QUOTES + " ")
    if not text or "\n" in text or re.search(r"\[\d+\]", text) or len(text) > 2 * (len(question) + len(turns[-1])) + 20:
        return ""  # nothing, several lines, an answer citing sources, or absurdly long
    if not (_QWORD.search(to_simplified(text)) or re.search(r"[？?吗呢]$", text)):
        return ""  # not a question
    trad = _wants_traditional(question, turns)
    wrong_script = is_traditional(text) if not trad else not is_traditional(text) and to_traditional(text) != text
    return "" if wrong_script else text


def rewrite_with_llm(question: str, history: list[dict], model) -> str:
    """Like :func:`rewrite`, asking the chat ``model`` (a :class:`rag.answering.llm.ChatModel`) in one short prompt;
    falls back to the rules when the model fails (LLMError) or its reply is unusable."""
    turns = _user_turns(history)
    if model is None or not turns or not (question or "").strip():
        return rewrite(question, history)  # no model, or nothing to rewrite
    lines = "".join(f"用户：{t}\n" for t in turns)
    prompt = f"对话：\n{lines}最后一个问题：{question.strip()}"
    try:
        reply = "".join(model.stream([{"role": "system", "content": REWRITE_PROMPT}, {"role": "user", "content": prompt}]))
    except LLMError as e:
        log.warning("follow-up rewrite by the language model failed (%s); using the rules", e)
        return rewrite(question, history)
    text = _valid(reply, question.strip(), turns)
    if not text or (text == question.strip() and rewrite(question, history) != question):  # or an echo
        log.warning("language model's rewrite %r is unusable; using the rules", reply[:80])
        return rewrite(question, history)
    log.debug("follow-up %r → %r (language model)", question, text)
    return text
