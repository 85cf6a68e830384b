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
