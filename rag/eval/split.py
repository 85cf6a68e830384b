"""The held-out split of the benchmark sets: articles the reader is never trained on.

An article is held out when ``int(sha1(id), 16) % 4 == 0`` (about a quarter of CMRC 2018 dev
and of DRCD dev). ``scripts/train_reader.py`` trains only on the rest; ``rag eval --held-out``
and ``scripts/eval_reader.py`` measure only on these.
"""
from __future__ import annotations

import hashlib

__all__ = ["held_out"]


def held_out(article_id: str) -> bool:
    """True for an article of the held-out part (never seen in training)."""
    return int(hashlib.sha1(article_id.encode("utf-8")).hexdigest(), 16) % 4 == 0
