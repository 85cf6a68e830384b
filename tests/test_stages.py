"""rag.search.stages: a search stage is one class plus one registry line, and Retriever.search runs it
on the fused, over-fetched passages before duplicates are folded (hashing embedder, no model)."""
from __future__ import annotations

import pytest

import rag
from rag.search.fusion import FUSION
from rag.search.stages import STAGES

from conftest import TEST_DATA

Q = "武汉长江新区首批项目签约"


class Reverse:
    """A toy stage: the passages in reverse order, and what it was given kept for the test."""

    def __init__(self, retriever: rag.Retriever) -> None:
        self.retriever = retriever
        self.seen: list[tuple[rag.Query, list[rag.Passage]]] = []

    def __call__(self, query: rag.Query, passages: list[rag.Passage]) -> list[rag.Passage]:
        self.seen.append((query, passages))
        return passages[::-1]


class DropFirstArticle:
    """Another: the first passage's article left out altogether."""

    def __init__(self, retriever: rag.Retriever) -> None:
        pass

    def __call__(self, query, passages):
        return [p for p in passages if p.doc_id != passages[0].doc_id]


class Inventor:
    """A broken stage: returns a passage it was not given."""

    def __init__(self, retriever) -> None:
        pass

    def __call__(self, query, passages):
        return [rag.Passage("x", "made up", None, None, "text", 1.0, chunk_id="nowhere")]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stages-index")
    rag.Retriever.build(TEST_DATA / "tiny", folder, embedder="hash")
    return folder


def test_a_registered_stage_reorders_what_search_returns(index, monkeypatch):
    monkeypatch.setitem(STAGES, "reverse", Reverse)  # the one registry line
    plain = rag.Retriever.load(index, rerank=False)  # fusion alone (the reranker has its own tests)
    staged = rag.Retriever.load(index, stages=("reverse",), rerank=False)
    (stage,) = staged.stages
    assert isinstance(stage, Reverse) and stage.retriever is staged and plain.stages == ()

    k = 2
    before = plain.search(Q, k=50)  # all there is, best first
    after = staged.search(Q, k=k)
    query, given = stage.seen[-1]
    # the stage saw the question as a Query and the over-fetched passages, best first, with their evidence
    assert query.text == Q and query.tokens and query.folded
    assert len(given) == min(len(before), staged.config.overfetch * k)
    assert [p.chunk_id for p in given][:k] == [p.chunk_id for p in before][:k]
    assert all(p.chunk_id and (p.dense_score is not None or p.keyword_score is not None) for p in given)
    # and what it returned is what search returns, cut to k
    assert [p.chunk_id for p in after] == [p.chunk_id for p in given[::-1]][:k]


def test_stages_run_in_the_order_config_names_them(index, monkeypatch):
    monkeypatch.setitem(STAGES, "reverse", Reverse)
    monkeypatch.setitem(STAGES, "drop_first", "test_stages:DropFirstArticle")  # or "module:attribute", imported on use
    r = rag.Retriever.load(index, stages=("drop_first", "reverse"), rerank=False)
    best = rag.Retriever.load(index, rerank=False).search(Q, k=1)[0].doc_id
    passages = r.search(Q, k=3)
    _, given = r.stages[1].seen[-1]  # reverse ran second, on what drop_first left
    assert given and best not in {p.doc_id for p in given}
    assert [p.chunk_id for p in passages] == [p.chunk_id for p in given[::-1]][:3]


def test_a_stage_that_drops_an_article_drops_it_from_the_results(index, monkeypatch):
    monkeypatch.setitem(STAGES, "drop_first", DropFirstArticle)
    best = rag.Retriever.load(index).search(Q, k=1)[0].doc_id
    assert best not in {p.doc_id for p in rag.Retriever.load(index, stages=["drop_first"]).search(Q, k=5)}


def test_unknown_stage_is_a_config_error_naming_it(index):
    with pytest.raises(rag.ConfigError, match="unknown search stage 'nope'"):
        rag.Retriever.load(index, stages=("nope",))
    with pytest.raises(rag.ConfigError, match="stages must be a tuple of stage names"):
        rag.Config(stages="rerank")


def test_a_stage_may_not_invent_passages(index, monkeypatch):
    monkeypatch.setitem(STAGES, "inventor", Inventor)
    with pytest.raises(rag.RagError, match="returned passages it was not given"):
        rag.Retriever.load(index, stages=("inventor",)).search(Q, k=2)


def test_stages_and_overfetch_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAG_STAGES", "rerank, reverse")
    monkeypatch.setenv("RAG_OVERFETCH", "5")
    cfg = rag.Config.from_env()
    assert cfg.stages == ("rerank", "reverse") and cfg.overfetch == 5
    with pytest.raises(rag.ConfigError, match="overfetch must be at least 1"):
        rag.Config(overfetch=0)


def test_every_fusion_method_config_allows_has_its_function():
    import typing

    allowed = typing.get_args(typing.get_type_hints(rag.Config)["fusion"])
    assert set(allowed) == set(FUSION)
