"""The index never gets lost: SIGKILLed writers, the writer lock, and damaged files."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import rag
from rag.errors import IndexCorruptError, IndexLockedError
from rag.engines.store import IndexStore

from conftest import ROOT, TEST_DATA

COPY = TEST_DATA / "formats" / "wuhan_copy.txt"
TINY_IDS = {"jj-01", "jj-02", "wuhan", "yichang"}

# Adds and removes an article over and over, so a kill lands in every phase of a write.
WRITER = """
import sys, rag
r = rag.Retriever.load(sys.argv[1])
print("loaded", flush=True)
while True:
    r.add([sys.argv[2]])
    r.remove(["wuhan_copy"])
"""


@pytest.fixture()
def tiny_index(tmp_path):
    data = tmp_path / "data"
    shutil.copytree(TEST_DATA / "tiny", data)
    rag.Retriever.build(data, tmp_path / "index", embedder="hash")  # mechanics, not model quality: no model
    return tmp_path / "index"


def _assert_whole(index):
    assert rag.Retriever.check(index) == []
    r = rag.Retriever.load(index)
    assert set(r.articles) in (TINY_IDS, TINY_IDS | {"wuhan_copy"})  # the previous or the new content, whole
    assert r.search("九江港集装箱吞吐量", k=1)[0].doc_id == "jj-02"
    return r


@pytest.mark.slow  # kills writer processes many times over
def test_sigkilled_writer_never_breaks_the_index(tiny_index):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for delay in (0.0, 0.3, 0.7, 1.2, 2.0):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tiny_index), str(COPY)],
                                stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"loaded"
        time.sleep(delay)  # kill before, during and between saves
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _assert_whole(tiny_index)
    # the dead writers' lock is gone and their half-written generations are swept by the next write
    r = rag.Retriever.load(tiny_index)
    r.remove(["wuhan_copy"]) if "wuhan_copy" in r.articles else r.add([COPY])
    gens = [p.name for p in tiny_index.glob("g-*")]
    assert len(gens) <= 2 and IndexStore(tiny_index).generation_token() in gens
    _assert_whole(tiny_index)


# Dies by SIGKILL at a chosen point of an add(); "after-swap" dies just after CURRENT moved.
KILL_AT = """
import os, signal, sys
import rag, rag.engines.store
from rag.engines.vector_index import VectorIndex
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
point = sys.argv[3]
r = rag.Retriever.load(sys.argv[1])
if point == "embedding":
    type(r.embedder).embed_documents = die
elif point == "writing":
    VectorIndex.save = die
elif point == "fsync":
    rag.engines.store._fsync_tree = die
elif point == "after-swap":
    real = os.replace
    os.replace = lambda a, b: (real(a, b), die())
r.add([sys.argv[2]])
"""


@pytest.mark.slow
@pytest.mark.parametrize("point, published", [("embedding", False), ("writing", False), ("fsync", False), ("after-swap", True)])
def test_writer_killed_at_each_point_leaves_a_whole_index(tiny_index, point, published):
    proc = subprocess.run([sys.executable, "-c", KILL_AT, str(tiny_index), str(COPY), point],
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    r = _assert_whole(tiny_index)
    assert ("wuhan_copy" in r.articles) is published
    assert r.remove(["jj-01"]).removed == ["jj-01"]  # the next writer is not blocked and sweeps the debris
    assert [p.name for p in tiny_index.glob("g-*")].count(IndexStore(tiny_index).generation_token()) == 1
    assert len(list(tiny_index.glob("g-*"))) <= 2


HOLDER = """
import sys
from rag.engines.store import IndexStore
with IndexStore(sys.argv[1]).lock():
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_second_writer_gets_a_clear_lock_error(tiny_index):
    r = rag.Retriever.load(tiny_index)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tiny_index)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline().strip() == b"held"
        with pytest.raises(IndexLockedError, match=f"index at {tiny_index} is being written by another process; wait"):
            r.remove(["jj-01"])
    finally:
        holder.stdin.close()
        holder.wait()
    assert r.remove(["jj-01"]).removed == ["jj-01"]  # free again once the first writer is done


def test_failed_write_leaves_the_live_generation(tiny_index):
    before = IndexStore(tiny_index).generation_token()
    with pytest.raises(RuntimeError):
        with IndexStore(tiny_index).writer() as gen:
            (gen / "manifest.json").write_text("{}", encoding="utf-8")
            raise RuntimeError("disk full")
    assert IndexStore(tiny_index).generation_token() == before
    assert [p.name for p in tiny_index.glob("g-*")] == [before]
    _assert_whole(tiny_index)


REBUILD = "rebuild (it )?with `rag build --data DATA_DIR --index"


def test_truncated_vectors(tiny_index):
    f = IndexStore(tiny_index).current() / "vectors.faiss"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(IndexCorruptError, match=f"vectors.faiss: cannot read the vector index .*; {REBUILD}"):
        rag.Retriever.load(tiny_index)
    assert "vectors.faiss: cannot read the vector index" in rag.Retriever.check(tiny_index)[0]


def test_missing_chunks(tiny_index):
    (IndexStore(tiny_index).current() / "chunks.jsonl").unlink()
    with pytest.raises(IndexCorruptError, match=f"lacks chunks.jsonl; {REBUILD}"):
        rag.Retriever.load(tiny_index)


def test_garbage_manifest(tiny_index):
    (IndexStore(tiny_index).current() / "manifest.json").write_bytes(b"\x00garbage{")
    with pytest.raises(IndexCorruptError, match=f"manifest.json: unreadable manifest .*; {REBUILD}"):
        rag.Retriever.load(tiny_index)


def test_damaged_chunk_records(tiny_index):
    f = IndexStore(tiny_index).current() / "chunks.jsonl"
    f.write_text(f.read_text(encoding="utf-8")[:-20], encoding="utf-8")
    with pytest.raises(IndexCorruptError, match=f"damaged article or chunk records .*; {REBUILD}"):
        rag.Retriever.load(tiny_index)


def test_reload_keeps_the_loaded_index_when_the_new_one_is_damaged(tiny_index):
    reader = rag.Retriever.load(tiny_index)
    writer = rag.Retriever.load(tiny_index)
    writer.add([COPY])
    (IndexStore(tiny_index).current() / "vectors.faiss").write_bytes(b"junk")
    assert reader.superseded() and reader.latest() is reader
    assert set(reader.articles) == TINY_IDS


def test_two_writers_in_turn_keep_both_changes(tiny_index):
    a = rag.Retriever.load(tiny_index)
    b = rag.Retriever.load(tiny_index)  # loaded before a's change
    a.add([COPY])
    b.remove(["jj-01"])  # works on the live generation, not its stale copy
    assert set(rag.Retriever.load(tiny_index).articles) == TINY_IDS - {"jj-01"} | {"wuhan_copy"}


def test_lock_is_reentrant_in_a_thread_but_not_across_threads(tiny_index):
    import threading

    store = IndexStore(tiny_index)
    seen = []
    with store.lock():
        with store.lock():
            pass
        t = threading.Thread(target=lambda: seen.append(pytest.raises(IndexLockedError, store.lock().__enter__)))
        t.start()
        t.join()
    assert len(seen) == 1
    with store.lock():  # released
        pass


def test_records_write_every_field():
    """to_dict is written field by field (speed): it must hold every field, as asdict would."""
    import dataclasses

    from rag.records import Article, Chunk

    a = Article(id="x", title="标题", text="正文", date="2021-12-03", source="长江日报", url="http://a", origin="f.txt")
    c = Chunk(id="c", doc_id="x", text="正文", start=0, end=2, title="标题")
    assert a.to_dict() == dataclasses.asdict(a) and Article.from_dict(a.to_dict()) == a
    assert c.to_dict() == dataclasses.asdict(c) and Chunk.from_dict(c.to_dict()) == c


def test_records_are_read_with_the_garbage_collector_paused_and_it_is_restored(tiny_index, monkeypatch):
    """The records of an archive are hundreds of thousands of objects that all survive: read with
    Python's cyclic collector paused (its rescans stalled the app's other threads during a
    background reload); afterwards it is on again, or still off for a program that turned it off."""
    import gc

    seen = []
    read = IndexStore.read_records

    def spy(self, gen=None):
        seen.append(gc.isenabled())
        return read(self, gen)

    monkeypatch.setattr(IndexStore, "read_records", spy)
    assert gc.isenabled()
    assert rag.Retriever.load(tiny_index).search("九江港集装箱吞吐量", k=1)[0].doc_id == "jj-02"
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        rag.Retriever.load(tiny_index)
        assert not gc.isenabled()
    finally:
        gc.enable()
