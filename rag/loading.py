"""Answering while loading: an index's records read taking turns with other threads, the cyclic
collector paused during a load, and a loaded generation frozen out of later collections.

A server reads a new generation in the background while its other threads answer requests; the
three measures together keep those requests fast (68k archive: searches during a background load
max 2.2-3.1 s -> 0.24-0.27 s, docs/benchmarks.md). The engines and the store read records
with :func:`taking_turns`, ``Retriever.load`` runs under :func:`collector_paused`, and the app's
Service loads under :func:`kept_out_of_collections`.
"""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

__all__ = ["collector_paused", "freeze_survivors", "kept_out_of_collections", "taking_turns"]

T = TypeVar("T")


def taking_turns(items: Iterable[T], every: int = 500) -> Iterator[T]:
    """``items``, letting the process's other threads run after every ``every`` of them.

    Reading an archive's records is seconds of Python work. In a server that reads a new
    generation in the background, the threads answering requests would wait for Python's lock
    again at each of their calls into C (vector search, BM25, the encoder): searches of the 68k
    archive took up to 1.8 s instead of 18 ms while one loaded.
    """
    for i, item in enumerate(items, 1):
        yield item
        if i % every == 0:
            time.sleep(0)  # gives up the lock: a waiting thread takes it


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while an index's records are read. They are hundreds
    of thousands of objects that all survive, so the collector would rescan them again and again
    as they arrive: pauses growing to a fifth of a second each on the 68k archive, in which no
    other thread of the app runs (a background reload stalled searches). A program that had
    turned the collector off finds it off afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextmanager
def kept_out_of_collections() -> Iterator[None]:
    """The collector paused while an index generation is read, and everything alive then moved
    out of its reach (``gc.freeze``). A generation is hundreds of thousands of objects that live
    until the next one: collected normally, the first full collection after a background reload
    scanned both generations of the 68k archive while holding every thread (a quarter of a
    second, and again at every later full collection). A replaced generation is still freed when
    the last request using it ends: its objects form no cycles, so reference counting frees
    them, frozen or not."""
    with collector_paused():
        try:
            yield
        finally:
            gc.freeze()


def freeze_survivors() -> None:
    """After a build: its garbage collected (nobody waits yet), the records frozen as a load's are."""
    gc.collect()
    gc.freeze()
