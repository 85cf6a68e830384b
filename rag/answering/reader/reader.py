"""Answer-span reading: the span of a retrieved passage that answers the question, with a calibrated confidence.

A learned span ranker: candidate spans (word sequences inside a clause, lists, dates, amounts, titles)
are scored by gradient-boosted trees over lexical and alignment features (``rag.answering.reader.features``);
the trees are shipped as numpy arrays in ``rag/answering/reader/model/`` and evaluated here with numpy only.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import RagError
from ...config import Config
from ..extractive import Sentence, select_sentences, sentence_spans
from ...query import Query
from .extent import EXTENT_FILE, Extent
from .features import (FEATURE_NAMES, LEX_TABLES, NF, apply_lexical, question_info,
                              sentence_candidates)
from .neural import NEURAL_FEATURES, PairEncoder, SpanHead, neural_features
from .rules import COUNTED_CONFIDENCE, SHAPES_BY_KIND, apply_rules, counted, whole_date, whole_list, whole_number, widen
from ...records import Passage
from ...text import is_traditional, to_simplified
from ...trees import Trees

__all__ = ["Span", "Reader", "NeuralRanker", "Trees", "Candidates", "collect_candidates", "MODEL_DIR", "FORMAT_VERSION"]

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "model"
TOP_LAYERS_FILE = "top_layers.npz"  # the encoder's top layers fine-tuned with the span head
FORMAT_VERSION = 1
MAX_SENTENCES = 8


@dataclass(frozen=True)
class Span:
    """An answer span: ``passages[passage].text[start:end] == text``; ``sentence_start`` /
    ``sentence_end`` delimit the sentence holding it; ``confidence`` is the calibrated probability
    that the span is the answer (character F1 >= 0.8 with a reference answer)."""

    text: str
    passage: int
    start: int
    end: int
    sentence_start: int
    sentence_end: int
    confidence: float


@dataclass
class Candidates:
    """All candidate spans of a question: offsets (in their passage) and the feature matrix."""

    passage: np.ndarray  # (n,) int
    sentence: np.ndarray  # (n, 2) sentence offsets in the passage
    spans: np.ndarray  # (n, 2) span offsets in the passage
    features: np.ndarray  # (n, NF) float32
    word_keys: np.ndarray  # (n, 4) int64

    def __len__(self) -> int:
        return len(self.passage)

    def sentence_keys(self) -> list[tuple[int, int, int]]:
        """(passage, start, end) of each candidate's sentence."""
        return list(zip(self.passage.tolist(), self.sentence[:, 0].tolist(), self.sentence[:, 1].tolist()))

    def neural_features(self, read: dict) -> np.ndarray:
        """:func:`rag.answering.reader.neural.neural_features` of the candidates, from the span head's scores of
        their sentences (``read[(passage, start, end)]``)."""
        return neural_features(self.sentence_keys(), self.spans - self.sentence[:, :1], read)


def question_for_head(question: str, texts: list[str]) -> str:
    """The question as the span head reads it with ``texts``: a Traditional question about Simplified
    articles in Simplified (the head learnt from questions in the script of their paragraphs, CMRC
    Simplified and DRCD Traditional). A Simplified question about Traditional articles is read as
    asked: putting the sentences into Simplified read worse (DRCD held-out asked in Simplified, short
    F1 0.695 -> 0.688), and putting the question into Traditional read a little better (0.703) but
    needs s2t, whose phrase tables cost the seed app 12 MiB of its peak."""
    if is_traditional(question) and sum(map(is_traditional, texts)) * 2 <= len(texts):
        return to_simplified(question)
    return question


def _sentences_of(question: Query, passages: list[Passage], sentences: list[Sentence] | None,
                  max_sentences: int) -> list[tuple[int, int, int, int]]:
    """(passage, start, end, given rank) of the sentences to read."""
    if sentences is not None:
        out, seen = [], set()
        for s in sentences:
            key = (s.passage, s.start, s.end)
            if key in seen or not (0 <= s.passage < len(passages)):
                continue
            seen.add(key)
            out.append((s.passage, s.start, s.end, len(out)))
            if len(out) >= max_sentences:
                break
        return out
    # every sentence, ranked as ``select_sentences`` would rank them without word weights
    ranked = [(s.passage, s.start, s.end) for s in select_sentences(question, passages, lambda w: 1.0, Config())]
    rank = {key: r for r, key in enumerate(ranked)}
    out = [(pi, s, e, rank.get((pi, s, e), len(ranked))) for pi, p in enumerate(passages)
           for s, e in sentence_spans(p.text)]
    return sorted(out, key=lambda x: x[3])


def collect_candidates(question: Query, passages: list[Passage], sentences: list[Sentence] | None = None, *,
                       max_sentences: int = MAX_SENTENCES, lex: dict[str, np.ndarray] | None = None) -> Candidates:
    """Candidate spans and features of the given sentences (the first ``max_sentences``), or of
    every sentence of the passages when ``sentences`` is None (ranked by ``select_sentences`` with
    equal word weights, as the features expect a ranking)."""
    q = question_info(question)
    chosen = _sentences_of(question, passages, sentences, max_sentences)
    texts = [passages[pi].text[s:e] for pi, s, e, _ in chosen]
    # a sentence's rank among those read, by the share of the question's bigrams it holds
    cover = [sum(1 for g in q.bigrams if g in t) for t in texts]
    order = {i: r for r, i in enumerate(sorted(range(len(chosen)), key=lambda i: -cover[i]))}
    parts = []
    for i, ((pi, s, e, given), text) in enumerate(zip(chosen, texts)):
        lead = len(text) - len(text.lstrip())
        body = text.strip()
        if not body:
            continue
        c = sentence_candidates(body, q, sent_rank=order[i], given_rank=given, passage=pi, lex=lex)
        if len(c.spans):
            parts.append((pi, s, e, s + lead, c))
    if parts:  # how far each sentence's coverage of the question is behind the best sentence's
        gap, align, align_gap = (FEATURE_NAMES.index(n) for n in ("sent_cov_gap", "sent_align", "sent_align_gap"))
        best = max(c.sentence_coverage for *_, c in parts)
        best_align = max(float(c.features[0, align]) for *_, c in parts)
        for *_, c in parts:
            c.features[:, gap] = best - c.sentence_coverage
            c.features[:, align_gap] = best_align - c.features[:, align]
    else:
        z = np.zeros((0, 2), np.int64)
        return Candidates(np.zeros(0, np.int64), z, z, np.zeros((0, NF), np.float32), np.zeros((0, 4), np.int64))
    return Candidates(
        passage=np.concatenate([np.full(len(c.spans), pi) for pi, _, _, _, c in parts]),
        sentence=np.concatenate([np.tile([s, e], (len(c.spans), 1)) for _, s, e, _, c in parts]),
        spans=np.concatenate([c.spans + off for _, _, _, off, c in parts]),
        features=np.concatenate([c.features for *_, c in parts]),
        word_keys=np.concatenate([c.word_keys for *_, c in parts]),
    )


@dataclass(frozen=True)
class NeuralRanker:
    """The span head on the encoder's token states, and the trees that weigh its scores with the
    lexical features (``FEATURE_NAMES + NEURAL_FEATURES``)."""

    head: SpanHead
    trees: Trees
    calibration: tuple[float, float, float]


class Reader:
    """Picks the answer span from retrieved passages.

    Example::

        reader = Reader.load()
        span = reader.read(Query.of("长江生态环保产业联盟是哪一年成立的？"), passages)
        span.text, span.confidence     # '2019年6月', 0.7
    """

    PRUNE_TREES = 40  # trees that score every candidate
    PRUNE_KEEP = 64  # candidates scored by all the trees

    def __init__(self, trees: Trees, lex: dict[str, np.ndarray], calibration: tuple[float, float, float],
                 meta: dict | None = None, max_sentences: int = MAX_SENTENCES, neural: NeuralRanker | None = None,
                 extent: Extent | None = None):
        self.trees = trees
        self.lex = lex
        self.calibration = calibration
        self.meta = meta or {}
        self.max_sentences = max_sentences
        self.neural = neural
        self.extent = extent  # how much of its sentence the answer takes (with the span head's scores only)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Reader":
        """The reader saved in ``path`` (default: the weights shipped in ``rag/answering/reader/model/``)."""
        folder = Path(path) if path is not None else MODEL_DIR
        meta_path = folder / "reader.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            with np.load(folder / "trees.npz") as d:
                trees = Trees.from_arrays(d)
            with np.load(folder / "lexicon.npz") as d:
                lex = {k: d[k].astype(np.float32) for k in LEX_TABLES}
        except (OSError, ValueError, KeyError) as e:
            raise RagError(f"cannot load the reader from {folder}: {e}; retrain it with scripts/train_reader.py") from e
        if meta.get("format_version") != FORMAT_VERSION or meta.get("features") != FEATURE_NAMES:
            raise RagError(f"{meta_path}: reader format {meta.get('format_version')} or its feature list does not "
                           f"match this code (format {FORMAT_VERSION}); retrain it with scripts/train_reader.py")
        cal = meta["calibration"]
        neural = None
        if "neural" in meta:
            info = meta["neural"]
            if info.get("features") != FEATURE_NAMES + NEURAL_FEATURES:
                raise RagError(f"{meta_path}: the neural ranker's feature list does not match this code; "
                               "retrain it with scripts/train_reader.py")
            try:
                with np.load(folder / "trees_neural.npz") as d:
                    neural_trees = Trees.from_arrays(d)
                top = info.get("top_layers")
                if top and not (folder / top).is_file():
                    raise OSError(f"{folder / top} is missing")
                head = SpanHead.load(folder / "span_head.npz", folder / top if top else None)
            except (OSError, ValueError, KeyError) as e:
                raise RagError(f"cannot load the reader's span head from {folder}: {e}; retrain it with "
                               "scripts/train_reader.py") from e
            nc = info["calibration"]
            neural = NeuralRanker(head, neural_trees, (nc["a"], nc["b"], nc["c"]))
        try:
            extent = Extent.load(folder)
        except (OSError, ValueError, KeyError) as e:
            raise RagError(f"cannot load the reader's extent stage from {folder}: {e}; retrain it with "
                           "scripts/train_extent.py") from e
        return cls(trees, lex, (cal["a"], cal["b"], cal["c"]), meta, neural=neural, extent=extent)

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / "trees.npz", **self.trees.to_arrays())
        np.savez_compressed(folder / "lexicon.npz", **{k: v.astype(np.float16) for k, v in self.lex.items()})
        a, b, c = self.calibration
        info = {"format_version": FORMAT_VERSION, "features": FEATURE_NAMES,
                "calibration": {"a": a, "b": b, "c": c,
                                "formula": "sigmoid(a * score + b * (score - second_score) + c)"},
                **(meta or self.meta)}
        info["format_version"], info["features"] = FORMAT_VERSION, FEATURE_NAMES
        if self.neural is not None:
            np.savez_compressed(folder / "trees_neural.npz", **self.neural.trees.to_arrays())
            self.neural.head.save(folder / "span_head.npz")
            a, b, c = self.neural.calibration
            info["neural"] = {**info.get("neural", {}), "features": FEATURE_NAMES + NEURAL_FEATURES,
                              "calibration": {"a": a, "b": b, "c": c}}
            top = self.neural.head.top_layers
            info["neural"].pop("top_layers", None)
            if top is not None:
                if Path(top).resolve() != (folder / TOP_LAYERS_FILE).resolve():
                    shutil.copyfile(top, folder / TOP_LAYERS_FILE)
                info["neural"]["top_layers"] = TOP_LAYERS_FILE
        else:
            info.pop("neural", None)
        if self.extent is not None:
            self.extent.save(folder)
        else:  # an extent stage learned on other trees' scores would misread these: retrain it (train_extent.py)
            (folder / EXTENT_FILE).unlink(missing_ok=True)
        (folder / "reader.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")

    def score(self, cands: Candidates, neural: np.ndarray | None = None, prune: bool = True) -> np.ndarray:
        """Ranking scores of the candidates (higher is better); with ``neural`` (the candidates'
        :func:`neural_features`) by the neural ranker's trees. ``prune``: all the trees score only
        the candidates the first trees rank best (the others score -inf)."""
        if len(cands) == 0:
            return np.zeros(0)
        X = cands.features.copy()
        apply_lexical(X, cands.word_keys, self.lex)
        return self.predict(X if neural is None else np.hstack([X, neural]), neural is not None, prune)

    def predict(self, X: np.ndarray, neural: bool, prune: bool = True) -> np.ndarray:
        """:meth:`score` of feature rows (word tables applied; with the ``NEURAL_FEATURES`` columns
        and the neural ranker's trees when ``neural``)."""
        trees = self.neural.trees if neural else self.trees
        stage, keep = self.PRUNE_TREES, self.PRUNE_KEEP
        if not prune or len(X) <= keep or len(trees.roots) <= stage:
            return trees.predict(X)
        # the first trees rank every candidate; the rest only the best of them
        scores = trees.predict(X, 0, stage)
        top = np.argpartition(-scores, keep)[:keep]
        out = np.full(len(X), -np.inf)
        out[top] = scores[top] + trees.predict(X[top], stage)
        return out

    def neural_features(self, question: Query, passages: list[Passage], cands: Candidates,
                        encoder: PairEncoder) -> np.ndarray:
        """:func:`rag.answering.reader.neural.neural_features` of the candidates: the span head reads every
        sentence that holds one, with the question, through ``encoder``."""
        read = list(dict.fromkeys(cands.sentence_keys()))
        texts = [passages[p].text[a:b] for p, a, b in read]
        logits = self.neural.head.read(encoder, question_for_head(question.text, texts), texts)
        return cands.neural_features(dict(zip(read, logits)))

    def confidence(self, best: float, second: float, neural: bool = False) -> float:
        a, b, c = self.neural.calibration if neural else self.calibration
        z = a * best + b * (best - second) + c
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def read(self, question: Query, passages: list[Passage], sentences: list[Sentence] | None = None,
             encoder: PairEncoder | None = None) -> Span | None:
        """The best answer span, or None when the passages hold no candidate.

        ``sentences``: scored sentences of the passages, best first (``select_sentences``); the
        first few are read. Without them every sentence of the passages is read. ``encoder``: the
        index's e5 embedder, for the span head (:mod:`rag.answering.reader.neural`); without it (or when
        the reader has no head) the candidates are ranked on the lexical features alone.
        """
        question = Query.of(question)
        cands = collect_candidates(question, passages, sentences, max_sentences=self.max_sentences)
        if len(cands) == 0:
            return None
        nn = None
        if encoder is not None and self.neural is not None:
            nn = self.neural_features(question, passages, cands, encoder)
        # a question that counts its list ("哪三个方面") needs every list scored, not the first trees' best
        scores = apply_rules(question, passages, cands, self.score(cands, nn, prune=not question.asked.count))
        i = int(np.argmax(scores))
        best = float(scores[i])
        # the runner-up that does not overlap the best span (an overlapping one is the same answer)
        same = (cands.passage == cands.passage[i]) & (cands.spans[:, 0] < cands.spans[i, 1]) & (
            cands.spans[:, 1] > cands.spans[i, 0])
        others = scores[~same & np.isfinite(scores)]
        second = float(others.max()) if len(others) else best - 5.0
        if self.extent is not None and nn is not None:  # the best span, or a longer one of its sentence holding it
            i = self.extent.choose(question, [p.text for p in passages], cands.passage, cands.sentence, cands.spans,
                                   scores, i, cands.features, nn)
        p, (a, b), (sa, sb) = int(cands.passage[i]), cands.spans[i].tolist(), cands.sentence[i].tolist()
        b = whole_list(question, passages[p].text, a, b, sb)
        b = whole_number(passages[p].text, a, b, sb)
        b = whole_date(question, passages[p].text, a, b, sb)
        a, b = widen(passages[p].text, a, b, sa, sb, SHAPES_BY_KIND.get(question.asked.kind, "span"))
        confidence = self.confidence(best, second, neural=nn is not None)
        if counted(question, passages[p].text[a:b]):
            # "哪三个方面" answered by a list of three names: the count says more than the trees' margin
            confidence = max(confidence, COUNTED_CONFIDENCE)
        return Span(text=passages[p].text[a:b], passage=p, start=a, end=b, sentence_start=sa, sentence_end=sb,
                    confidence=confidence)
