"""How much of its sentence the answer takes: the trees' best span, or a longer span holding it.

The span trees learned from CMRC/DRCD, where nine answers in ten are short, so for a question whose
answer is a reason, a description or a whole clause they pick a fragment of it ("由于速度劣势" for the
clause that explains). This stage looks again at the best span and at the candidates of its
sentence that hold it (its clause, several clauses, up to the sentence's end) and picks one, with:

- how likely the question is to want a long answer (``LongAnswerOdds``: a logistic model over the
  question's characters and character pairs and triples, learned from the gold answers' lengths),
- what the question asks (``Query.asked.kind``), and
- how each longer span extends the best one (characters left and right, clauses, whether it runs to
  the sentence's end, its score against the best).

Small gradient-boosted trees (``extent.npz`` beside the reader's model) predict each option's gain; they
are trained by ``scripts/train_extent.py`` on the reader's own candidates, never on held-out
articles. Without the file the reader keeps its best span.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...asked import QUESTION_WORDS
from ...query import Query
from ...text import to_simplified
from ...trees import Trees
from .features import FEATURE_NAMES
from .neural import NEURAL_FEATURES

__all__ = ["Extent", "LongAnswerOdds", "EXTENT_FEATURES", "extent_options", "extent_features", "EXTENT_FILE",
           "LONG_ANSWER_CHARS", "SHORT_KINDS", "KINDS"]

EXTENT_FILE = "extent.npz"
LONG_ANSWER_CHARS = 20  # what the question model calls a long answer
KINDS = [k for k, _ in QUESTION_WORDS] + ["none"]
# a name, a date or a place is answered as the trees found it: on the validation questions, leaving
# them alone gave F1 0.6874 (EM 0.507) against 0.6860 (0.504) when every kind is extended
# (person 0.680 -> 0.676, time 0.818 -> 0.814 extended; numbers, whose answers take their unit by rule, either way)
SHORT_KINDS = ("person", "time", "place")
EXTENT_FEATURES = [
    "p_long", "kind", "question_chars", "is_best", "chars", "best_chars", "ratio", "score_gap", "rank",
    "left", "right", "to_sentence_end", "from_sentence_start", "clause_marks", "best_clause_marks",
    "sentence_chars", "reason_cue", "options",
    # the span head's scores of the option, and against the best span's (``NEURAL_FEATURES``)
    "nn_start", "nn_end", "nn_logprob", "nn_start_gain", "nn_end_gain", "nn_logprob_gain",
    # the reader's own features of the option (``FEATURE_NAMES``)
    "whole_clause", "multi_clause", "clause_len", "n_dun", "ends_deng",
]
_NN = [NEURAL_FEATURES.index(n) for n in ("nn_start", "nn_end", "nn_logprob")]
_OWN = [FEATURE_NAMES.index(n) for n in ("whole_clause", "multi_clause", "clause_len", "n_dun", "ends_deng")]
_CLAUSE_MARK = re.compile(r"[，,；;：:]")
_TRAILING = re.compile(r"[\s。．.！!？?；;，,、：:”’」』）)\]】]*")
_REASON_CUE = re.compile(r"因|由于|所以|导致|为了|以便|使得|从而")  # 因: 因为, 因此, 原因, 是因
_WS = re.compile(r"\s\s+")
# what a longer span may not add alone: a copula or a function word ("指水库在汛期…", "…司法审判在")
_FUNCTION = re.compile(r"[是指为即乃系叫称作在的了和与及或而并就把被从向以对于着过]+")


class LongAnswerOdds:
    """P(the gold answer has ``LONG_ANSWER_CHARS`` or more characters | the question): a logistic
    regression over sublinear TF-IDF of the question's character 1- to 3-grams (in Simplified
    script), as scikit-learn's ``TfidfVectorizer(analyzer="char", ngram_range=(1, 3),
    sublinear_tf=True)`` computes it; the parity with scikit-learn is checked by the training script."""

    def __init__(self, grams: list[str], idf: np.ndarray, coef: np.ndarray, intercept: float):
        self.index = {g: i for i, g in enumerate(grams)}
        self.idf = np.asarray(idf, np.float64)
        self.coef = np.asarray(coef, np.float64)
        self.intercept = float(intercept)

    @staticmethod
    def prepare(question: str) -> str:
        return to_simplified(question).lower()

    def vector(self, question: str) -> dict[int, float]:
        text = _WS.sub(" ", self.prepare(question))
        counts = Counter(text[i:i + n] for n in (1, 2, 3) for i in range(len(text) - n + 1))
        v = {self.index[g]: (1.0 + math.log(c)) * self.idf[self.index[g]] for g, c in counts.items() if g in self.index}
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        return {i: x / norm for i, x in v.items()}

    def probability(self, question: str) -> float:
        z = self.intercept + sum(self.coef[i] * x for i, x in self.vector(question).items())
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def extent_options(texts: list[str], passage: np.ndarray, sentence: np.ndarray, spans: np.ndarray,
                   scores: np.ndarray, best: int) -> np.ndarray:
    """The best span and the candidates of its sentence that hold it (finite scores), best first;
    not those adding only a copula or a function word ("指水库在汛期…", "…司法审判在" say no more)."""
    a, b = spans[best]
    hold = ((passage == passage[best]) & (sentence[:, 0] == sentence[best, 0]) & (spans[:, 0] <= a)
            & (spans[:, 1] >= b) & np.isfinite(scores))
    hold[best] = False
    text = texts[int(passage[best])]

    def adds_words(j: int) -> bool:
        return any(x and not _FUNCTION.fullmatch(to_simplified(x)) for x in (text[spans[j, 0]:a], text[b:spans[j, 1]]))

    return np.array([best, *(j for j in np.flatnonzero(hold) if adds_words(j))], np.int64)


def extent_features(p_long: float, kind: str, question: str, texts: list[str], passage: np.ndarray,
                    sentence: np.ndarray, spans: np.ndarray, scores: np.ndarray, options: np.ndarray,
                    features: np.ndarray, neural: np.ndarray) -> np.ndarray:
    """One row of ``EXTENT_FEATURES`` per option (``options[0]`` is the best span); ``texts``: the
    passages' texts; ``features`` and ``neural``: the candidates' rows of ``FEATURE_NAMES`` and
    ``NEURAL_FEATURES``."""
    best = options[0]
    ba, bb = spans[best]
    text = texts[int(passage[best])]
    sa, sb = sentence[best]
    sentence_text = text[sa:sb]
    end = sb - len(_TRAILING.match(sentence_text[::-1]).group(0))  # the sentence's end without its punctuation
    start = sa + len(sentence_text) - len(sentence_text.lstrip())
    finite = scores[np.isfinite(scores)]
    rows = np.zeros((len(options), len(EXTENT_FEATURES)), np.float32)
    head = neural[options][:, _NN]
    best_marks = len(_CLAUSE_MARK.findall(text[ba:bb]))
    for r, j in enumerate(options):
        a, b = spans[j]
        span = text[a:b]
        rows[r] = (
            p_long, KINDS.index(kind) if kind in KINDS else len(KINDS) - 1, len(question), j == best, b - a, bb - ba,
            (b - a) / max(bb - ba, 1), scores[j] - scores[best], int((finite > scores[j]).sum()),
            ba - a, b - bb, b >= end, a <= start, len(_CLAUSE_MARK.findall(span)), best_marks,
            sb - sa, bool(_REASON_CUE.search(to_simplified(text[a:ba]))), len(options),
            *head[r], *(head[r] - head[0]), *features[j, _OWN],
        )
    return rows


@dataclass(frozen=True)
class Extent:
    """The extent stage: the question model, and the trees that predict how much each longer option
    gains in character F1 over the best span; the largest gain wins when it exceeds ``margin``
    (chosen on validation questions)."""

    odds: LongAnswerOdds
    trees: Trees
    margin: float = 0.0

    @classmethod
    def load(cls, folder: str | Path) -> "Extent | None":
        path = Path(folder) / EXTENT_FILE
        if not path.is_file():
            return None
        with np.load(path) as d:
            trees = Trees.from_arrays({k[len("trees_"):]: d[k] for k in d.files if k.startswith("trees_")})
            odds = LongAnswerOdds(d["grams"].tolist(), d["idf"], d["coef"], float(d["intercept"]))
            margin = float(d["margin"])
        return cls(odds, trees, margin)

    def save(self, folder: str | Path) -> None:
        grams = sorted(self.odds.index, key=self.odds.index.get)
        np.savez_compressed(Path(folder) / EXTENT_FILE, grams=np.array(grams), idf=self.odds.idf.astype(np.float32),
                            coef=self.odds.coef.astype(np.float32), intercept=np.float64(self.odds.intercept),
                            margin=np.float64(self.margin),
                            **{f"trees_{k}": v for k, v in self.trees.to_arrays().items()})

    def choose(self, question: Query, texts: list[str], passage: np.ndarray, sentence: np.ndarray,
               spans: np.ndarray, scores: np.ndarray, best: int, features: np.ndarray, neural: np.ndarray) -> int:
        """The option with the largest predicted gain above ``margin``, else the best span."""
        if question.asked.kind in SHORT_KINDS:
            return best
        options = extent_options(texts, passage, sentence, spans, scores, best)
        if len(options) < 2:
            return best
        X = extent_features(self.odds.probability(question.text), question.asked.kind, question.text, texts,
                            passage, sentence, spans, scores, options, features, neural)
        gain = self.trees.predict(X[1:])  # what each longer option adds to the best span's F1
        return int(options[1 + int(np.argmax(gain))]) if gain.max() > self.margin else best
