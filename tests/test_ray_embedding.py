"""Ray builds: chunks embedded on a local Ray through Ray Data give the single-process index."""
from __future__ import annotations

import logging

import numpy as np
import pytest

import rag
from rag.cli import main
from rag.config import Config
from rag.errors import ConfigError

from conftest import SEEDS

pytest.importorskip("ray", reason="Ray builds need pip install 'rag-news[ray]'")


def test_ray_local_build_equals_single_process(retriever, tmp_path, caplog):
    """`rag build --ray local` with 2 workers: same chunks, bit-identical vectors, same manifest embedder."""
    index = tmp_path / "index"
    with caplog.at_level(logging.INFO, logger="rag.embedding.ray_embedding"):
        assert main(["build", "--data", str(SEEDS), "--index", str(index), "--ray", "local", "--ray-workers", "2", "-q"]) == 0
    assert f"embedded {len(retriever.chunks)} chunks on Ray (local, 2 workers)" in caplog.text
    built = rag.Retriever.load(index)
    assert built.manifest["build"]["embedded"] == len(retriever.chunks)
    assert [c.id for c in built.chunks] == [c.id for c in retriever.chunks]
    assert built.manifest["embedder"] == retriever.manifest["embedder"]
    keys = [f"{c.doc_id}@{c.start}" for c in retriever.chunks]
    ours, theirs = built.engine.vectors(keys), retriever.engine.vectors(keys)
    assert set(ours) == set(keys)
    for k in keys:
        assert np.array_equal(ours[k], theirs[k]), k
    import ray

    assert not ray.is_initialized()  # the Ray it started for the build is stopped


def test_ray_embedder_needs_an_address():
    from rag.embedding import make_embedder
    from rag.embedding.ray_embedding import RayEmbedder

    with pytest.raises(ConfigError, match="ray_address is empty"):
        RayEmbedder(Config(), make_embedder("e5-int8"))


def test_ray_workers_is_validated():
    with pytest.raises(ConfigError, match="ray_workers must be a whole number of at least 1"):
        Config(ray_workers=0)


def test_missing_ray_names_the_extra(monkeypatch):
    import sys

    from rag.engines.base import optional

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "rag.embedding.ray_embedding", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'rag-news\[ray\]'"):
        optional("ray", "rag.embedding.ray_embedding")
