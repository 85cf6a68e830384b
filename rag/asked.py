"""What a question asks for, read once: the kind of answer, its counting unit, the kind of thing
listed and how many, and the attribute asked about ("总投资" of "…二期总投资是多少？").

``Query.asked`` holds it. Sentence selection weighs sentences holding the asked kind of thing, the
reader's rules keep the answer to the asked unit, kind and attribute, and the assistant says plainly
when the articles never mention the attribute asked about.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .text import normalize, pos_tag

__all__ = ["Asked", "asked_of", "QUESTION_WORDS"]

# The question words of each kind, most specific first: the reader's features read the first kind
# that matches (its trained trees depend on this table: change it only with a retrained reader).
QUESTION_WORDS: list[tuple[str, str]] = [
    ("time", r"什么时候|什么时间|哪一年|哪年|哪一天|哪天|何时|几月|几号|几日|哪个月|哪个年代|哪个朝代|什么年代|什么朝代|哪一时期|"
             r"哪个时期|什么时期|多少年|几年|哪个世纪|几世纪|哪一个世纪|何年|哪一日"),
    ("reason", r"为什么|为何|什么原因|何故|原因是"),
    ("person", r"哪位|哪一位|哪个人|什么人|谁"),
    ("place", r"哪里|在哪|何处|何地|哪个地方|什么地方|哪个国家|哪国|哪个城市|哪座城市|哪座|哪个省|哪个州|哪一国|哪儿"),
    ("number", r"多少|多大|多高|多长|多远|多重|多深|多宽|多久|第几|百分之几|几(?:[个名位家项次条座种届所部本只天岁倍人]|十|百|千|万|亿)?"),
    ("list", r"哪些"),
    ("how", r"如何|怎样|怎么|怎么样|什么样|何种方式"),
    ("thing", r"什么|哪一[个种类部首条家所]?|哪[个种类部首条家所两三四五几]?[个种类部首条家所]?|何"),
    ("yesno", r"是否|是不是|有没有|吗"),
]
_KIND_RE = [(k, re.compile(p)) for k, p in QUESTION_WORDS]

# what sentence selection looks for (broader than the kinds: "规模", "日期" ask for a number, a time)
_NUMBER_Q = re.compile(r"(多少|几[个家项所次年名位亿万]?|多大|多高|多长|多远|多久|百分之|比例|占比|增长了|规模)")
_TIME_Q = re.compile(r"(哪一年|哪年|什么时候|何时|哪天|几月|几号|日期|时间)")
_PLACE_Q = re.compile(r"(哪里|在哪|何处|哪个地方|什么地方|哪国|哪个国家|位置|位于|地址|哪个城市|哪座城市)")
_DEFINITION_Q = re.compile(r"(是什么|是谁|什么人|职业|身份|哪国人|哪里人|什么样的)")
_EVENT_Q = re.compile(r"(什么会|哪个会|哪次会|什么活动|什么场合|哪个论坛|什么仪式)")
# "哪些项目" asks for a list of 项目
_WHICH_KIND = re.compile(r"哪些([\u4e00-\u9fff]{2})")
# "多少家", "几个": the counting word the answer's number comes with
_ASKED_UNIT = re.compile(r"(?:多少|(?<!哪)几)([个名位家项次条座种届所部本只件台辆户元亿万千百吨米人])")
# "哪三个方面", "哪四条建议": how many things are listed
_NUMERALS = {"两": 2, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_WHICH_COUNT = re.compile(r"哪([两二三四五六七八九十]|\d+)[个项条点种类家所位名大]?")
_QUOTED = re.compile(r"[「『“\"《]([^」』”\"》]{2,30})[」』”\"》]")
# "X是多少", "X为多少", "X有多少", "X是什么时候", "X是谁": the attribute X is the word before them
_ATTRIBUTE_Q = re.compile(r"(?:是|为|达|约)?(?:多少|多大|多高|多长|多久|什么时候|何时|哪一年|哪年|哪天|谁)")
# attributes too general to be missing from an answer ("时间是多少", "数量是多少")
_UNIT_CHARS = 3  # "总投资是多少亿元": what may follow the question word when it asks of an attribute
_GENERAL = frozenset("时间 日期 数量 数字 人数 比例 多少 情况 内容 名称 名字 总数 规模 程度 结果".split()
                     # and words before a number that say how it is reached, not what it measures
                     + "预计 预期 达到 超过 需要 大约 约为 可以 可能 将会 共计 累计 总计 一共 大概".split())
# words that cannot be an attribute: numbers, pronouns, times, measure words, particles…
_NOT_ATTRIBUTE_POS = ("m", "r", "t", "q", "u", "p", "c", "d", "f", "x", "y", "e", "o")
_PREFIXES = frozenset("总净年月日全")  # "总投资", "净利润", "年产值": one word with the noun


@dataclass(frozen=True)
class Asked:
    """What a question asks for.

    ``kind``: the first of ``QUESTION_WORDS`` the question uses ("none" when it uses none).
    ``number``, ``time``, ``place``, ``event``, ``definition``: whether a sentence holding that kind
    of thing may answer it. ``unit``: the counting word of "多少家" ("家"); ``item``: the thing
    "哪些项目" lists ("项目"); ``count``: how many "哪三个方面" lists (3); ``attribute``: the word
    asked about, "总投资" in "…二期总投资是多少？" (empty when the question asks for no attribute
    of its subject, or for a general one like "时间"). ``names``: what the question quotes
    (「三村工程」, “汉光39号”, 《…》): the answer is about that, by that name.

    Example::

        Query.of("宝钢黄石新港二期总投资是多少？").asked
        # Asked(kind='number', number=True, ..., attribute='总投资')
    """

    kind: str = "none"
    number: bool = False
    time: bool = False
    place: bool = False
    event: bool = False
    definition: bool = False
    unit: str = ""
    item: str = ""
    count: int = 0
    attribute: str = ""
    names: tuple[str, ...] = ()


def asked_of(text: str) -> Asked:
    """The analysis of a question's text (``Query.asked`` caches it)."""
    qn = normalize(text)
    kind = next((k for k, pattern in _KIND_RE if pattern.search(qn)), "none")
    unit = _ASKED_UNIT.search(qn)
    item = _WHICH_KIND.search(qn)
    count = _WHICH_COUNT.search(qn)
    n = 0
    if count:
        n = int(count.group(1)) if count.group(1).isdigit() else _NUMERALS[count.group(1)]
    return Asked(
        kind=kind, number=bool(_NUMBER_Q.search(qn)), time=bool(_TIME_Q.search(qn)),
        place=bool(_PLACE_Q.search(qn)), event=bool(_EVENT_Q.search(qn)),
        definition=bool(_DEFINITION_Q.search(qn)), unit=unit.group(1) if unit else "",
        item=item.group(1) if item else "", count=n if n >= 2 else 0, attribute=_attribute(qn),
        names=tuple(dict.fromkeys(m.group(1).strip() for m in _QUOTED.finditer(qn) if m.group(1).strip())),
    )


def _attribute(qn: str) -> str:
    """The noun right before "是多少" / "是什么时候" / "是谁": what the question asks of its subject."""
    m = _ATTRIBUTE_Q.search(qn)
    if not m or m.start() == 0 or qn[m.start() - 1] in "有共在":  # "有多少名运动员": the count's noun follows
        return ""
    rest = qn[m.end():].strip(" ？?。!！的")
    if len(rest) > (_UNIT_CHARS if "多" in m.group() else 0):  # "…联盟是哪一年成立的": 联盟 is what acted
        return ""
    words = pos_tag(qn[:m.start()].rstrip("的之"))
    if not words:
        return ""
    word, tag = words[-1]
    if not _nominal(word, tag) or word in _GENERAL:
        return ""
    if len(words) > 1 and words[-2][0] in _PREFIXES:
        word = words[-2][0] + word
    elif len(words) > 1 and _nominal(*words[-2]) and words[-2][1].startswith(("n", "vn")):
        word = words[-2][0] + word  # "投资金额": the article may say either word
    return word


def _nominal(word: str, tag: str) -> bool:
    """A word that can name an attribute: two or more characters, Chinese, not a verb ("达到",
    "预计"), number, pronoun, time or particle."""
    return (len(word) >= 2 and tag != "v" and not tag.startswith(_NOT_ATTRIBUTE_POS)
            and bool(re.search(r"[\u4e00-\u9fff]", word)))
