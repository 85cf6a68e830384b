"""The library's error messages in Chinese, for the Chinese chat page (the REST API keeps English).

Each message the upload tab and the chat can show is matched by a pattern of its English wording and rewritten;
a file's problem ``name.jsonl:2: reason`` becomes ``name.jsonl 第 2 行：原因``. A message no pattern
knows is shown as it is (tests/test_app.py uploads one file per known problem and checks the words).
"""
from __future__ import annotations

import re

from ...errors import QueryError

__all__ = ["zh_error", "zh_message"]

_MAKE_SHORTER = "只保留 title、date、source、url 等字段"
_SIMPLIFY = "为保证解析速度设有此上限：请简化标记，或把正文另存为 .txt"

# a whole message (upload limits, file names, access, index state), first match wins
_MESSAGES: list[tuple[str, str]] = [
    (r"file name (?P<n>.+) is not usable: .*", "文件名 {n} 不可用：请给文件起个名字，例如 article.txt"),
    (r"file name (?P<n>.+) contains the control or invisible character (?P<c>U\+[0-9A-F]+): rename the file",
     "文件名 {n} 含有控制字符或不可见字符 {c}：请重命名文件"),
    (r"file name (?P<n>.+) has a folder part: .*", "文件名 {n} 含有文件夹部分：请用 article.txt 这样的简单文件名上传"),
    (r"file name (?P<n>.+) contains a character that looks like a slash: rename the file",
     "文件名 {n} 含有形似斜杠的字符：请重命名文件"),
    (r"file name (?P<n>.+) starts with a dot \(hidden file\): rename the file", "文件名 {n} 以点开头（隐藏文件）：请重命名文件"),
    (r"file name (?P<n>.+) is (?P<b>\d+) bytes long; the limit is (?P<lim>\d+): shorten it",
     "文件名 {n} 长 {b} 字节，上限 {lim} 字节：请缩短"),
    (r"no files: .*", "没有文件：请选择一个或多个文件"),
    (r"(?P<n>\d+) files in one upload; the limit is (?P<lim>\d+): upload them in parts",
     "一次上传了 {n} 个文件，上限 {lim} 个：请分批上传"),
    (r"changing the articles needs the admin token: .*",
     "修改文章需要管理口令：请在“管理口令”一栏填写 RAG_ADMIN_TOKEN 的值"),
    (r"read-only through a proxy: .*",
     "本服务为只读（经代理访问时）：请求带有 Forwarded/X-Forwarded-For 头而服务没有设置管理口令；设置 RAG_ADMIN_TOKEN 并重启后才能上传"),
    (r"read-only: .*", "本服务为只读：它不只监听本机地址，又没有设置管理口令；设置 RAG_ADMIN_TOKEN 并重启后才能上传"),
    (r"index at (?P<p>.+) is being written by another process; .*", "索引 {p} 正由另一个进程写入：请等它完成后重试"),
    (r"index (?P<p>.+) is still loading; retry in a few seconds", "索引 {p} 仍在加载：请几秒后重试"),
    (r"the app is shutting down: .*", "服务正在关闭，没有做任何修改：请在它重新启动后重试"),
    # the chat's filters
    (r"date_from: must be an ISO date like .* \(got (?P<got>.*)\)", "起始日期 {got} 应写作 2021-12-03（或 2021、2021-12）"),
    (r"date_to: must be an ISO date like .* \(got (?P<got>.*)\)", "结束日期 {got} 应写作 2021-12-03（或 2021、2021-12）"),
    (r"date_from \((?P<a>.*)\) is after date_to \((?P<b>.*)\)", "起始日期（{a}）晚于结束日期（{b}）"),
]

# what is wrong with one file (after "name: " or "name:line: ")
_REASONS: list[tuple[str, str]] = [
    (r"empty file: nothing to index", "空文件，没有可索引的内容"),
    (r"no article in it", "文件里没有文章"),
    (r"binary file \(contains NUL bytes\): .*", "二进制文件（含 NUL 字节）：应为 UTF-8、GB18030 或 Big5 编码的文本"),
    (r"cannot decode the text: it is not UTF-8, GB18030 or Big5", "无法解码：文本不是 UTF-8、GB18030 或 Big5 编码"),
    (r"cannot decode the text: it reads as (?P<enc>\S+) at first but not at byte (?P<at>\d+); .*",
     "无法解码：开头按 {enc} 可读，第 {at} 字节起不行；请另存为 UTF-8"),
    (r"no article text found .*", "没有找到正文（文件里只有标记、元数据或页面装饰）"),
    (r"line is (?P<mb>\d+) MB; the limit is (?P<lim>\d+) MB per line .*", "这一行有 {mb} MB，每行（一篇文章）上限 {lim} MB：已跳过此行"),
    (r"malformed JSON \((?P<msg>.*) at column (?P<col>\d+)\); line skipped", "JSON 格式错误（第 {col} 列）；已跳过此行"),
    (r"JSON nested too deep; line skipped", "JSON 嵌套过深；已跳过此行"),
    (r"expected a JSON object with 'id' and 'text'; line skipped", "应为含 id 和 text 字段的 JSON 对象；已跳过此行"),
    (r"field 'id' is missing or empty; line skipped", "缺少 id 字段或 id 为空；已跳过此行"),
    (r"field 'text' is missing or empty for id (?P<id>.+); line skipped", "id 为 {id} 的文章缺少 text 字段或正文为空；已跳过此行"),
    (r"duplicate article id (?P<id>.+) \(already read from (?P<f>.+)\); skipped", "文章 id {id} 重复（已从 {f} 读到）；已跳过"),
    (r"duplicate article id (?P<id>.+); the first one is kept", "文章 id {id} 重复；保留第一篇"),
    (r"cannot read the file: (?P<why>.+)", "无法读取文件（{why}）"),
    (r"unsupported file type (?P<s>\S+); upload (?P<list>.+) files", "不支持的文件类型 {s}：请上传 {list} 文件"),
    (r"unsupported file type (?P<s>\S+): expected one of (?P<list>.+)", "不支持的文件类型 {s}：请上传 {list} 文件"),
    (r"file is (?P<n>[\d.]+) (?P<u>MB|GB); the limit is (?P<lim>\d+) (?:MB|GB) per .*",
     "文件大小 {n} {u}，每个文件上限 {lim} {u}：请拆分成几个文件再上传"),
    (r"the upload holds two files of this name; send one", "这次上传里有两个同名文件：请只上传一个"),
    (r"no articles: every line is empty", "没有文章：每一行都是空的"),
    (r"not HTML: no tags found; .* instead of (?P<s>\S+)", "不是 HTML：没有找到标签；纯文本请存为 .txt，而不是 {s}"),
    (r"YAML front matter longer than (?P<kb>\d+) KB; .*", "YAML 前置元数据超过 {kb} KB 上限：" + _MAKE_SHORTER),
    (r"invalid YAML front matter: .*aliases \(\*name\) are not allowed.*", "YAML 前置元数据无效：不允许使用别名（*别名）"),
    (r"invalid YAML front matter: .*?line (?P<line>\d+), column (?P<col>\d+).*",
     "YAML 前置元数据无效（第 {line} 行第 {col} 列）：" + _MAKE_SHORTER),
    (r"invalid YAML front matter: .*", "YAML 前置元数据无效：" + _MAKE_SHORTER),
    (r"YAML front matter nested too deep: .*", "YAML 前置元数据嵌套过深：" + _MAKE_SHORTER),
    (r"YAML front matter must be a mapping of fields .*", "YAML 前置元数据应为字段与值（title、date 等）"),
    (r"HTML tag <(?P<t>.*)> has more than (?P<n>\d+) attributes; .*", "HTML 标签 <{t}> 的属性超过 {n} 个；" + _SIMPLIFY),
    (r"HTML with more than (?P<n>\d+) distinct tag and attribute names; .*", "HTML 中不同的标签名和属性名超过 {n} 个；" + _SIMPLIFY),
    (r"HTML with more than (?P<n>[\d,]+) tags; .*", "HTML 标签超过 {n} 个（每个文件的上限）：请拆分成几个文件"),
    (r"HTML nested more than (?P<n>\d+) elements deep \(at <(?P<t>.*)>\); .*",
     "HTML 元素嵌套超过 {n} 层（在 <{t}> 处）；" + _SIMPLIFY),
    (r"no such file in the data folder (?P<d>.+)", "数据文件夹 {d} 里没有这个文件"),
]
_MESSAGE_PATTERNS = [(re.compile(p, re.DOTALL), t) for p, t in _MESSAGES]
_REASON_PATTERNS = [(re.compile(p, re.DOTALL), t) for p, t in _REASONS]
_AT_LINE = re.compile(r"(?P<path>.+):(?P<line>\d+)")


def _rewritten(text: str, patterns) -> str | None:
    for pattern, template in patterns:
        m = pattern.fullmatch(text)
        if m:
            return template.format(**m.groupdict())
    return None


def zh_message(message: str) -> str:
    """One English error message in Chinese: ``a.jsonl:2: field 'id' is missing or empty; line skipped``
    → ``a.jsonl 第 2 行：缺少 id 字段或 id 为空；已跳过此行``; unknown wording as it is."""
    message = message.removesuffix(" (nothing was saved)")
    whole = _rewritten(message, _MESSAGE_PATTERNS)
    if whole is not None:
        return whole
    at = message.find(": ")
    while at > 0:  # the file's name may itself hold ": ", so try each split
        reason = _rewritten(message[at + 2:], _REASON_PATTERNS)
        if reason is not None:
            where = message[:at]
            m = _AT_LINE.fullmatch(where)
            return f"{m['path']} 第 {m['line']} 行：{reason}" if m else f"{where}：{reason}"
        at = message.find(": ", at + 2)
    return message


def zh_error(error: BaseException) -> str:
    """An error from a refused change in Chinese; a refused upload names each file's problems."""
    problems = getattr(error, "problems", ()) if isinstance(error, QueryError) else ()
    if problems:
        return "；".join(zh_message(str(p)) for p in problems)
    return zh_message(str(error))
