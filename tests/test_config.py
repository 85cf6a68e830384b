"""Config: defaults, validation messages that name the field, and the environment read only by from_env."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag import Config, ConfigError


@pytest.mark.parametrize("changes, message", [
    ({"chunk_size": 10}, "chunk_size must be at least 20"),
    ({"chunk_overlap": 500}, "chunk_overlap must be >= 0 and less than chunk_size"),
    ({"rrf_k": 0}, "rrf_k must be at least 1"),
    ({"dense_weight": 0, "keyword_weight": 0}, "dense_weight and keyword_weight"),
    ({"decline_threshold": 1.5}, "decline_threshold must be a probability"),
    ({"vector_storage": "int4"}, "vector_storage must be float16 or float32, got .int4."),
    ({"engine": "elastic"}, "engine must be one of local, milvus"),
    ({"engine": "milvus"}, "engine 'milvus' needs milvus_uri"),
    ({"bm25_k1": 0}, "bm25_k1 must be > 0"),
    ({"duplicate_threshold": 0}, "duplicate_threshold must be in"),
    ({"index_dir": ""}, "index_dir must be a folder path"),
    ({"nonsense": 1}, "unknown config field"),
    ({"llm_timeout": 0}, "llm_timeout must be positive"),
    ({"short_alone_confidence": 1.5}, "short_alone_confidence must be between 0 and 1"),
])
def test_invalid_values_are_refused_with_the_field_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config().with_(**changes)


def test_library_defaults_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("RAG_CHUNK_SIZE", "300")
    monkeypatch.setenv("RAG_INDEX_DIR", "/tmp/elsewhere")
    assert Config().chunk_size == 220 and Config().index_dir == Path("index")
    env = Config.from_env()
    assert env.chunk_size == 300 and env.index_dir == Path("/tmp/elsewhere")
    assert Config.from_env(chunk_size=250).chunk_size == 250


def test_from_env_names_a_bad_variable(monkeypatch):
    monkeypatch.setenv("RAG_CHUNK_SIZE", "big")
    with pytest.raises(ConfigError, match="RAG_CHUNK_SIZE='big'"):
        Config.from_env()


def test_secrets_are_left_out_of_repr(monkeypatch):
    monkeypatch.setenv("RAG_ADMIN_TOKEN", "t0ken")
    cfg = Config.from_env(llm_api_key="sk-secret", milvus_token="m-secret")
    assert cfg.admin_token == "t0ken"
    shown = repr(cfg)
    assert "t0ken" not in shown and "sk-secret" not in shown and "m-secret" not in shown
    assert "llm_model" in shown  # the rest is shown


def test_engine_names_come_from_the_engine_registry():
    from rag.engines.base import ENGINES

    with pytest.raises(ConfigError, match=f"engine must be one of {', '.join(sorted(ENGINES))}, got 'nope'"):
        Config(engine="nope")


def test_the_cli_takes_its_folders_from_the_config(monkeypatch, tmp_path, capsys):
    from rag.cli import main

    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "elsewhere"))
    assert main(["search", "x"]) == 2
    assert str(tmp_path / "elsewhere") in capsys.readouterr().err
