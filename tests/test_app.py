"""The web app: REST endpoints, error statuses, feedback log, and the Gradio API from gradio_client."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow  # runs the real encoder

ROOT = Path(__file__).resolve().parent.parent

import app
from rag.serving.web.api import make_api
from rag.serving.web import render
from rag.serving.service import Service

from conftest import SEEDS, serve_app

Q = "江岸签约了哪些项目？"


@pytest.fixture(scope="module")
def service(seed_index, tmp_path_factory):
    svc = Service(SEEDS, seed_index, feedback_dir=tmp_path_factory.mktemp("feedback"))
    svc.start()
    assert svc.ready
    return svc


@pytest.fixture(scope="module")
def client(service):
    return TestClient(app.make_app(service))


def test_search(client):
    r = client.post("/api/search", json={"query": Q, "k": 3})
    assert r.status_code == 200
    ps = r.json()["passages"]
    assert len(ps) == 3 and ps[0]["doc_id"] == "000_4627bb9fbf4571c3" and ps[0]["source"] == "长江日报"
    assert len({p["doc_id"] for p in ps}) == 3  # each article once unless asked otherwise
    assert (ps[0]["date"], ps[0]["month"], ps[0]["day"]) == (None, 11, 29)  # no year stated: data, not "--11-29"
    several = client.post("/api/search", json={"query": Q, "k": 3, "per_article": None}).json()["passages"]
    assert len({p["doc_id"] for p in several}) < 3
    props = client.get("/openapi.json").json()["components"]["schemas"]["PassageOut"]["properties"]
    assert {"date", "month", "day"} <= set(props)


def test_search_filters_by_publication(client):
    r = client.post("/api/search", json={"query": Q, "k": 5, "sources": ["央广网"]})
    assert r.status_code == 200 and r.json()["passages"]
    assert {p["source"] for p in r.json()["passages"]} == {"央广网"}


def test_ask(client):
    r = client.post("/api/ask", json={"question": Q})
    a = r.json()
    assert r.status_code == 200 and a["grounded"] and "[1]" in a["text"]
    assert "等6个项目签约江岸" in a["text"] and a["citations"][0]["source"] == "长江日报"
    assert a["highlights"][0] in a["citations"][0]["text"]


def test_ask_with_history_and_filters(client):
    first = "宜昌市点军区集中开工了几个生态环保项目？"
    r = client.post("/api/ask", json={"question": "这些项目计划总投资多少？", "k": 3,
                                       "history": [{"role": "user", "content": first}],
                                       "filters": {"date_from": None, "sources": None}})
    assert r.status_code == 200 and "76.01亿元" in r.json()["text"]


def test_ask_declines_plainly(client):
    a = client.post("/api/ask", json={"question": "《红楼梦》的作者是谁？"}).json()
    assert not a["grounded"] and a["citations"] == [] and "没有找到" in a["text"]


@pytest.mark.parametrize(
    "path, body, match",
    [
        ("/api/search", {"query": "  ", "k": 3}, "query is empty"),
        ("/api/search", {"query": Q, "k": 0}, "k: Input should be greater than or equal to 1 (got 0)"),
        ("/api/search", {"query": Q, "k": 500}, "k: Input should be less than or equal to 20 (got 500)"),
        ("/api/search", {"query": Q, "k": "abc"}, "k: Input should be a valid integer (got 'abc')"),
        ("/api/search", {"query": Q, "k": True}, "k: Input should be a valid integer"),
        ("/api/search", {"k": 3}, "query: Field required"),
        ("/api/search", {"query": Q, "top_k": 3}, "top_k: Extra inputs are not permitted"),
        ("/api/search", {"query": Q, "date_from": "yesterday"}, "date_from: must be an ISO date like 2021-12-03"),
        ("/api/search", {"query": Q, "date_from": "2022-01-01", "date_to": "2021-01-01"}, "date_from (2022-01-01) is after date_to"),
        ("/api/search", {"query": Q, "sources": "长江日报"}, "sources: Input should be a valid list"),
        ("/api/search", [Q], "Input should be a valid dictionary"),
        ("/api/ask", {"question": ""}, "query is empty"),
        ("/api/ask", {}, "question: Field required"),
        ("/api/ask", {"question": Q, "history": [{"role": "bot", "content": "x"}]}, "history.0.role: Input should be 'user' or 'assistant'"),
        ("/api/ask", {"question": Q, "filters": {"date_to": "soon"}}, "filters.date_to: must be an ISO date"),
        ("/api/feedback", {"question": Q, "answer": "a", "vote": "meh"}, "vote: Input should be 'up' or 'down'"),
    ],
)
def test_bad_requests_are_422_with_a_reason(client, path, body, match):
    r = client.post(path, json=body)
    assert r.status_code == 422 and r.json()["error"] == "bad_request"
    assert match in r.json()["detail"], r.json()


@pytest.mark.parametrize(
    "method, path, content, status, match",
    [
        ("POST", "/api/search", b'{"query": ', 422, "invalid JSON at character"),
        ("POST", "/api/search", b"", 422, "request body missing"),
        ("GET", "/api/search", None, 405, "GET is not allowed on /api/search; use POST"),
        ("GET", "/api/nothing", None, 404, "no such endpoint /api/nothing"),
        ("POST", "/api/documents", None, 422, "files: Field required"),
    ],
)
def test_every_api_error_has_the_documented_body(client, method, path, content, status, match):
    r = client.request(method, path, content=content, headers={"content-type": "application/json"} if content is not None else {})
    assert r.status_code == status and set(r.json()) == {"error", "detail"} and match in r.json()["detail"], r.json()


def test_unexpected_errors_are_500_with_the_documented_body(seed_index, tmp_path, monkeypatch):
    svc = Service(SEEDS, seed_index, feedback_dir=tmp_path)
    monkeypatch.setattr(svc, "search", lambda *a, **kw: 1 / 0)
    r = TestClient(make_api(svc), raise_server_exceptions=False).post("/api/search", json={"query": Q})
    assert r.status_code == 500 and r.json() == {"error": "internal_error",
                                                 "detail": "unexpected ZeroDivisionError; the server log has the details"}


def test_503_while_the_index_is_loading(seed_index, tmp_path):
    loading = TestClient(app.make_app(Service(SEEDS, seed_index, feedback_dir=tmp_path)))
    r = loading.post("/api/search", json={"query": Q})
    assert r.status_code == 503 and "still loading" in r.json()["detail"]
    assert loading.get("/api/health").json()["ready"] is False


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/search", "/api/ask", "/api/feedback", "/api/documents", "/api/documents/restore"} <= set(spec["paths"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            errors = {c: r for c, r in op["responses"].items() if c[0] in "45"}
            assert "500" in errors, (path, method)
            for code, r in errors.items():
                assert r["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    search = spec["components"]["schemas"]["SearchBody"]["properties"]["k"]
    assert (search["minimum"], search["maximum"]) == (1, 20)


def test_chat_page_is_served_in_chinese(client):
    r = client.get("/")
    assert r.status_code == 200 and "新闻问答" in r.text
    assert r.text.index("navigator,'language'") < r.text.index("<script type=\"module\"")  # before Gradio's code
    assert client.get("/config").json()["footer_links"] == []  # no "Use via API · Built with Gradio" footer


def test_feedback_is_appended_to_jsonl(client, service):
    for vote in ("up", "down"):
        r = client.post("/api/feedback", json={"question": Q, "answer": "甲[1]", "sources": [{"title": "t"}], "vote": vote})
        assert r.status_code == 200
    lines = (service.feedback_dir / "feedback.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(x) for x in lines[-2:]]
    assert [r["vote"] for r in records] == ["up", "down"]
    assert records[0]["question"] == Q and records[0]["sources"] == [{"title": "t"}] and records[0]["time"]


def test_sources_panel_highlights_and_links():
    import rag

    p = rag.Passage(doc_id="d", title="标<题>", date="2021-12-03", source="长江日报", text="前文。关键句。后文。", score=1.0)
    a = rag.Answer(text="关键句[1]。", citations=[p], grounded=True, highlights=["关键句。"])
    panel = render.sources_html(a)
    assert 'id="src-1"' in panel and "<mark>关键句。</mark>" in panel and "标&lt;题&gt;" in panel
    assert "长江日报 · 2021-12-03" in panel
    assert "11月29日（未注明年份）" in render.sources_html(rag.Answer("x[1]", [rag.Passage("d", "t", "--11-29", "s", "x", 1.0)], True))
    assert '<a href="#src-1" class="cite">[1]</a>' in render.answer_markdown(a)
    msg = render.chat_message(a)
    assert msg.startswith(render.answer_markdown(a)) and '<details class="inline-sources">' in msg
    assert "[1] 标&lt;题&gt; · 长江日报 · 2021-12-03" in msg and 'id="m-src-1"' in msg and "<mark>关键句。</mark>" in msg
    assert "\n" not in msg.split("<details", 1)[1]  # one HTML block for the Markdown renderer
    assert render.without_inline_sources({"role": "assistant", "content": msg})["content"] == render.answer_markdown(a)
    parts = render.without_inline_sources({"role": "assistant", "content": [{"type": "text", "text": msg}]})
    assert parts["content"] == [{"type": "text", "text": render.answer_markdown(a)}]
    assert render.chat_message(rag.Answer("没有找到", [], False)) == "没有找到"


@pytest.fixture(scope="module")
def live_url(service):
    with serve_app(service) as url:
        yield url + "/"


def test_gradio_client_can_ask(live_url):
    from gradio_client import Client

    client = Client(live_url, verbose=False)
    chat, panel, box = client.predict(Q, [], [], "", "", 3, api_name="/ask")
    assert chat[-1]["role"] == "assistant" and "等6个项目签约江岸" in str(chat[-1]["content"])
    assert "<mark>" in panel and "长江日报" in panel and box == ""


def test_the_readme_gradio_client_snippet_prints_plain_text(live_url, capsys):
    import re as _re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = next(b for b in _re.findall(r"```python\n(.*?)```", readme, _re.DOTALL) if "gradio_client" in b)
    exec(snippet.replace("http://127.0.0.1:7860/", live_url), {})  # noqa: S102 - the README's own code
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("三峡数字科技平台项目、中科水研智慧水利水务平台项目"), out
    assert lines[1].startswith("出自 《江岸簽約12家") and "等6个项目签约江岸" in out and "[1] " in out
    assert "<" not in out and "[{" not in out  # no HTML, no list of message parts
    from gradio_client import Client

    follow = Client(live_url, verbose=False).predict("那总投资呢？", [{"role": "user", "content": Q}], 3,
                                                     api_name="/answer")
    assert isinstance(follow, str) and "<" not in follow
    assert Client(live_url, verbose=False).predict(" ", api_name="/answer") == "请先输入问题。"


def test_chat_streams_language_model_answer(seed_index, tmp_path):
    """With a language model, the Gradio ask endpoint sends growing partial answers, then the linked final one."""
    from gradio_client import Client

    from fake_openai import FakeOpenAI
    from rag.answering.llm import ChatModel

    with FakeOpenAI(delay=0.05) as fake:
        svc = Service(SEEDS, seed_index, feedback_dir=tmp_path, llm=ChatModel(fake.url))
        svc.start()
        with serve_app(svc) as url:
            job = Client(url + "/", verbose=False).submit(Q, [], [], "", "", 3, api_name="/ask")
            job.result()
            texts = [str(out[0][-1]["content"]) for out in job.outputs()]
    assert len(texts) >= 5
    assert "江岸签约" in texts[0] and 'href="#src-1"' not in texts[0]
    assert 'href="#src-1"' in texts[-1] and "中科水研智慧水利水务平台项目等6个项目" in texts[-1]


# --- updates while serving, and uploads ------------------------------------------------------
GOOD = "九江市完成长江岸线整治，建成沿江绿道35公里。"
NEW_ARTICLE = "汉阳月湖湿地新建观鸟台\n来源:长江日报\n长江日报讯 汉阳月湖湿地公园新建三座观鸟台，市民可观察白鹭和小䴙䴘等水鸟。\n"


@pytest.fixture()
def tiny_service(tmp_path):
    import shutil
    from conftest import TEST_DATA

    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "tiny", data)
    svc = Service(data, tmp_path / "index", feedback_dir=tmp_path / "feedback")
    svc.start()
    assert svc.ready
    return svc


def test_serves_an_article_added_by_another_process_without_restart(tiny_service, tmp_path):
    import subprocess

    client = TestClient(make_api(tiny_service))
    new = tmp_path / "incoming" / "yuehu.txt"
    new.parent.mkdir()
    new.write_text(NEW_ARTICLE, encoding="utf-8")
    assert all(p["doc_id"] != "yuehu" for p in client.post("/api/search", json={"query": "月湖观鸟台"}).json()["passages"])
    n_before = len(tiny_service.retriever.articles)

    stop, statuses = threading.Event(), []

    def keep_asking() -> None:
        c = TestClient(make_api(tiny_service))
        for _ in range(2000):  # bounded; stops when the update is done
            if stop.is_set():
                break
            statuses.append(c.post("/api/search", json={"query": "九江最美岸线", "k": 2}).status_code)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        done = subprocess.run([sys.executable, "-m", "rag.cli", "add", "--index", str(tiny_service.index_dir), str(new)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        asker.join(60)
    assert done.returncode == 0, done.stderr
    assert statuses and set(statuses) == {200}
    # the first request after the update starts loading the new generation in the background
    # and is answered from the loaded one; once loaded, the new article is served
    client.post("/api/search", json={"query": "月湖观鸟台", "k": 3})
    tiny_service.wait_for_reload()
    r = client.post("/api/search", json={"query": "月湖观鸟台", "k": 3})
    assert r.status_code == 200 and r.json()["passages"][0]["doc_id"] == "yuehu"
    assert f"{n_before + 1} 篇文章" in tiny_service.status


def test_requests_in_flight_keep_the_retriever_they_started_with(tiny_service, tmp_path):
    import rag

    before = tiny_service.live_retriever()
    new = tmp_path / "yuehu.txt"
    new.write_text(NEW_ARTICLE, encoding="utf-8")
    rag.Retriever.load(tiny_service.index_dir).add([new])  # another writer (same process, other object)
    assert tiny_service.live_retriever() is before  # the new generation loads in the background
    after = tiny_service.wait_for_reload()
    assert after is not before and "yuehu" in after.articles
    assert "yuehu" not in before.articles and before.search("月湖观鸟台", k=3)  # the old one still answers


def test_upload_endpoint_adds_updates_and_refuses(tiny_service):
    client = TestClient(make_api(tiny_service))
    r = client.post("/api/documents", files=[("files", ("yuehu.txt", NEW_ARTICLE.encode(), "text/plain"))])
    body = r.json()
    assert r.status_code == 200, body
    assert body["files"] == [{"name": "yuehu.txt", "status": "new", "kept": None}]
    assert body["added"] == ["yuehu"] and body["embedded"] >= 1 and body["errors"] == []
    assert (tiny_service.data_dir / "yuehu.txt").read_text(encoding="utf-8") == NEW_ARTICLE
    assert client.post("/api/search", json={"query": "月湖观鸟台", "k": 1}).json()["passages"][0]["doc_id"] == "yuehu"

    edited = NEW_ARTICLE.replace("三座", "五座")
    r = client.post("/api/documents", files=[("files", ("yuehu.txt", edited.encode(), "text/plain"))])
    (kept,) = [f["kept"] for f in r.json()["files"]]
    assert r.json()["files"] == [{"name": "yuehu.txt", "status": "updated", "kept": kept}] and r.json()["changed"] == ["yuehu"]
    assert (tiny_service.data_dir / ".trash" / kept / "yuehu.txt").read_text(encoding="utf-8") == NEW_ARTICLE
    assert "五座" in client.post("/api/search", json={"query": "月湖观鸟台", "k": 1}).json()["passages"][0]["text"]

    r = client.post("/api/documents", files=[("files", ("ok.txt", GOOD.encode(), "text/plain")),
                                              ("files", ("report.pdf", b"%PDF", "application/pdf"))])
    assert r.status_code == 422 and "report.pdf: unsupported file type '.pdf'" in r.json()["detail"]
    assert not (tiny_service.data_dir / "report.pdf").exists() and not (tiny_service.data_dir / "ok.txt").exists()
    assert client.post("/api/documents").status_code == 422
    spec = client.get("/openapi.json").json()["paths"]["/api/documents"]["post"]
    assert "422" in spec["responses"] and "multipart/form-data" in spec["requestBody"]["content"]


def test_upload_tab_handler_reports_in_chinese(tiny_service, tmp_path):
    src = tmp_path / "uploads"
    src.mkdir()
    (src / "yuehu.md").write_text("# 汉阳月湖湿地新建观鸟台\n\n" + NEW_ARTICLE.split("\n", 2)[2], encoding="utf-8")
    (src / "mixed.jsonl").write_text('{"id": "ok-9", "text": "%s"}\nnot json\n' % GOOD, encoding="utf-8")
    report = render.upload_files(tiny_service, [str(src / "yuehu.md"), str(src / "mixed.jsonl")])
    assert "yuehu.md：新文件" in report and "mixed.jsonl：新文件" in report
    assert "新增文章 2 篇" in report and "嵌入 " in report and " 秒" in report
    assert "1 处无法读取" in report and "mixed.jsonl 第 2 行：JSON 格式错误（第 1 列）；已跳过此行" in report.split("无法读取")[1]
    (src / "broken.jsonl").write_text('{"title": "无正文"}\nnot json\n', encoding="utf-8")
    refused = render.upload_files(tiny_service, [str(src / "broken.jsonl")])
    assert refused.startswith("⚠ 未上传，没有保存任何文件") and "broken.jsonl 第 1 行：缺少 id 字段或 id 为空" in refused
    assert not (tiny_service.data_dir / "broken.jsonl").exists()
    (src / "notes.docx").write_bytes(b"PK")
    refused = render.upload_files(tiny_service, [str(src / "notes.docx")])
    assert refused.startswith("⚠ 未上传") and "notes.docx" in refused and ".jsonl" in refused
    assert render.upload_files(tiny_service, []) == "请先选择要上传的文件。"
