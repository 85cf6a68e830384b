"""Chunking: articles → overlapping chunks along Chinese sentence boundaries."""
from __future__ import annotations

from ..config import Config
from ..records import Article, Chunk, content_hash
from ..text import split_sentences

__all__ = ["chunk_article", "chunk_articles", "embed_text"]


def embed_text(chunk: Chunk, *, title_in_chunk: bool = True) -> str:
    """What gets embedded and keyword-indexed for a chunk: the title gives it context."""
    if title_in_chunk and chunk.title and not chunk.text.startswith(chunk.title):
        return f"{chunk.title}\n{chunk.text}"
    return chunk.text


def _pieces(text: str, size: int) -> list[tuple[int, int]]:
    """Sentence spans, with sentences longer than ``size`` cut at commas, then hard."""
    out: list[tuple[int, int]] = []
    for s, e in split_sentences(text):
        if not text[s:e].strip():
            continue
        while e - s > size:
            window = text[s : s + size]
            cut = max(window.rfind(c) for c in "，,、：:")
            cut = cut + 1 if cut >= size // 3 else size
            out.append((s, s + cut))
            s += cut
        if e > s:
            out.append((s, e))
    return out


def chunk_article(article: Article, size: int = 220, overlap: int = 60, *, title_in_chunk: bool = True) -> list[Chunk]:
    """Split an article into chunks of about ``size`` characters of whole sentences.

    Consecutive chunks share trailing sentences of up to ``overlap`` characters.
    Every chunk satisfies ``article.text[chunk.start:chunk.end] == chunk.text``.
    """
    text = article.text
    pieces = _pieces(text, size)
    chunks: list[Chunk] = []
    i = 0
    while i < len(pieces):
        start = pieces[i][0]
        j = i
        while j + 1 < len(pieces) and pieces[j + 1][1] - start <= size:
            j += 1
        end = pieces[j][1]
        # trim surrounding whitespace while keeping offsets exact
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        body = text[start:end]
        if body:
            draft = Chunk(id="", doc_id=article.id, text=body, start=start, end=end, title=article.title)
            cid = content_hash(embed_text(draft, title_in_chunk=title_in_chunk))
            chunks.append(Chunk(id=cid, doc_id=article.id, text=body, start=start, end=end, title=article.title))
        if j + 1 >= len(pieces):
            break
        # step back over whole sentences that fit in the overlap, but always advance
        k = j + 1
        while k - 1 > i and pieces[j][1] - pieces[k - 1][0] <= overlap:
            k -= 1
        i = k
    return chunks


def chunk_articles(articles: list[Article], config: Config) -> list[Chunk]:
    """Chunks of all articles, in article order."""
    out: list[Chunk] = []
    for a in articles:
        out += chunk_article(a, config.chunk_size, config.chunk_overlap, title_in_chunk=config.title_in_chunk)
    return out
