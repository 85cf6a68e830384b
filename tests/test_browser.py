"""The chat page in a real browser (Debian Chromium via Playwright): ask, see the cited, highlighted answer."""
from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SEEDS, wait_until_ready
from fake_openai import free_port

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def app_url(seed_index, tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing: run `./run test`, which installs Debian's chromium and fonts-noto-cjk")
    tmp = tmp_path_factory.mktemp("app")
    index = tmp / "index"
    shutil.copytree(seed_index, index)
    port = free_port()
    env = dict(os.environ, RAG_INDEX_DIR=str(index), RAG_DATA_DIR=str(SEEDS), RAG_FEEDBACK_DIR=str(tmp / "feedback"),
               RAG_LLM_BASE_URL="", HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=tmp, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, url, tmp / "app.log")
        yield url, tmp / "feedback" / "feedback.jsonl"
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


@pytest.fixture(scope="module")
def browser(app_url):
    """Debian's Chromium, headless, launched once for the module's tests (after the app, which skips
    them when it is missing)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


ENGLISH = ("Use via API", "Built with Gradio", "Settings", "Drop File Here", "Click to Upload", "Examples", "Chatbot", "Clear")


@pytest.mark.parametrize("width, height, name", [(1280, 900, "chat-desktop"), (390, 844, "chat-phone")])
def test_ask_in_the_browser(app_url, browser, width, height, name):
    url, feedback = app_url
    phone = width < 640
    from playwright.sync_api import expect

    # an English browser: the page is Chinese all the same
    page = browser.new_page(viewport={"width": width, "height": height}, locale="en-US")
    page.goto(url + "/", wait_until="load")
    box = page.locator("#question textarea")
    expect(box).to_be_visible(timeout=30_000)
    box.fill("江岸签约了哪些项目？")
    page.locator("#send").click()
    answer = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
    expect(answer).to_contain_text("等6个项目签约江岸", timeout=60_000)
    cite = answer.locator("a[href='#src-1']").last
    expect(cite).to_have_text("[1]")
    # the answer itself first, in bold, above the cited sentence
    expect(answer.locator("b.short")).to_contain_text("三峡数字科技平台项目、中科水研智慧水利水务平台项目")
    inline = answer.locator(".inline-sources")
    if phone:
        # the sources of the answer directly under it, folded to one line each; the side panel is hidden
        expect(page.locator("#sources")).to_be_hidden()
        expect(inline).to_be_visible()
        expect(inline.locator("summary")).to_contain_text("[1] 江岸簽約12家長江生態環保產業聯盟成員單位 · 长江日报")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        # nothing between the answer's last line and its sources
        gap = inline.evaluate("""e => { const prev = e.previousElementSibling;
            return e.getBoundingClientRect().top - prev.getBoundingClientRect().bottom; }""")
        assert 0 <= gap < 40, gap
        assert inline.bounding_box()["y"] + 40 < height, "the sources start below the screen"
        inline.locator("summary").click()
        expect(inline.locator("#m-src-1 mark")).to_contain_text("等6個項目簽約江岸")  # the article is Traditional
        page.screenshot(path=str(ARTIFACTS / f"{name}-unfolded.png"), full_page=True)
    else:
        expect(inline).to_be_hidden()
        source = page.locator("#sources #src-1")
        expect(source).to_contain_text("长江日报")
        expect(source.locator("mark")).to_contain_text("等6個項目簽約江岸")
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    shown = page.locator("body").inner_text()
    assert not [w for w in ENGLISH if w in shown], [w for w in ENGLISH if w in shown]

    before = feedback.read_text(encoding="utf-8").count("\n") if feedback.exists() else 0
    page.locator("#chat").get_by_label("赞", exact=True).last.click()
    for _ in range(100):  # the vote is written by the server after the click
        if feedback.exists() and feedback.read_text(encoding="utf-8").count("\n") > before:
            break
        page.wait_for_timeout(100)
    record = json.loads(feedback.read_text(encoding="utf-8").splitlines()[-1])
    assert record["vote"] == "up" and record["question"] == "江岸签约了哪些项目？"
    assert "等6个项目签约江岸" in record["answer"] and record["sources"][0]["source"] == "长江日报"

    page.get_by_role("tab", name="上传文章").click()
    drop = page.locator("#upload-files")
    expect(drop).to_contain_text("将文件拖放到此处")
    expect(drop).to_contain_text("点击上传")
    if not phone:
        page.screenshot(path=str(ARTIFACTS / "upload-desktop.png"), full_page=True)
    shown = page.locator("body").inner_text()
    assert not [w for w in ENGLISH if w in shown], [w for w in ENGLISH if w in shown]


def _ask(page, question: str, expected: str, n: int) -> None:
    from playwright.sync_api import expect

    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    expect(page.locator("#chat [data-testid='bot']").nth(n - 1)).to_contain_text(expected, timeout=60_000)


def test_screen_reader_labels_are_chinese_and_no_badge_covers_a_message(app_url, browser):
    url, _ = app_url
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-US")
    page.goto(url + "/", wait_until="load")
    expect(page.locator("#question textarea")).to_be_visible(timeout=30_000)
    _ask(page, "江岸签约了哪些项目？", "等6个项目签约江岸", 1)
    _ask(page, "宝钢黄石新港二期工程是哪一年开工的？", "2024年", 2)
    page.wait_for_timeout(500)
    labels = page.evaluate("""() => [...document.querySelectorAll('[aria-label],[title]')]
        .flatMap(e => [e.getAttribute('aria-label'), e.getAttribute('title')]).filter(Boolean)""")
    english = [v for v in labels if re.search(r"[A-Za-z]{3,}", v)]
    assert not english, english  # "Copy message", "chatbot conversation", "bot's message: <b ...>"
    assert "对话记录" in labels and "复制消息" in labels
    bot = [v for v in labels if v.startswith("回答：")]
    assert len(bot) == 2 and bot[0].startswith("回答：三峡数字科技平台项目") and "<" not in "".join(bot), bot
    assert any(v == "提问：江岸签约了哪些项目？" for v in labels), labels

    # the "对话" badge and the clear button sit above the scrolling messages, whatever the scroll
    wrap = page.locator("#chat .bubble-wrap")
    for top in (0, 40, 120, 400):
        wrap.evaluate("(e, t) => { e.scrollTop = t; }", top)
        page.wait_for_timeout(150)
        messages_top = wrap.bounding_box()["y"]
        for corner in ("#chat label[data-testid='block-label']", "#chat .top-panel"):
            box = page.locator(corner).bounding_box()
            assert box is None or box["y"] + box["height"] <= messages_top + 1, (corner, top, box, messages_top)
    wrap.evaluate("e => { e.scrollTop = 60; }")
    page.wait_for_timeout(150)
    page.locator("#chat").screenshot(path=str(ARTIFACTS / "chat-scrolled.png"))
