"""rag.reading.chunking: chunks are exact, sentence-aligned spans that together cover the article."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from rag.reading.chunking import chunk_article
from rag.records import Article
from rag.reading.sources import read_articles

from conftest import SEEDS

_chars = st.one_of(
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.sampled_from("，。！？；、…“”（） \n\t\u3000abc123"),
)


def _check(article: Article, chunks) -> None:
    text = article.text
    covered = [False] * len(text)
    for c in chunks:
        assert 0 <= c.start < c.end <= len(text)
        assert text[c.start : c.end] == c.text
        assert c.doc_id == article.id and c.title == article.title
        for i in range(c.start, c.end):
            covered[i] = True
    lost = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not lost, f"characters not in any chunk at {lost[:10]}: {[text[i] for i in lost[:10]]}"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(_chars, max_size=700),
    size=st.integers(min_value=5, max_value=300),
    overlap=st.integers(min_value=0, max_value=120),
)
def test_chunks_are_exact_and_cover_the_text(text, size, overlap):
    a = Article(id="x", title="标题", text=text)
    _check(a, chunk_article(a, size=size, overlap=overlap))


def test_seed_articles_chunk_within_size():
    for a in read_articles(SEEDS).articles:
        chunks = chunk_article(a, size=220, overlap=60)
        _check(a, chunks)
        assert all(len(c.text) <= 220 for c in chunks)
        assert len(chunks) >= len(a.text) // 220


def test_neighbouring_chunks_share_whole_sentences():
    sents = [f"第{i}句话说明长江保护工作的进展。" for i in range(12)]
    a = Article(id="y", title="t", text="".join(sents))
    chunks = chunk_article(a, size=60, overlap=20)
    assert len(chunks) > 3
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start < prev.end  # overlap
        assert nxt.text.startswith("第")  # begins at a sentence


def test_chunk_ids_are_content_hashes():
    a = Article(id="a", title="t", text="长江保护。黄河治理。")
    b = Article(id="b", title="t", text="长江保护。黄河治理。")
    assert [c.id for c in chunk_article(a)] == [c.id for c in chunk_article(b)]
    c = Article(id="c", title="t", text="长江保护。黄河治理！")
    assert chunk_article(a)[0].id != chunk_article(c)[0].id
