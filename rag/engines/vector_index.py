"""Dense vector index over unit vectors (inner product = cosine); owns faiss."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import IndexCorruptError

__all__ = ["VectorIndex"]


STORAGES = ("float16", "float32")


def _empty(dim: int, storage: str):
    """An empty exact inner-product index storing vectors as ``storage``."""
    import faiss

    if storage == "float16":
        return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    if storage == "float32":
        return faiss.IndexFlatIP(dim)
    raise ValueError(f"vector storage must be one of {', '.join(STORAGES)}, got {storage!r}")


class VectorIndex:
    """Exact inner-product search over every vector; faiss ids are row positions of the chunk
    records. Vectors are stored as float16 (half the memory and the search time; scores within
    ~1e-3 of float32) or float32.

    Example::

        vi = VectorIndex.from_vectors(np.eye(3, dtype="float32"))
        scores, rows = vi.search(np.eye(3, dtype="float32")[:1], k=2)
    """

    FILE = "vectors.faiss"

    def __init__(self, index) -> None:
        self._index = index

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, storage: str = "float16") -> "VectorIndex":
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = _empty(vectors.shape[1], storage)
        if len(vectors):
            index.add(vectors)
        return cls(index)

    @property
    def storage(self) -> str:
        import faiss

        return "float16" if isinstance(self._index, faiss.IndexScalarQuantizer) else "float32"

    def describe(self) -> str:
        return "faiss IndexScalarQuantizer fp16 (inner product)" if self.storage == "float16" else "faiss IndexFlatIP"

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def vectors(self) -> np.ndarray:
        """All stored vectors, row order (used to reuse embeddings of unchanged chunks)."""
        if self.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_n(0, self.size)

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) per query; rows -1 where fewer results exist.

        ``allowed``: optional boolean mask over rows (filters); search widens until
        enough allowed rows are found.
        """
        import faiss

        q = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, self.size)) if self.size else 1
        if allowed is None:
            return self._index.search(q, k)
        ids = np.flatnonzero(allowed).astype("int64")
        if len(ids) == 0:
            return np.zeros((len(q), k), np.float32), -np.ones((len(q), k), np.int64)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
        return self._index.search(q, min(k, len(ids)), params=params)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors of these rows (len(positions) x dim), decoded to float32."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._index.reconstruct_batch(positions)

    def updated(self, keep: np.ndarray, new: np.ndarray) -> "VectorIndex":
        """A new index of the rows ``keep`` (ascending) followed by ``new``; this one is left as it
        was. The dropped rows are removed from a copy: nothing is decoded and encoded again."""
        import faiss

        keep = np.asarray(keep, dtype=np.int64)
        if np.any(np.diff(keep) <= 0):
            raise ValueError("rows to keep must be ascending")
        index = faiss.clone_index(self._index)
        gone = np.setdiff1d(np.arange(self.size, dtype=np.int64), keep)
        if len(gone):
            index.remove_ids(faiss.IDSelectorBatch(gone))
        if len(new):
            index.add(np.ascontiguousarray(new, dtype=np.float32))
        return VectorIndex(index)

    def save(self, folder: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(Path(folder) / self.FILE))

    @classmethod
    def load(cls, folder: Path) -> "VectorIndex":
        import faiss

        path = Path(folder) / cls.FILE
        try:
            return cls(faiss.read_index(str(path)))
        except Exception as e:
            raise IndexCorruptError(f"{path}: cannot read the vector index ({e})") from e
