"""Hostile input: every parser refuses (naming the file and the limit) or finishes within a CPU budget;
uploads of such files get 422; the app exits within 10 s of SIGTERM. Property tests in the fast layer;
the corpus of large hostile files (generated in tmp_path) and the app in a subprocess in the slow layer."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rag
from rag.errors import NotReadyError, SourceError
from rag.reading import markup, sources
from rag.reading.markup import MAX_HTML_DEPTH, check_html, front_matter, html_to_lines
from rag.reading.sources import decode_bytes, read_bytes, read_file
from rag.serving.service import Service
from rag.serving.web.api import make_api

from conftest import ROOT, TEST_DATA, wait_until_ready
from fake_openai import free_port

BUDGET = 5.0  # CPU seconds per file (issue 27: "each under 5 s on 2 cores"); CPU, not wall: the machine may be busy
MB = 2**20
HASH = rag.Config(embedder="hash")  # the index and the service need no model: the fast layer loads none


@contextmanager
def cpu_budget(seconds: float, what: str):
    start = time.process_time()
    yield
    used = time.process_time() - start
    assert used < seconds, f"{what}: {used:.2f} CPU s, over the budget of {seconds} s"


def _outcome(result) -> str:
    return "refused" if not result.articles else "parsed"


# --- HTML: the pre-scan ---------------------------------------------------------------------------
def test_deep_nesting_is_refused_naming_the_file_and_the_limit():
    with pytest.raises(SourceError, match=rf"^deep\.html: HTML nested more than {MAX_HTML_DEPTH} elements deep .*"
                                          rf"the limit is {MAX_HTML_DEPTH} levels"):
        check_html("<div>" * 100_000, "deep.html")


@pytest.mark.parametrize("html, limit", [
    ("<div " + " ".join(f"a{i}=1" for i in range(markup.MAX_HTML_ATTRIBUTES + 1)) + ">x", "attributes"),
    ("".join(f"<x{i}></x{i}>" for i in range(markup.MAX_HTML_NAMES + 1)), "distinct tag and attribute names"),
    ("<br>" * (markup.MAX_HTML_TAGS + 1), f"{markup.MAX_HTML_TAGS:,} tags"),
])
def test_other_html_bounds_are_refused_naming_the_limit(html, limit):
    with pytest.raises(SourceError, match=f"^x.html: .*{limit}"):
        check_html(html, "x.html")


@pytest.mark.parametrize("html", [
    "<p>一<p>二<p>三" * 5000,  # paragraphs left open are closed by the next one
    "<ul>" + "<li>项" * 5000 + "</ul>",
    "<table>" + "<tr><td>1<td>2" * 3000 + "</table>",
    "<div>" * 200 + "正文" + "</div>" * 200,
    "</span>" * 1000 + "<div>x</div>",  # end tags of nothing open are ignored
    "<script>" + "var s = '<div>';" * 5000 + "</script><p>正文",  # script text is not markup
    "<!--" + "<div>" * 5000 + "--><p>正文",
    "<svg>" + "<path d='M0'/>" * 5000 + "</svg><p>正文",
    "<img src='data:image/png;base64," + "A" * MB + "'><p>正文",  # a large inline image is fine
])
def test_real_shapes_of_markup_pass(html):
    check_html(html, "page.html")


def test_the_sample_pages_pass():
    for f in [*TEST_DATA.rglob("*.htm*"), *(ROOT / "data").rglob("*.htm*")]:
        check_html(f.read_text(encoding="utf-8", errors="replace"), str(f))


def test_an_end_tag_of_something_not_open_does_not_hide_nesting():
    with pytest.raises(SourceError, match="nested more than"):
        check_html("<div></span>" * (MAX_HTML_DEPTH + 1), "x.html")
    with pytest.raises(SourceError, match="nested more than"):
        check_html("<div/>" * (MAX_HTML_DEPTH + 1), "x.html")  # not self-closing in HTML


def test_a_deep_html_file_is_an_error_of_read_bytes_not_a_stuck_parse():
    with cpu_budget(BUDGET, "deep html"):
        r = read_bytes(b"<div>" * 950_000, "deep.html")
    assert not r.articles and "deep.html: HTML nested more than" in str(r.errors[0])
    r = read_bytes(("<p>" + "<span>" * 100_000 + "正文</p>").encode(), "deep.md")  # HTML inside Markdown too
    assert not r.articles and "deep.md: HTML nested" in str(r.errors[0])


# --- front matter ----------------------------------------------------------------------------------
BOMB = "---\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9)
) + "title: *j\n---\n正文\n"


def test_front_matter_aliases_are_refused():
    with cpu_budget(1, "alias bomb"), pytest.raises(SourceError, match=r"^bomb\.md: invalid YAML front matter: .*aliases"):
        front_matter(BOMB, "bomb.md")


def test_front_matter_over_the_limit_is_refused_and_markdown_rules_still_read():
    big = "---\ntitle: t\nnote: " + "长" * (markup.MAX_FRONT_MATTER_CHARS + 10) + "\n---\n正文\n"
    with pytest.raises(SourceError, match=r"^big\.md: YAML front matter longer than 64 KB; the limit is 64 KB"):
        front_matter(big, "big.md")
    assert front_matter("---\n" + "正文，没有结尾的分隔线\n" * 30_000, "rule.md")[0] == {}  # no closing line: no front matter


def test_deeply_nested_front_matter_is_refused():
    with pytest.raises(SourceError, match=r"^deep\.md: .*(nested too deep|invalid YAML)"):
        front_matter("---\nt: " + "[" * 30_000 + "\n---\n正文\n", "deep.md")


# --- JSONL and decoding ------------------------------------------------------------------------------
def test_a_jsonl_line_over_the_limit_is_skipped_without_holding_it(monkeypatch):
    monkeypatch.setattr(sources, "MAX_JSONL_LINE_BYTES", 1000)
    ok = json.dumps({"id": "a", "text": "汉阳月湖湿地新建观鸟台。"}, ensure_ascii=False)
    data = (ok + "\n" + json.dumps({"id": "b", "text": "长" * 2000}) + "\n" + ok.replace('"a"', '"c"') + "\n").encode()
    r = read_bytes(data, "big.jsonl")
    assert [a.id for a in r.articles] == ["a", "c"]
    assert [str(e) for e in r.errors] == ["big.jsonl:2: line is 0 MB; the limit is 0 MB per line (one article): line skipped"]


def test_gb18030_jsonl_lines_decode():
    lines = [json.dumps({"id": str(i), "text": f"第{i}条新闻：汉阳月湖湿地新建观鸟台。"}, ensure_ascii=False) for i in range(50)]
    r = read_bytes(("\n".join(lines) + "\n").encode("gb18030"), "gb.jsonl")
    assert len(r.articles) == 50 and not r.errors


def test_a_large_gb18030_file_is_detected_on_a_sample():
    text = "汉阳月湖湿地公园新建三座观鸟台，市民可观察白鹭和小䴙䴘等水鸟。\n" * 40_000  # ~2.4 MB
    with cpu_budget(BUDGET, "gb18030"):
        assert decode_bytes(text.encode("gb18030"), "gb.txt") == text


# --- property tests: each parser on generated input, within a CPU budget -------------------------------
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TAGS = st.sampled_from(["<div>", "</div>", "<p>", "</p>", "<span>", "<b>", "<li>", "<td>", "<table>", "<tr>",
                        "<script>", "</script>", "<!--", "-->", "<svg>", "<path/>", "<a href='", "'>", "\"", "<", ">",
                        "<br/>", "<h1>", "</h1>", "<meta property=\"og:title\" content=\"", "新闻", "\n", " "])
MARKUP = st.lists(TAGS, max_size=400).map("".join)
REPEATED = st.tuples(st.lists(TAGS, min_size=1, max_size=8).map("".join), st.integers(1, 20_000)).map(lambda t: t[0] * t[1])


def _parse(text: str, name: str):
    with cpu_budget(2.0, name):
        try:
            html_to_lines(text, name)
        except SourceError as e:
            assert e.path == name


@PROPS
@given(st.one_of(MARKUP, REPEATED))
def test_html_parses_or_is_refused_in_bounded_time(html):
    _parse(html, "gen.html")


@PROPS
@given(st.one_of(st.text(max_size=2000), REPEATED, st.text(alphabet="-: \n[]{}&*!|>'\"#a长", max_size=3000)))
def test_front_matter_and_markdown_in_bounded_time(body):
    with cpu_budget(2.0, "gen.md"):
        read_bytes(("---\n" + body + "\n---\n" + body + "\n正文。\n").encode("utf-8", "replace"), "gen.md")
        read_bytes(body.encode("utf-8", "replace") + "\n汉阳月湖湿地新建观鸟台。\n".encode(), "gen.txt")


@PROPS
@given(st.binary(max_size=4000), st.integers(1, 400))
def test_decoding_and_jsonl_in_bounded_time(data, repeat):
    with cpu_budget(2.0, "gen.jsonl"):
        read_bytes(data * repeat, "gen.jsonl")
        read_bytes(data * repeat, "gen.txt")


@PROPS
@given(st.lists(st.one_of(st.text(max_size=50), st.sampled_from(['{"id":', '"text":', "[", "{", "]", "}", ",", "\n", "\\u"])),
                max_size=300).map("".join))
def test_jsonl_text_in_bounded_time(text):
    with cpu_budget(2.0, "gen.jsonl"):
        r = read_bytes(text.encode("utf-8", "replace"), "gen.jsonl")
    assert all(e.path == "gen.jsonl" for e in r.errors)


# --- the upload path and shutdown ----------------------------------------------------------------------
@pytest.fixture()
def tiny(tmp_path) -> Path:
    shutil.copytree(TEST_DATA / "tiny", tmp_path / "data")
    rag.Retriever.build(tmp_path / "data", tmp_path / "index", config=HASH)
    return tmp_path


def test_uploading_deep_html_is_422_naming_the_file_and_the_limit_and_nothing_is_saved(tiny):
    svc = Service(tiny / "data", tiny / "index", config=HASH, feedback_dir=tiny / "feedback")
    svc.start()
    before = sorted(p.name for p in (tiny / "data").iterdir())
    r = TestClient(make_api(svc)).post("/api/documents", files=[("files", ("deep.html", b"<div>" * 950_000, "text/html"))])
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "bad_request"
    assert f"deep.html: HTML nested more than {MAX_HTML_DEPTH} elements deep" in body["detail"]
    assert f"the limit is {MAX_HTML_DEPTH} levels" in body["detail"] and "nothing was saved" in body["detail"]
    assert sorted(p.name for p in (tiny / "data").iterdir()) == before


def test_after_close_no_change_begins(tiny):
    svc = Service(tiny / "data", tiny / "index", config=HASH, feedback_dir=tiny / "feedback")
    svc.start()
    assert svc.close(1.0) is True
    with pytest.raises(NotReadyError, match="shutting down"):
        svc.delete("wuhan.txt")
    assert (tiny / "data" / "wuhan.txt").exists()


# --- slow layer: the hostile corpus, a 1 GB line, SIGTERM -----------------------------------------------
def _hostile_corpus(folder: Path) -> list[Path]:
    """One file per shape of hostile input, each up to the 16 MB file limit."""
    files = {
        "nested-div.html": b"<div>" * 950_000,
        "nested-at-limit.html": (("<div>" * (MAX_HTML_DEPTH - 1) + "x" + "</div>" * (MAX_HTML_DEPTH - 1)) * 150).encode(),
        "unclosed-formatting.html": ("".join(f"<b id={i}>" for i in range(MAX_HTML_DEPTH - 1)) + "<p>x" * 100_000).encode(),
        "huge-attribute.html": b"<p title='" + b"a" * (15 * MB) + b"'>x</p>",
        "unterminated-attribute.html": b"<p>x</p><p title='" + b"a" * (15 * MB),
        "many-attributes.html": ("<div " + " ".join(f"a{i}=1" for i in range(20_000)) + ">x").encode(),
        "many-names.html": "".join(f"<x{i}>y</x{i}>" for i in range(50_000)).encode(),
        "many-tags.html": b"<p>x" * 3_000_000,
        "lt-only.html": b"<html>" + b"<" * (15 * MB),
        "giant-line.txt": "新闻标题\n".encode() + "汉阳月湖湿地新建观鸟台，".encode() * (15 * MB // 36),
        "giant-line-punct.txt": ("图片来源" * (4 * MB // 12) + "摄").encode(),
        "front-matter-bomb.md": BOMB.encode(),
        "front-matter-huge.md": ("---\ntitle: t\nnote: " + "长" * (5 * MB) + "\n---\n正文\n").encode(),
        "front-matter-deep.md": ("---\nt: " + "[" * 100_000 + "\n---\n正文\n").encode(),
        "mixed-encodings.txt": ("汉阳月湖新闻\n".encode("gb18030") + "漢陽月湖新聞\n".encode("big5") + "汉阳月湖\n".encode()) * 300_000,
        "random-high-bytes.txt": bytes((i * 7919 + 13) % 128 + 128 for i in range(15 * MB)),
        "deep-json.jsonl": b'{"id": "a", "text": ' + b"[" * (10 * MB) + b"\n",
        "giant-jsonl-line.jsonl": b'{"id": "a", "text": "' + "长".encode() * (5 * MB) + b'"}\n',
    }
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


@pytest.mark.slow
def test_every_file_of_the_hostile_corpus_is_refused_or_parsed_within_the_budget(tmp_path):
    outcomes = {}
    for f in _hostile_corpus(tmp_path):
        with cpu_budget(BUDGET, f.name):
            r = read_file(f)
        outcomes[f.name] = _outcome(r)
        for e in r.errors:
            assert e.path == str(f)
    assert outcomes["nested-div.html"] == outcomes["many-attributes.html"] == outcomes["many-names.html"] == "refused"
    assert outcomes["front-matter-bomb.md"] == outcomes["front-matter-huge.md"] == "refused"


@pytest.mark.slow
def test_a_1_gb_jsonl_line_is_skipped_in_bounded_memory(tmp_path):
    f = tmp_path / "huge.jsonl"
    with open(f, "wb") as out:
        out.write(json.dumps({"id": "ok", "text": "汉阳月湖湿地新建观鸟台。"}, ensure_ascii=False).encode() + b"\n")
        out.write(b'{"id": "big", "text": "' + b"a" * MB)
        out.truncate(2**30)  # the rest of the line: a sparse gigabyte (read as NUL bytes after the head)
    tracemalloc.start()
    try:
        r = read_file(f)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [a.id for a in r.articles] == ["ok"]
    assert "huge.jsonl:2: line is 1024 MB; the limit is 16 MB per line" in str(r.errors[0])
    assert peak < 3 * sources.MAX_JSONL_LINE_BYTES, f"peak {peak / MB:.0f} MB"


@pytest.mark.slow  # starts app.py in its own process
def test_sigterm_during_a_hostile_upload_exits_within_10_s_and_the_index_checks(tiny):
    port = free_port()
    env = dict(os.environ, RAG_INDEX_DIR=str(tiny / "index"), RAG_DATA_DIR=str(tiny / "data"),
               RAG_FEEDBACK_DIR=str(tiny / "feedback"), RAG_LLM_BASE_URL="", HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", RAG_EMBEDDER="hash")  # the embedder tiny's index was built with
    env.pop("RAG_ADMIN_TOKEN", None)
    log = open(tiny / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=tiny, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, url, tiny / "app.log", tries=900)
        # a hostile upload in flight (refused quickly now, but the signal comes while it is read and parsed)
        boundary = "b0undary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"deep.html\"\r\n"
                f"Content-Type: text/html\r\n\r\n").encode() + b"<div>" * 3_000_000 + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(url + "/api/documents", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        import threading

        threading.Thread(target=lambda: _quietly(urllib.request.urlopen, req, timeout=30), daemon=True).start()
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    print(f"exit {took:.1f} s after SIGTERM")  # docs/benchmarks.md, "Hostile files" (pytest -s shows it)
    assert took <= 10, f"exit took {took:.1f} s: {(tiny / 'app.log').read_text()[-2000:]}"
    check = subprocess.run([sys.executable, "-m", "rag.cli", "check", str(tiny / "index")], capture_output=True, text=True,
                           env=env, timeout=300)
    assert check.returncode == 0, check.stderr
    assert sorted(p.name for p in (tiny / "data").iterdir() if not p.name.startswith(".")) == ["jiujiang.jsonl", "wuhan.txt",
                                                                                                "yichang.md"]


def _quietly(f, *a, **kw):
    try:
        f(*a, **kw).read()
    except Exception:  # noqa: BLE001 - the server goes away mid-request
        pass
