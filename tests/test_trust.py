"""Who may change the corpus, what an upload must pass before it is saved, undo, and bounded feedback."""
from __future__ import annotations

import html
import json
import re
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent

import app
from rag.serving.web.api import make_api
from rag.serving.web import render
import rag
from rag.serving.service import FeedbackLimits, Service, check_file_name, kept_versions, listens_on_loopback_only, restore

from conftest import TEST_DATA
from fake_openai import free_port

ARTICLE = "汉阳月湖湿地新建观鸟台\n来源:长江日报\n长江日报讯 汉阳月湖湿地公园新建三座观鸟台，市民可观察白鹭和小䴙䴘等水鸟。\n"
TOKEN = "s3cret-token"
HASH = rag.Config(embedder="hash")  # the index and the service need no model: the fast layer loads none


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def tiny(tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "tiny", data)
    rag.Retriever.build(data, tmp_path / "index", config=HASH)
    return tmp_path


def _service(tiny: Path, **kw) -> Service:
    svc = Service(tiny / "data", tiny / "index", config=HASH, feedback_dir=tiny / "feedback", **kw)
    svc.start()
    return svc


def _upload(client, name: str, content: bytes, token: str | None = None, **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.post("/api/documents", files=[("files", (name, content, "text/plain"))], headers=headers)


# --- who may write --------------------------------------------------------------------------------
@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.20", False), ("example.org", False), ("", False)])
def test_loopback_detection(host, loopback):
    assert listens_on_loopback_only(host) is loopback


def test_with_a_token_an_upload_without_it_is_refused_and_nothing_changes(tiny):
    svc = _service(tiny, admin_token=TOKEN, local_only=True)
    client = TestClient(make_api(svc))
    before, articles = _snapshot(tiny / "data"), sorted(svc.retriever.articles)
    for token in (None, "wrong", TOKEN[:-1], TOKEN + "x"):
        r = _upload(client, "yuehu.txt", ARTICLE.encode(), token)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthorized" and "Authorization: Bearer <RAG_ADMIN_TOKEN>" in r.json()["detail"]
    r = client.post("/api/documents", files=[("files", ("yuehu.txt", ARTICLE.encode()))], headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    for call in (lambda: client.delete("/api/documents/wuhan.txt"), lambda: client.get("/api/documents/kept"),
                 lambda: client.post("/api/documents/restore", json={"name": "wuhan.txt"})):
        assert call().status_code == 401
    assert _snapshot(tiny / "data") == before and sorted(svc.live_retriever().articles) == articles
    assert client.get("/api/health").json()["writes"] == "token"
    assert client.post("/api/search", json={"query": "九江", "k": 1}).status_code == 200  # reading stays open

    r = _upload(client, "yuehu.txt", ARTICLE.encode(), TOKEN)
    assert r.status_code == 200 and r.json()["added"] == ["yuehu"]


def test_off_loopback_without_a_token_the_app_is_read_only(tiny):
    svc = _service(tiny, local_only=False)
    client = TestClient(app.make_app(svc))
    before = _snapshot(tiny / "data")
    r = _upload(client, "yuehu.txt", ARTICLE.encode(), "anything")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert "set RAG_ADMIN_TOKEN" in r.json()["detail"]
    assert client.delete("/api/documents/wuhan.txt").status_code == 403
    assert _snapshot(tiny / "data") == before
    assert client.get("/api/health").json()["writes"] == "read-only"
    config = client.get("/config").json()
    labels = {c.get("props", {}).get("label") for c in config["components"]}
    assert "文章文件（拖到这里，或点击选择）" not in labels and "管理口令（RAG_ADMIN_TOKEN）" not in labels
    assert svc.ask("九江建成了多少公里沿江绿道？").text  # and it still answers


def test_on_loopback_without_a_token_writes_are_open_but_not_through_a_proxy(tiny):
    svc = _service(tiny)
    client = TestClient(app.make_app(svc))
    assert client.get("/api/health").json()["writes"] == "local"
    labels = {c.get("props", {}).get("label") for c in client.get("/config").json()["components"]}
    assert "文章文件（拖到这里，或点击选择）" in labels
    r = _upload(client, "yuehu.txt", ARTICLE.encode(), **{"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403 and "Forwarded/X-Forwarded-For" in r.json()["detail"]
    assert _upload(client, "yuehu.txt", ARTICLE.encode()).status_code == 200


def _serve_main(tmp: Path, host: str, token: str | None):
    env = dict(os.environ, RAG_INDEX_DIR=str(tmp / "index"), RAG_DATA_DIR=str(tmp / "data"), RAG_FEEDBACK_DIR=str(tmp / "fb"),
               RAG_LLM_BASE_URL="", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    env.pop("RAG_ADMIN_TOKEN", None)
    if token:
        env["RAG_ADMIN_TOKEN"] = token
    port = free_port()
    log = open(tmp / f"app-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", host, "--port", str(port)], cwd=tmp, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, port, log


@pytest.mark.slow  # starts app.py in its own process
def test_app_started_on_all_interfaces_without_a_token_is_read_only(tiny):
    """The edge: app.py reads RAG_ADMIN_TOKEN and --host and hands them to Service; its log is free of library noise."""
    shutil.rmtree(tiny / "index")  # the app builds it: the loudest start
    proc, port, log = _serve_main(tiny, "0.0.0.0", None)
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
                    health = json.loads(r.read())
                if health["ready"]:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tiny / f"app-{port}.log").read_text()
            time.sleep(0.2)
        assert health == {**health, "ready": True, "writes": "read-only"}
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/api/documents/wuhan.txt", method="DELETE"))
        assert e.value.code == 403 and "set RAG_ADMIN_TOKEN" in json.loads(e.value.read())["detail"]
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
    text = (tiny / f"app-{port}.log").read_text()
    assert "read-only: listening on 0.0.0.0 without RAG_ADMIN_TOKEN" in text
    for noise in ("faiss.loader", "Loading faiss", "HTTP Request:", "httpx", "Building prefix dict", "it/s]",
                  "DEBUG", "bm25s"):
        assert noise not in text, (noise, text)


# --- what an upload must pass ---------------------------------------------------------------------------
def test_random_bytes_named_txt_are_refused_and_nothing_is_saved(tiny):
    svc = _service(tiny)
    client = TestClient(make_api(svc))
    before = _snapshot(tiny / "data")
    noise = os.urandom(200 * 1024)
    r = client.post("/api/documents", files=[("files", ("good.txt", ARTICLE.encode())), ("files", ("fake.txt", noise))])
    assert r.status_code == 422 and r.json()["error"] == "bad_request"
    assert r.json()["detail"].startswith("fake.txt: ") and "nothing was saved" in r.json()["detail"]
    high = bytes(b | 0x80 for b in noise)  # no NUL bytes, every byte a possible GB18030/Big5 lead byte
    r = _upload(client, "fake.txt", high)
    assert r.status_code == 422 and "fake.txt: cannot decode the text: it is not UTF-8, GB18030 or Big5" in r.json()["detail"]
    assert _snapshot(tiny / "data") == before


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("page.html", "九江港吞吐量创新高，全年完成货物吞吐量一亿吨。".encode(), "page.html: not HTML: no tags found"),
        ("meta.md", b"---\ntitle: [unclosed\n---\n\xe6\xad\xa3\xe6\x96\x87", "meta.md: invalid YAML front matter"),
        ("feed.jsonl", b'{"title": "no id"}\nnot json\n', "feed.jsonl:1: field 'id' is missing or empty"),
        ("empty.txt", b" \n ", "empty.txt: empty file"),
        ("latin.txt", "Zürich réunion économique à Montréal ".encode("cp1252") * 40, "latin.txt: cannot decode"),
        ("big.txt", b"a" * (16 * 2**20 + 1), "big.txt: file is 16 MB; the limit is 16 MB per file"),
        ("notes.docx", b"PK\x03\x04", "notes.docx: unsupported file type '.docx'"),
    ],
)
def test_files_that_do_not_parse_as_their_type_are_refused(tiny, name, content, match):
    svc = _service(tiny)
    before = _snapshot(tiny / "data")
    r = _upload(TestClient(make_api(svc)), name, content)
    assert r.status_code == 422 and match in r.json()["detail"], r.json()
    assert _snapshot(tiny / "data") == before


@pytest.mark.parametrize(
    "raw, match",
    [
        ("../escape.txt", "has a folder part"),
        ("../../../../tmp/escape.txt", "has a folder part"),
        ("/etc/passwd.txt", "has a folder part"),
        ("..\\escape.txt", "has a folder part"),
        ("C:\\temp\\x.txt", "has a folder part"),
        ("a\x00b.txt", "control or invisible character U+0000"),
        ("a\nb.txt", "control or invisible character U+000A"),
        ("a\u202eb.txt", "control or invisible character U+202E"),  # right-to-left override
        ("..\uff0fescape.txt", "looks like a slash"),  # fullwidth solidus
        ("..\u2215escape.txt", "looks like a slash"),  # division slash
        ("..\u2044escape.txt", "looks like a slash"),  # fraction slash
        ("..\uff3cescape.txt", "looks like a slash"),  # fullwidth reverse solidus
        ("\uff0e\uff0e\uff0fx.txt", "looks like a slash"),
        ("\uff0ehidden.txt", "starts with a dot"),  # fullwidth full stop
        (".trash", "starts with a dot"),
        (".hidden.txt", "starts with a dot"),
        ("..", "starts with a dot"),
        ("长" * 70 + ".txt", "is 214 bytes long; the limit is 200"),
        ("x" * 5000 + ".txt", "the limit is 200"),
        ("", "is not usable"),
        ("noext", "unsupported file type '(none)'"),
    ],
)
def test_names_cannot_escape_the_data_folder(tiny, raw, match):
    with pytest.raises(rag.QueryError, match=re.escape(match)):
        check_file_name(raw)
    svc = _service(tiny)
    before = _snapshot(tiny / "data")
    elsewhere = lambda: {p for p in _snapshot(tiny) if not p.startswith(("data/", "index/"))}  # noqa: E731
    outside = elsewhere()
    # the name's raw bytes in the multipart header (an HTTP client would percent-encode NUL and newlines)
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{raw}"\r\n'
            f"Content-Type: text/plain\r\n\r\n{ARTICLE}\r\n--{boundary}--\r\n").encode("utf-8")
    r = TestClient(make_api(svc)).post("/api/documents", content=body,
                                           headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert set(r.json()) >= {"files"} if r.status_code == 200 else set(r.json()) == {"error", "detail"}
    if r.status_code == 200:  # the multipart parser itself keeps only the last part of a Windows path
        assert "\\" in raw and [f["name"] for f in r.json()["files"]] == [raw.rsplit("\\", 1)[1]]
        assert set(_snapshot(tiny / "data")) - set(before) == {raw.rsplit("\\", 1)[1]}
    else:  # 400: the multipart parser refused the header itself (a newline in it, or too long)
        assert r.status_code in (400, 422) and _snapshot(tiny / "data") == before, r.json()
        if r.status_code == 400:
            assert "\n" in raw or len(raw) > 1000
    assert elsewhere() == outside


# words a Chinese refusal may keep: formats, encodings, field names, the example name
_KEPT_WORDS = {"YAML", "HTML", "JSON", "NUL", "UTF", "Big", "txt", "jsonl", "html", "htm", "md", "title", "date",
               "source", "url", "text", "article", "U", "KB", "MB", "id", "GB", "markdown"}


@pytest.mark.parametrize(
    "name, content, says",
    [
        ("page.html", "九江港吞吐量创新高，全年完成货物吞吐量一亿吨。".encode(), "不是 HTML：没有找到标签"),
        ("meta.md", b"---\ntitle: [unclosed\n---\n\xe6\xad\xa3\xe6\x96\x87", "YAML 前置元数据无效"),
        ("alias.md", b"---\na: &x 1\nb: *x\n---\n\xe6\xad\xa3\xe6\x96\x87", "不允许使用别名"),
        ("feed.jsonl", b'{"title": "no id"}\nnot json\n', "feed.jsonl 第 1 行：缺少 id 字段"),
        ("empty.txt", b" \n ", "empty.txt：空文件"),
        ("latin.txt", "Zürich réunion économique à Montréal ".encode("cp1252") * 40, "latin.txt：无法解码"),
        ("nul.txt", b"\x00\x01" * 100, "二进制文件"),
        ("big.txt", b"a" * (16 * 2**20 + 1), "big.txt：文件大小 16 MB，每个文件上限 16 MB"),
        ("notes.docx", b"PK\x03\x04", "notes.docx：不支持的文件类型 '.docx'"),
        (".hidden.txt", ARTICLE.encode(), "以点开头（隐藏文件）"),
        ("deep.html", b"<html><body>" + b"<div>" * 300 + "正文".encode() + b"</div>" * 300, "HTML 元素嵌套超过 256 层"),
        ("attrs.html", b"<p " + b" ".join(b"a%d=1" % i for i in range(300)) + b">x</p>", "属性超过 256 个"),
    ],
)
def test_the_upload_tab_explains_a_refusal_in_chinese(tiny, tmp_path, name, content, says):
    f = tmp_path / "uploads" / name
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(content)
    svc = _service(tiny)
    report = html.unescape(render.upload_files(svc, [str(f)]))
    assert report.startswith("⚠ 未上传，没有保存任何文件：") and says in report, report
    english = set(re.findall(r"[A-Za-z]+", re.sub(r"<\w+>", "", report.replace(name, "")))) - _KEPT_WORDS - {Path(name).suffix[1:]}
    assert not english, report
    assert not (tiny / "data" / name).exists()


def test_refused_writes_are_logged_with_the_client_address(tiny, tmp_path, caplog):
    svc = _service(tiny, admin_token=TOKEN)
    client = TestClient(app.make_app(svc))
    with caplog.at_level("WARNING", logger="rag.serving"):
        assert _upload(client, "yuehu.txt", ARTICLE.encode()).status_code == 401
        assert client.delete("/api/documents/nothing.txt", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
        assert _upload(client, "notes.docx", b"PK", TOKEN).status_code == 422
        f = tmp_path / "yuehu.txt"
        f.write_text(ARTICLE, encoding="utf-8")
        assert render.upload_files(svc, [str(f)], "guess", client="198.51.100.7").startswith("⚠ 未上传")
    lines = [r.getMessage() for r in caplog.records]
    assert any("refused POST /api/documents from testclient: 401" in m for m in lines), lines
    assert any("refused DELETE /api/documents/nothing.txt from testclient: 404" in m for m in lines), lines
    assert any("refused POST /api/documents from testclient: 422 notes.docx" in m for m in lines), lines
    assert any("refused upload (chat) of yuehu.txt from 198.51.100.7" in m for m in lines), lines
    read_only = TestClient(app.make_app(_service(tiny, local_only=False)))
    with caplog.at_level("WARNING", logger="rag.serving"):
        assert read_only.post("/api/documents/restore", json={"name": "x.txt"}).status_code == 403
    assert "refused POST /api/documents/restore from testclient: 403" in caplog.text


def test_plain_unicode_names_are_kept():
    assert check_file_name(" 长江日报·武汉 2021（上）.md ") == "长江日报·武汉 2021（上）.md"
    assert check_file_name("ｆｕｌｌ.txt") == "ｆｕｌｌ.txt"


def test_a_failed_index_update_puts_the_files_back(tiny, monkeypatch):
    svc = _service(tiny)
    client = TestClient(make_api(svc))
    assert _upload(client, "yuehu.txt", ARTICLE.encode()).status_code == 200
    before = _snapshot(tiny / "data")

    def locked(self, data_dir):
        raise rag.IndexLockedError("index is being written by process 4242; retry")

    monkeypatch.setattr(rag.Retriever, "sync", locked)
    r = client.post("/api/documents", files=[("files", ("yuehu.txt", ARTICLE.replace("三座", "五座").encode())),
                                              ("files", ("new.txt", "新文章。九江港吞吐量创新高。".encode()))])
    assert r.status_code == 409 and r.json()["error"] == "index_busy"
    assert _snapshot(tiny / "data") == before


# --- undo ----------------------------------------------------------------------------------------
def test_a_replaced_file_is_kept_and_restored_by_one_command(tiny):
    svc = _service(tiny, admin_token=TOKEN)
    client = TestClient(make_api(svc))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    original = (tiny / "data" / "wuhan.txt").read_bytes()
    bad = "武汉长江大桥今日封闭维修。".encode()
    r = _upload(client, "wuhan.txt", bad, TOKEN)
    assert r.status_code == 200 and r.json()["files"][0]["status"] == "updated"
    version = r.json()["files"][0]["kept"]
    assert (tiny / "data" / ".trash" / version / "wuhan.txt").read_bytes() == original
    assert "封闭维修" in client.post("/api/search", json={"query": "武汉长江大桥封闭", "k": 1}).json()["passages"][0]["text"]
    assert client.get("/api/documents/kept", headers=auth).json() == [{"name": "wuhan.txt", "version": version, "bytes": len(original)}]

    r = client.post("/api/documents/restore", json={"name": "wuhan.txt"}, headers=auth)  # the documented command
    assert r.status_code == 200, r.json()
    assert r.json()["restored"] == version and r.json()["changed"] == ["wuhan"]
    assert (tiny / "data" / "wuhan.txt").read_bytes() == original
    assert svc.retriever.articles["wuhan"].text in original.decode("utf-8")
    assert (tiny / "data" / ".trash" / r.json()["kept"] / "wuhan.txt").read_bytes() == bad  # the undo is undoable
    assert rag.Retriever.check(tiny / "index") == []

    r = client.post("/api/documents/restore", json={"name": "yichang.md"}, headers=auth)
    assert r.status_code == 422 and "yichang.md: no kept copy" in r.json()["detail"]
    r = client.post("/api/documents/restore", json={"name": "../wuhan.txt"}, headers=auth)
    assert r.status_code == 422 and "folder part" in r.json()["detail"]


def test_delete_keeps_the_file_for_restore(tiny):
    svc = _service(tiny)
    client = TestClient(make_api(svc))
    r = client.delete("/api/documents/wuhan.txt")
    assert r.status_code == 200 and r.json()["removed"] == ["wuhan"] and "wuhan" not in svc.retriever.articles
    assert not (tiny / "data" / "wuhan.txt").exists()
    gone = client.delete("/api/documents/wuhan.txt")  # no such file any more: 404 naming it
    assert gone.status_code == 404 and gone.json()["error"] == "not_found" and "wuhan.txt" in gone.json()["detail"]
    assert client.post("/api/documents/restore", json={"name": "wuhan.txt"}).json()["added"] == ["wuhan"]


def test_restore_function_for_the_command_line(tiny):
    data = tiny / "data"
    assert kept_versions(data) == []
    (data / ".trash" / "20260101T000000.000000Z").mkdir(parents=True)
    (data / ".trash" / "20260101T000000.000000Z" / "wuhan.txt").write_bytes("旧稿\n武汉长江新区首批项目旧稿。".encode())
    (data / ".trash" / "20260102T000000.000000Z").mkdir(parents=True)
    (data / ".trash" / "20260102T000000.000000Z" / "wuhan.txt").write_bytes(b"newer")
    assert [v["version"] for v in kept_versions(data, "wuhan.txt")] == ["20260102T000000.000000Z", "20260101T000000.000000Z"]
    current = (data / "wuhan.txt").read_bytes()
    done = restore(data, "wuhan.txt", "20260101T000000.000000Z")
    assert "旧稿" in (data / "wuhan.txt").read_text(encoding="utf-8") and done["restored"] == "20260101T000000.000000Z"
    assert (data / ".trash" / done["kept"] / "wuhan.txt").read_bytes() == current
    assert not (data / ".trash" / "20260101T000000.000000Z").exists()
    with pytest.raises(rag.QueryError, match=r"wuhan.txt: no kept copy from 1999 .*kept versions: "):
        restore(data, "wuhan.txt", "1999")
    r = rag.Retriever.load(tiny / "index")
    r.sync(data)  # what `rag restore` does after the files: the index follows
    assert "首批项目旧稿" in rag.Retriever.load(tiny / "index").articles["wuhan"].text


# --- feedback bounds --------------------------------------------------------------------------------
def test_feedback_is_bounded(tmp_path):
    svc = Service(tmp_path, tmp_path, feedback_dir=tmp_path / "fb",
                  feedback_limits=FeedbackLimits(entry_bytes=400, per_minute=3, file_bytes=600, keep=2))
    client = TestClient(make_api(svc))
    body = {"question": "江岸签约了哪些项目？", "answer": "六个[1]", "vote": "up"}
    r = client.post("/api/feedback", json={**body, "answer": "长" * 200})
    assert r.status_code == 422 and "feedback entry is 7" in r.json()["detail"] and "the limit is 400" in r.json()["detail"]
    assert client.post("/api/feedback", json={**body, "answer": "长" * 10_001}).status_code == 422  # schema bound
    assert [client.post("/api/feedback", json=body).status_code for _ in range(4)] == [200, 200, 200, 429]
    r = client.post("/api/feedback", json=body)
    assert r.json()["error"] == "too_many_requests" and 1 <= int(r.headers["retry-after"]) <= 61
    svc.feedback("q", "a", [], "down", client="other")  # other clients are not held up
    for i in range(12):
        svc.feedback(f"q{i}", "a", [], "up", client=f"c{i}")
    files = sorted(p.name for p in (tmp_path / "fb").iterdir())
    assert files == ["feedback.1.jsonl", "feedback.2.jsonl", "feedback.jsonl"]
    assert all(p.stat().st_size <= 600 for p in (tmp_path / "fb").iterdir())
    last = json.loads((tmp_path / "fb" / "feedback.jsonl").read_text(encoding="utf-8").splitlines()[-1])
    assert last["question"] == "q11"


def test_the_upload_tab_asks_for_the_token(tiny, tmp_path):
    svc = _service(tiny, admin_token=TOKEN)
    client = TestClient(app.make_app(svc))
    token_box = [c for c in client.get("/config").json()["components"]
                 if c.get("props", {}).get("label") == "管理口令（RAG_ADMIN_TOKEN）"]
    assert token_box and token_box[0]["props"]["visible"] is True and token_box[0]["props"]["type"] == "password"
    f = tmp_path / "yuehu.txt"
    f.write_text(ARTICLE, encoding="utf-8")
    before = _snapshot(tiny / "data")
    assert render.upload_files(svc, [str(f)], "").startswith("⚠ 未上传：管理口令不对或未填写。")
    assert render.upload_files(svc, [str(f)], "guess").startswith("⚠ 未上传：管理口令不对或未填写。")
    assert _snapshot(tiny / "data") == before
    report = render.upload_files(svc, [str(f)], TOKEN)
    assert "yuehu.txt：新文件" in report and "新增文章 1 篇" in report
    f.write_text(ARTICLE.replace("三座", "五座"), encoding="utf-8")
    report = render.upload_files(svc, [str(f)], TOKEN)
    assert "yuehu.txt：更新（替换了同名文件，旧文件已保留）" in report and "POST /api/documents/restore" in report
    read_only = _service(tiny, local_only=False)
    assert render.upload_files(read_only, [str(f)], TOKEN).startswith("⚠ 未上传：本服务为只读：")
    token_box = [c for c in TestClient(app.make_app(_service(tiny))).get("/config").json()["components"]
                 if c.get("props", {}).get("label") == "管理口令（RAG_ADMIN_TOKEN）"]
    assert token_box[0]["props"]["visible"] is False  # loopback without a token: no key to ask for
