"""Locust users for the reader's load test: each user asks (`POST /api/ask`), searches (`POST /api/search`)
or takes a chat turn through the page's own Gradio endpoint (`POST /gradio_api/call/ask`, then its
event stream until `complete`), one request at a time with no pause between them.

Run by scripts/load_locust.py (which starts the app, measures the CPU cost of each request and prints
the comparison with the ideal throughput); by hand, against a running app on 127.0.0.1::

    .venv/bin/locust -f scripts/locustfile.py --headless -u 50 -r 50 -t 150s --host http://127.0.0.1:7860

Weights: ``LOAD_WEIGHTS="ask:4,search:4,chat:2"`` (the default, the mix of scripts/load_test.py).
"""
from __future__ import annotations

import json
import os
import random
import time

import requests
from locust import HttpUser, constant, task

from load_locust import CHECKED, NAMES, QUESTIONS, SEARCHES, weights  # the runner's, beside this file


WEIGHTS = weights(os.environ.get("LOAD_WEIGHTS", "ask:4,search:4,chat:2"))


def chat_turn(session: requests.Session, base: str, question: str, timeout: float = 120) -> tuple[str, int]:
    """One chat turn as the page takes it: (outcome, bytes read); outcome ``complete`` when it worked."""
    r = session.post(f"{base}/gradio_api/call/ask", json={"data": [question, [], [], "", "", 3]}, timeout=timeout)
    if r.status_code != 200:
        return f"call {r.status_code}", len(r.content)
    event_id = r.json()["event_id"]
    size, event = 0, None
    with session.get(f"{base}/gradio_api/call/ask/{event_id}", stream=True, timeout=timeout) as stream:
        if stream.status_code != 200:
            return f"events {stream.status_code}", 0
        for line in stream.iter_lines(decode_unicode=True):
            size += len(line or "")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    return f"error event {line[5:].strip()[:80]}", size
                if question == CHECKED[0] and CHECKED[1] not in str(json.loads(line[5:])):  # JSON escapes the text
                    return "complete without the expected answer", size
                return "complete", size
    return "stream ended without complete", size


class Reader(HttpUser):
    """One reader: one request in flight, the next as soon as the last is answered."""

    wait_time = constant(0)

    def on_start(self) -> None:
        self.rnd = random.Random()
        self.plain = requests.Session()  # the chat's two requests are timed as one, not recorded apiece

    @task(WEIGHTS.get("ask", 0))
    def ask(self) -> None:
        q = self.rnd.choice(QUESTIONS)
        with self.client.post("/api/ask", json={"question": q}, name=NAMES["ask"], catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}: {r.text[:120]}")
            elif q == CHECKED[0] and CHECKED[1] not in r.text:
                r.failure("answer without the expected text")

    @task(WEIGHTS.get("search", 0))
    def search(self) -> None:
        body = {"query": self.rnd.choice(SEARCHES), "k": 5}
        with self.client.post("/api/search", json=body, name=NAMES["search"], catch_response=True) as r:
            if r.status_code != 200 or not json.loads(r.text).get("passages"):
                r.failure(f"status {r.status_code}: {r.text[:120]}")

    @task(WEIGHTS.get("chat", 0))
    def chat(self) -> None:
        t0 = time.perf_counter()
        exc: Exception | None = None
        size = 0
        try:
            outcome, size = chat_turn(self.plain, self.host.rstrip("/"), self.rnd.choice(QUESTIONS))
            if outcome != "complete":
                exc = RuntimeError(outcome)
        except (requests.RequestException, ValueError, KeyError) as e:
            exc = e
        self.environment.events.request.fire(request_type="POST", name=NAMES["chat"], response_time=(time.perf_counter() - t0) * 1000,
                                             response_length=size, exception=exc, context={})
