"""Answer-span metrics of the CMRC 2018 evaluation: exact match and F1 over the longest common substring."""
from __future__ import annotations

import unicodedata

from ..text import compact

__all__ = ["span_normalize", "span_em", "span_f1"]


def span_normalize(text: str) -> str:
    """Characters compared: NFKC, Traditional → Simplified, lower case, no whitespace or punctuation."""
    return "".join(ch for ch in compact(text) if not unicodedata.category(ch).startswith("P"))


def _longest_common_substring(a: str, b: str) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, 1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


def span_f1(prediction: str, answers: tuple[str, ...] | list[str]) -> float:
    """Best F1 against any gold answer; precision and recall from the longest common substring
    (the CMRC 2018 definition). 0.0 for an empty prediction."""
    pred = span_normalize(prediction)
    best = 0.0
    for gold in answers:
        g = span_normalize(gold)
        if not pred or not g:
            continue
        lcs = _longest_common_substring(pred, g)
        if lcs:
            p, r = lcs / len(pred), lcs / len(g)
            best = max(best, 2 * p * r / (p + r))
    return best


def span_em(prediction: str, answers: tuple[str, ...] | list[str]) -> float:
    """1.0 when the prediction equals any gold answer after normalisation."""
    pred = span_normalize(prediction)
    return float(bool(pred) and any(pred == span_normalize(g) for g in answers))
