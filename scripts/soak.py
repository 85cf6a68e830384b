"""Soak test: start `app.py` on a copy of the seed data and send it a long mix of what users do —
questions and follow-ups (REST and the chat's Gradio endpoint), searches, uploads, deletes, votes,
page loads and reloads, and visits in a real browser (Debian chromium through Playwright) that ask
in the chat — printing the app's resident memory as it goes. Done when the memory at the
end is within 10% of the memory after the first 100 requests.

    .venv/bin/python scripts/soak.py --requests 1200          # ~10 min on 2 busy cores
    .venv/bin/python scripts/soak.py --requests 300 --every 25 --json soak.json --browser-every 0
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from app_process import free_port, rss_mib, stop

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = [
    "江岸签约了哪些项目？",
    "江岸簽約了哪些項目？",
    "长江生态环保产业联盟是什么时候、由谁牵头组建的？",
    "宝钢黄石新港二期工程是哪一年开工的？",
    "三峡集团每年用于长江流域大保护的投资有多少？",
    "江阴的长江岸线整治做了什么？",
    "南粤赣商为江西环保产业做了什么？",
    "黄石新港工业园在哪里？",
    "长江经济带发展的重点是什么？",
    "月湖观鸟台有几座？",
    "今年的诺贝尔文学奖颁给了谁？",  # not in the articles: declined
]
FOLLOW_UPS = [
    ("宜昌市点军区集中开工了几个生态环保项目？", "那总投资呢？"),
    ("江岸签约了哪些项目？", "这些项目是在哪次会议上签约的？"),
    ("宝钢黄石新港二期工程是哪一年开工的？", "一期呢？"),
]
SEARCHES = ["宝钢黄石新港二期", "长江生态环保", "江岸 签约", "三峡集团 投资", "绿道", "观鸟台"]
# (share of requests, kind); uploads and deletes touch a handful of names, so the folder stays small
MIX = [(30, "ask"), (10, "follow_up"), (14, "search"), (10, "chat"), (8, "page"), (6, "reload"),
       (8, "upload"), (5, "delete"), (4, "vote"), (5, "health")]
UPLOAD_NAMES = [f"soak-{i}.txt" for i in range(6)]


def article(n: int, rng: random.Random) -> str:
    """A short new article; its numbers change, so an upload of a name is a real update."""
    seats, km = rng.randint(2, 9), rng.randint(5, 80)
    return (f"汉阳月湖湿地新建观鸟台（第{n}篇）\n来源:长江日报\n长江日报讯 汉阳月湖湿地公园新建{seats}座观鸟台，"
            f"沿湖绿道延长{km}公里，市民可观察白鹭和小䴙䴘等水鸟。湿地管理处表示，观鸟台全年开放。\n")


class Soak:
    def __init__(self, base: str, rng: random.Random) -> None:
        self.base = base
        self.rng = rng
        self.http = httpx.Client(base_url=base, timeout=120)
        self.uploaded: set[str] = set()
        self.n = 0
        self._gradio = None

    def gradio(self):
        if self._gradio is None:
            from gradio_client import Client

            self._gradio = Client(self.base + "/", verbose=False)
        return self._gradio

    def ask(self) -> int:
        return self.http.post("/api/ask", json={"question": self.rng.choice(QUESTIONS)}).status_code

    def follow_up(self) -> int:
        first, then = self.rng.choice(FOLLOW_UPS)
        return self.http.post("/api/ask", json={"question": then, "history": [{"role": "user", "content": first}]}).status_code

    def search(self) -> int:
        return self.http.post("/api/search", json={"query": self.rng.choice(SEARCHES), "k": self.rng.randint(1, 10)}).status_code

    def chat(self) -> int:
        """A turn in the chat, through the page's own Gradio endpoint (streamed, HTML)."""
        self.gradio().predict(self.rng.choice(QUESTIONS), [], [], "", "", 3, api_name="/ask")
        return 200

    def page(self) -> int:
        """What a browser fetches to show the page: the HTML, Gradio's config and API info."""
        codes = [self.http.get(p).status_code for p in ("/", "/config", "/gradio_api/info")]
        return max(codes)

    def reload(self) -> int:
        """A page reload with a new Gradio session: the page, then a new client's first chat turn."""
        self._gradio = None
        self.page()
        return self.chat()

    def upload(self) -> int:
        self.n += 1
        name = self.rng.choice(UPLOAD_NAMES)
        r = self.http.post("/api/documents", files=[("files", (name, article(self.n, self.rng).encode(), "text/plain"))])
        if r.status_code == 200:
            self.uploaded.add(name)
        return r.status_code

    def delete(self) -> int:
        if not self.uploaded:
            return self.upload()
        name = self.rng.choice(sorted(self.uploaded))
        r = self.http.delete(f"/api/documents/{name}")
        if r.status_code in (200, 404):
            self.uploaded.discard(name)
        return r.status_code

    def vote(self) -> int:
        body = {"question": "江岸签约了哪些项目？", "answer": "三峡数字科技平台项目等6个项目[1]",
                "sources": [{"doc_id": "000_4627bb9fbf4571c3"}], "vote": self.rng.choice(["up", "down"])}
        return self.http.post("/api/feedback", json=body).status_code  # 429 past 20 a minute: expected

    def health(self) -> int:
        return self.http.get("/api/health").status_code


class Browser:
    """Chromium visits: a fresh context loads the page and asks one question in the chat."""

    ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]

    def __init__(self, base: str, rng: random.Random, executable: str = "/usr/bin/chromium") -> None:
        from playwright.sync_api import sync_playwright

        self.base, self.rng = base, rng
        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=executable, args=self.ARGS)

    def visit(self) -> int:
        from playwright.sync_api import expect

        context = self._browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(self.base + "/", wait_until="load")
            box = page.locator("#question textarea")
            expect(box).to_be_visible(timeout=60_000)
            box.fill(self.rng.choice(QUESTIONS))
            page.locator("#send").click()
            expect(page.locator("#chat [data-testid='bot']").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1500)  # the answer streams in
            return 200
        finally:
            context.close()

    def close(self) -> None:
        self._browser.close()
        self._pw.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1200, help="mixed requests to send (default 1200)")
    ap.add_argument("--every", type=int, default=50, help="print memory every N requests (default 50)")
    ap.add_argument("--data", default=str(ROOT / "data"), help="articles to start from (copied; default data/)")
    ap.add_argument("--seed", type=int, default=27, help="random seed of the mix")
    ap.add_argument("--json", metavar="FILE", help="also write the memory series and counts here")
    ap.add_argument("--browser-every", type=int, default=25, metavar="N",
                    help="one visit in a real browser (chromium) every N requests, counted as a request (default 25; 0: none)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (app log, data, index)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    shutil.copytree(args.data, tmp / "data", ignore=shutil.ignore_patterns(".trash"))
    port = free_port()
    env = {**os.environ, "RAG_DATA_DIR": str(tmp / "data"), "RAG_INDEX_DIR": str(tmp / "index"),
           "RAG_FEEDBACK_DIR": str(tmp / "feedback"), "RAG_ADMIN_TOKEN": "", "RAG_LLM_BASE_URL": "",
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    log = open(tmp / "app.log", "w")
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=tmp, env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    series: list[dict] = []
    statuses: Counter = Counter()
    try:
        t0 = time.perf_counter()
        with httpx.Client(timeout=10) as probe:
            while True:
                if app.poll() is not None:
                    raise SystemExit(f"the app exited; its log: {tmp / 'app.log'}")
                try:
                    if probe.get(f"{base}/api/health").json().get("ready"):
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - t0 > 600:
                    raise SystemExit("the app was not ready within 600 s")
                time.sleep(0.5)
        print(f"app ready in {time.perf_counter() - t0:.0f} s, {rss_mib(app.pid):.0f} MiB resident", flush=True)
        print(f"{'requests':>8} {'rss MiB':>8} {'seconds':>8}  statuses so far", flush=True)
        rng = random.Random(args.seed)
        soak = Soak(base, rng)
        browser = Browser(base, rng) if args.browser_every else None
        kinds = [k for share, k in MIX for _ in range(share)]
        t0 = time.perf_counter()
        for i in range(1, args.requests + 1):
            kind = "browser" if browser and i % args.browser_every == 0 else rng.choice(kinds)
            try:
                code = browser.visit() if kind == "browser" else getattr(soak, kind)()
            except Exception as e:  # noqa: BLE001 - counted and shown: a soak keeps going
                code = type(e).__name__
            statuses[f"{kind} {code}"] += 1
            if i % args.every == 0 or i == args.requests or i == 100:
                point = {"requests": i, "rss_mib": round(rss_mib(app.pid), 1), "seconds": round(time.perf_counter() - t0, 1)}
                series.append(point)
                errors = sum(n for k, n in statuses.items() if not k.endswith((" 200", " 429")))
                print(f"{i:>8} {point['rss_mib']:>8.1f} {point['seconds']:>8.0f}  errors {errors}", flush=True)
        if browser:
            browser.close()
    finally:
        stop(app)
        log.close()
    if not series:
        return
    first = next((p for p in series if p["requests"] == 100), series[0])
    after_100, end = first["rss_mib"], series[-1]["rss_mib"]
    change = (end - after_100) / after_100
    print("statuses:", json.dumps(dict(sorted(statuses.items())), ensure_ascii=False))
    print(f"resident memory after {first['requests']} requests {after_100:.0f} MiB, at the end ({series[-1]['requests']}) "
          f"{end:.0f} MiB, peak {max(p['rss_mib'] for p in series):.0f} MiB: {change:+.1%} "
          f"({'within' if abs(change) <= 0.10 else 'NOT within'} 10%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"series": series, "statuses": statuses, "after_100_mib": after_100,
                                               "end_mib": end, "change": round(change, 4)}, indent=1))
    if args.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
