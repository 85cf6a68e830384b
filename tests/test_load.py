"""scripts/load_test.py: a short, bounded run against a live app on 127.0.0.1 gives no errors."""
from __future__ import annotations

import pytest

import load_test  # scripts/ is on the test path (pyproject: pythonpath)
from rag.serving.service import Service

from conftest import SEEDS, serve_app


@pytest.fixture(scope="module")
def live_url(seed_index, tmp_path_factory):
    svc = Service(SEEDS, seed_index, feedback_dir=tmp_path_factory.mktemp("feedback"))
    svc.start()
    with serve_app(svc) as url:
        yield url


def test_few_users_get_no_errors(live_url):
    res, wall = load_test.load(live_url, users=3, seconds=3, requests=45, ask_share=0.35, chat_share=0.3)
    assert load_test.ok(res), (dict(res.statuses), dict(res.errors))
    n = sum(res.statuses.values())
    assert 0 < n <= 45 and sum(len(v) for v in res.latencies.values()) == n


def test_failures_are_counted(live_url):
    """A wrong base path gives 404s, which ok() rejects (so the test above can fail)."""
    res, _ = load_test.load(live_url + "/nowhere", users=1, seconds=2, requests=3, ask_share=0.5, chat_share=0)
    assert not load_test.ok(res) and sum(res.statuses.values()) == 3


def test_the_locust_runner_reads_its_mix_cpu_time_and_locust_csv(tmp_path):
    """scripts/load_locust.py's pieces that need no locust: the mix, /proc CPU time, locust's CSV."""
    import os
    import time

    import load_locust

    assert load_locust.weights("ask:4, search:4,chat:2") == {"ask": 4, "search": 4, "chat": 2}
    with pytest.raises(ValueError, match="weights part 'talk:1': expected kind:weight with kind ask, search or chat"):
        load_locust.weights("ask:1,talk:1")
    before, t0 = load_locust.cpu_seconds(os.getpid()), time.process_time()
    while time.process_time() - t0 < 0.05:
        pass
    assert load_locust.cpu_seconds(os.getpid()) > before
    (tmp_path / "x_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
        "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
        "POST,POST /api/ask,20,0,850,880.7,49.7,1612.2,1555.8,2.61,0.0,850,1200,1200,1300,1300,1600,1600,1600,1600,1600,1600\n")
    (tmp_path / "x_failures.csv").write_text("Method,Name,Error,Occurrences\nPOST,POST /api/ask,status 503,2\n")
    assert load_locust.locust_stats(tmp_path / "x")["POST /api/ask"] == {
        "requests": 20, "failures": 0, "rps": 2.61, "p50_ms": 850.0, "p95_ms": 1600.0, "max_ms": 1612.2}
    assert load_locust.locust_failures(tmp_path / "x") == ["POST /api/ask: status 503 ×2"]
