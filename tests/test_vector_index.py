"""The vector index: float16 or float32 storage; an update keeps the remaining rows in order."""
from __future__ import annotations

import numpy as np
import pytest

from rag.engines.vector_index import VectorIndex


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    v = np.random.default_rng(0).normal(size=(500, 16)).astype("float32")
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("storage", ["float16", "float32"])
def test_update_drops_rows_keeps_order_and_appends(vectors, storage):
    vi = VectorIndex.from_vectors(vectors, storage)
    assert vi.storage == storage and vi.size == 500
    keep = np.array([i for i in range(500) if i % 7], dtype=np.int64)
    after = vi.updated(keep, vectors[:3])
    expected = VectorIndex.from_vectors(np.vstack([vi.vectors()[keep], vectors[:3]]), storage)
    np.testing.assert_array_equal(after.vectors(), expected.vectors())
    np.testing.assert_array_equal(after.rows(np.array([0, len(keep)])), expected.vectors()[[0, len(keep)]])
    assert vi.size == 500  # the index updated from is left as it was
    assert after.search(vectors[8:9], k=1)[1][0][0] == list(keep).index(8)


def test_float16_scores_are_within_a_thousandth_of_float32(vectors):
    s16, r16 = VectorIndex.from_vectors(vectors, "float16").search(vectors[:20], k=5)
    s32, r32 = VectorIndex.from_vectors(vectors, "float32").search(vectors[:20], k=5)
    np.testing.assert_allclose(s16, s32, atol=1e-3)
    assert (r16[:, 0] == r32[:, 0]).all()
