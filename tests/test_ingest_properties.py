"""Property-based ingestion (hypothesis): whatever bytes a file holds, it yields articles or is
reported by name, never a crash, and the articles already there are never lost."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import rag
from rag.serving.service import Service
from rag.reading.sources import SUPPORTED_SUFFIXES, read_articles, read_bytes, read_file

from conftest import TEST_DATA

BOUNDED = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                         HealthCheck.function_scoped_fixture])
SIMP = "九江市完成长江岸线整治建成沿江绿道公里岸线绿化率达到成为市民休闲的好去处武汉新区首批项目签约宜昌复绿工程完工"
TRAD = "臺北市政府今日宣布淡水河沿岸將新建自行車道十二公里工程預計明年完工總經費約三億元長江經濟帶發展戰略座談會"
PUNCT = "，。！？：；“”（）、\n 0123456789abcXYZ"
TAGS = ["div", "p", "span", "article", "section", "blockquote", "li", "ul", "td", "table", "h1", "h2", "b", "i", "a"]

suffixes = st.sampled_from(SUPPORTED_SUFFIXES)
chinese = st.text(alphabet=SIMP + TRAD + PUNCT, min_size=0, max_size=400)


@st.composite
def truncated_utf8(draw) -> bytes:
    data = draw(chinese).encode("utf-8")
    return data[: draw(st.integers(0, len(data)))]


@st.composite
def legacy_mix(draw) -> bytes:
    """Lines in GB18030 and Big5 (and some UTF-8) in one file, as a bad export makes them."""
    parts = []
    for _ in range(draw(st.integers(1, 8))):
        enc = draw(st.sampled_from(["gb18030", "big5", "utf-8"]))
        text = draw(st.text(alphabet=(TRAD if enc == "big5" else SIMP) + PUNCT, min_size=1, max_size=80))
        parts.append(text.encode(enc, errors="ignore"))
    return b"\n".join(parts)


@st.composite
def enormous_line(draw) -> bytes:
    piece = draw(st.text(alphabet=SIMP + "，", min_size=1, max_size=30))
    return (piece * draw(st.integers(1_000, 20_000))).encode(draw(st.sampled_from(["utf-8", "gb18030"])))


@st.composite
def nested_html(draw) -> bytes:
    depth = draw(st.integers(1, 3_000))
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=5))
    text = draw(chinese)
    opened = [tags[i % len(tags)] for i in range(depth)]
    close = draw(st.sampled_from(["all", "none", "some", "wrong"]))
    closing = {"all": opened[::-1], "none": [], "some": opened[::-2], "wrong": opened}[close]
    html = "".join(f"<{t}>" for t in opened) + text + "".join(f"</{t}>" for t in closing)
    if draw(st.booleans()):
        html = html[: draw(st.integers(0, len(html)))]  # cut anywhere, even inside a tag
    return html.encode("utf-8")


@st.composite
def front_matter_without_end(draw) -> bytes:
    fields = draw(st.lists(st.sampled_from(["title: 长江", "date: 2021-12-03", "source: [x", "url: http://x", "- a", ": :"]), max_size=5))
    return ("---\n" + "\n".join(fields) + "\n" + draw(chinese)).encode("utf-8")


@st.composite
def jsonl_lines(draw) -> bytes:
    lines = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["ok", "broken", "no-id", "array", "cut"]))
        text = draw(st.text(alphabet=SIMP + PUNCT, min_size=0, max_size=60)).replace("\n", " ")
        line = {"ok": f'{{"id": "fz-{i}", "text": "{text}"}}', "broken": "{oops", "no-id": f'{{"text": "{text}"}}',
                "array": "[1, 2]", "cut": f'{{"id": "fz-{i}", "text": "{text}'}[kind]
        lines.append(line)
    return "\n".join(lines).encode("utf-8")


contents = st.one_of(st.binary(max_size=4_000), truncated_utf8(), legacy_mix(), enormous_line(), nested_html(),
                     front_matter_without_end(), jsonl_lines())


def _check(result: rag.reading.sources.IngestResult, name: str) -> None:
    assert result.articles or result.errors, "neither articles nor an error"
    for a in result.articles:
        assert a.id and a.title and a.text.strip() and a.origin == Path(name).name
    for e in result.errors:
        assert str(e).startswith(name), str(e)


@BOUNDED
@given(data=contents, suffix=suffixes)
@example(data=b"!", suffix=".txt")  # found by this test: an article of punctuation only had an empty title
@example(data=b"<div>" * 5000 + "正文".encode() + b"</div>" * 5000, suffix=".html")
@example(data=b"---\ntitle: [x\n\xe9\x95\xbf\xe6\xb1\x9f", suffix=".md")
def test_any_content_yields_articles_or_a_named_error(data, suffix):
    name = f"zz-fuzz{suffix}"
    _check(read_bytes(data, name), name)


@BOUNDED
@given(data=contents, suffix=suffixes)
def test_reading_a_folder_never_loses_the_articles_already_there(tmp_path_factory, data, suffix):
    folder = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(TEST_DATA / "tiny", folder, dirs_exist_ok=True)
    baseline = {a.id: a for a in read_articles(folder).articles}
    bad = folder / f"zz-fuzz{suffix}"  # sorts last, so its ids cannot take over the others'
    bad.write_bytes(data)
    single = read_file(bad, root=folder)
    _check(single, str(bad))
    result = read_articles(folder)
    assert {a.id: a for a in result.articles if a.origin != bad.name} == baseline
    assert all(str(e).startswith(str(bad)) for e in result.errors)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-service")
    shutil.copytree(TEST_DATA / "tiny", tmp / "data")
    svc = Service(tmp / "data", tmp / "index", config=rag.Config(embedder="hash"), feedback_dir=tmp / "feedback")  # no model in the fast layer
    svc.start()
    return svc


small = st.one_of(st.binary(max_size=1_000), truncated_utf8(), legacy_mix(), front_matter_without_end(), jsonl_lines())


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=small, suffix=suffixes)
def test_an_upload_is_indexed_or_refused_whole_and_the_index_keeps_the_rest(live, data, suffix):
    name = f"zz-fuzz{suffix}"
    before = {p.name: p.read_bytes() for p in live.data_dir.iterdir() if p.is_file()}
    kept = {i for i in live.retriever.articles if not i.startswith(("zz-fuzz", "fz-"))}
    try:
        report = live.upload([(name, data)])
    except rag.QueryError as e:
        assert str(e).startswith(name)
        assert {p.name: p.read_bytes() for p in live.data_dir.iterdir() if p.is_file()} == before
    else:
        assert report["files"][0]["name"] == name and (live.data_dir / name).read_bytes() == data
        assert report["added"] or report["changed"] or report["unchanged"]
    assert kept <= set(live.live_retriever().articles)
    assert rag.Retriever.check(live.index_dir) == []
