"""The keyword index of a growing archive: immutable BM25 segments, as search engines keep them.

A build writes one segment. Adding articles writes one more, over the new rows only, so an
update costs the tokens of the new articles, not a new index over the whole archive; rows
that an update removes stay in their segment, marked dead, until that segment is rebuilt.
Each segment scores its own documents with its own BM25 statistics, and every query token's
part is rescaled from the segment's IDF to the whole index's (document frequencies summed
over the segments), so a document scores (almost) as it would in one index built at once:
only the length normalisation keeps its segment's average length until the segments merge.

On disk, each segment is a folder of the generation (``bm25`` for the first); a segment
that did not change since the generation it was loaded from is hard-linked from there,
not written again. ``keyword_segments.json`` lists the segments with, for each, the row of
every document (-1 for dead ones) in ``<name>.rows.npy``.

Example::

    ks = KeywordSegments.build([["江岸", "签约"], ["宜昌", "开工"]])
    ks = ks.updated(keep=np.array([0, 1]), new_tokens=[["九江", "绿道"]], tokens_of=tokenize_rows)
    scores, rows = ks.search(["绿道"], k=1)       # rows are positions in the engine's row list
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import IndexCorruptError
from .keyword_index import KeywordIndex, bm25_idf, top_k

__all__ = ["KeywordSegments"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """One immutable BM25 index over some rows: ``rows[i]`` is the engine row of its document
    ``i`` (-1 once that row is gone), ``dead_df`` the document frequencies of its gone
    documents; ``origin`` is the generation folder it was loaded from."""

    index: KeywordIndex
    rows: np.ndarray
    name: str
    origin: Path | None = None
    dead_df: dict[str, int] = field(default_factory=dict)

    @cached_property
    def live(self) -> int:
        return int((self.rows >= 0).sum())


class KeywordSegments:
    """BM25 over the engine's rows, kept as a few immutable segments (see the module doc).

    ``max_segments``: more segments than this are merged (all but the largest, which only a
    build or heavy deletion rewrites); a segment with more than ``max_dead`` of its documents
    gone is rebuilt from its live rows.
    """

    FILE = "keyword_segments.json"
    FIRST = KeywordIndex.DIR

    def __init__(self, segments: list[Segment], n_rows: int, *, k1: float = 1.2, b: float = 0.75,
                 max_segments: int = 8, max_dead: float = 0.5) -> None:
        self.segments = segments
        self.n_docs = n_rows  # live rows: the engine's
        self.k1, self.b = k1, b
        self.max_segments, self.max_dead = max_segments, max_dead
        df: Counter[str] = Counter()
        for seg in segments:
            df.update(seg.index.df)
            df.subtract(seg.dead_df)
        self.df = {t: n for t, n in df.items() if n > 0}  # over the live rows, as one index would count

    @classmethod
    def build(cls, docs_tokens: list[list[str]], *, k1: float = 1.2, b: float = 0.75, **limits) -> "KeywordSegments":
        if not docs_tokens:
            return cls([], 0, k1=k1, b=b, **limits)
        first = Segment(KeywordIndex.build(docs_tokens, k1=k1, b=b), np.arange(len(docs_tokens), dtype=np.int64), cls.FIRST)
        return cls([first], len(docs_tokens), k1=k1, b=b, **limits)

    # --- reading ------------------------------------------------------------------------------
    def idf(self, token: str) -> float:
        """Smoothed inverse document frequency of a token over the whole index (high for rare or unseen ones)."""
        return float(np.log(1 + (self.n_docs + 1) / (self.df.get(token, 0) + 0.5)))

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every row (0 where no query token occurs)."""
        if len(self.segments) == 1 and len(self.segments[0].rows) == self.n_docs and self.segments[0].live == self.n_docs:
            return self.segments[0].index.scores(tokens)  # one whole segment: rows are its documents
        out = np.zeros(self.n_docs, np.float32)
        whole = {t: bm25_idf(self.df.get(t, 0), self.n_docs) for t in set(tokens)}
        for seg in self.segments:
            if not any(t in seg.index.df for t in tokens):
                continue
            s = seg.index.scores(tokens, weight=lambda t, seg=seg: whole[t] / max(seg.index.bm25_idf(t), 1e-9))
            live = seg.rows >= 0
            out[seg.rows[live]] = s[live]
        return out

    def search(self, tokens: list[str], k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the top-k rows, best first; empty when no token is known."""
        if self.n_docs == 0 or not any(t in self.df for t in tokens):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        return top_k(self.scores(tokens), k, allowed)

    # --- changing -----------------------------------------------------------------------------
    def updated(self, keep: np.ndarray, new_tokens: list[list[str]], tokens_of: Callable[[np.ndarray], list[list[str]]],
                gone_tokens_of: Callable[[np.ndarray], list[list[str]]]) -> "KeywordSegments":
        """The index after keeping the rows ``keep`` (old positions, in order; they become rows
        0..len(keep)-1) and appending one row per ``new_tokens`` entry. ``tokens_of(rows)``
        gives the tokens of new-numbered rows when a segment has to be rebuilt or merged,
        ``gone_tokens_of(rows)`` those of old rows that go (their terms leave the frequencies)."""
        keep = np.asarray(keep, dtype=np.int64)
        remap = np.full(self.n_docs + 1, -1, dtype=np.int64)  # the extra slot maps -1 to -1
        remap[keep] = np.arange(len(keep), dtype=np.int64)
        segments = []
        for seg in self.segments:
            rows = remap[seg.rows]
            if not (rows >= 0).any():
                continue  # every document gone
            gone = seg.rows[(seg.rows >= 0) & (rows < 0)]
            dead_df = Counter(seg.dead_df)
            for toks in gone_tokens_of(gone) if len(gone) else []:
                dead_df.update(set(toks))
            moved = replace(seg, rows=rows, dead_df=dict(dead_df))
            if (rows < 0).mean() > self.max_dead:
                moved = self._segment(rows[rows >= 0], tokens_of, seg.name if seg.name == self.FIRST else None)
                log.info("keyword segment %s rebuilt over its %d live rows", seg.name, len(moved.rows))
            segments.append(moved)
        n_rows = len(keep) + len(new_tokens)
        if new_tokens:
            name = None if segments else self.FIRST
            index = KeywordIndex.build(new_tokens, k1=self.k1, b=self.b)
            segments.append(Segment(index, np.arange(len(keep), n_rows, dtype=np.int64), name or _fresh_name()))
        if len(segments) > self.max_segments:
            largest = max(segments, key=lambda s: s.live)
            small = [s for s in segments if s is not largest]
            rows = np.sort(np.concatenate([s.rows[s.rows >= 0] for s in small]))
            merged = self._segment(rows, tokens_of, None)
            log.info("merged %d keyword segments (%d rows)", len(small), len(rows))
            segments = [largest, merged]
        return KeywordSegments(segments, n_rows, k1=self.k1, b=self.b, max_segments=self.max_segments, max_dead=self.max_dead)

    def _segment(self, rows: np.ndarray, tokens_of: Callable[[np.ndarray], list[list[str]]], name: str | None) -> Segment:
        index = KeywordIndex.build(tokens_of(rows), k1=self.k1, b=self.b)
        return Segment(index, np.asarray(rows, dtype=np.int64), name or _fresh_name())

    # --- files --------------------------------------------------------------------------------
    def save(self, folder: Path) -> dict:
        """Write the segments into a generation folder: unchanged ones as hard links to the files
        they were loaded from, new ones by bm25s; returns what the manifest records."""
        folder = Path(folder)
        listing = []
        for seg in self.segments:
            target = folder / seg.name
            if seg.origin is not None and (seg.origin / seg.name).is_dir():
                _link_tree(seg.origin / seg.name, target)
            else:
                seg.index.save(folder, seg.name)
            np.save(folder / f"{seg.name}.rows.npy", seg.rows)
            listing.append({"name": seg.name, "documents": int(seg.index.n_docs), "live": seg.live, "dead_df": seg.dead_df})
        with open(folder / self.FILE, "w", encoding="utf-8") as f:
            json.dump({"rows": self.n_docs, "segments": listing}, f, ensure_ascii=False, indent=1)
        return {"segments": len(self.segments), "dead": int(sum(len(s.rows) - s.live for s in self.segments))}

    @classmethod
    def load(cls, folder: Path, *, k1: float = 1.2, b: float = 0.75, **limits) -> "KeywordSegments":
        folder = Path(folder)
        listing = folder / cls.FILE
        if not listing.exists():  # an index written before segments: one segment, its rows in order
            index = KeywordIndex.load(folder)
            first = Segment(index, np.arange(index.n_docs, dtype=np.int64), cls.FIRST, origin=folder)
            return cls([first], index.n_docs, k1=k1, b=b, **limits)
        try:
            meta = json.loads(listing.read_text(encoding="utf-8"))
            segments = []
            for entry in meta["segments"]:
                index = KeywordIndex.load(folder, entry["name"])
                rows = np.load(folder / f"{entry['name']}.rows.npy")
                if len(rows) != index.n_docs:
                    raise IndexCorruptError(f"{folder / entry['name']}: {index.n_docs} documents but {len(rows)} rows")
                segments.append(Segment(index, rows.astype(np.int64), entry["name"], origin=folder,
                                        dead_df={str(t): int(n) for t, n in entry.get("dead_df", {}).items()}))
            n_rows = int(meta["rows"])
        except (OSError, ValueError, KeyError) as e:
            raise IndexCorruptError(f"{listing}: cannot read the keyword segments ({e})") from e
        live = np.concatenate([s.rows[s.rows >= 0] for s in segments]) if segments else np.zeros(0, np.int64)
        if len(live) != n_rows or (n_rows and not np.array_equal(np.sort(live), np.arange(n_rows))):
            raise IndexCorruptError(f"{listing}: the segments do not cover rows 0..{n_rows - 1} once each")
        return cls(segments, n_rows, k1=k1, b=b, **limits)


def _fresh_name() -> str:
    return f"{KeywordSegments.FIRST}-{uuid.uuid4().hex[:8]}"


def _link_tree(src: Path, dest: Path) -> None:
    """``dest`` as a tree of hard links to the files of ``src`` (copies where links are impossible)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_dir():
            _link_tree(item, dest / item.name)
            continue
        try:
            os.link(item, dest / item.name)
        except OSError:
            shutil.copy2(item, dest / item.name)
