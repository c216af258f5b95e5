"""Semantic duplicates (SemDeDup): within each k-means cluster, rows whose embeddings have a
cosine similarity above 1 - eps, found by a FAISS range search over the cluster's vectors.
Memory: one cluster's vectors and its pairs at a time (the vectors of every row wait in a
memory-mapped temporary file, grouped by cluster)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


class VectorsByCluster:
    """Vectors of chosen rows, written in any order, read back one cluster at a time."""

    def __init__(self, rows: np.ndarray, cluster: np.ndarray, dim: int, folder: Path) -> None:
        """``rows``: the row numbers to hold; ``cluster``: the cluster of each of them."""
        order = np.lexsort((rows, cluster))
        self.rows = rows[order]
        self.cluster = cluster[order]
        self.slot = np.full(int(rows.max()) + 1 if len(rows) else 0, -1, dtype=np.int64)
        self.slot[self.rows] = np.arange(len(rows))
        self._file = tempfile.TemporaryFile(dir=folder, prefix=".dedup-vectors-")
        self.vectors = np.memmap(self._file, dtype=np.float32, mode="w+",
                                 shape=(max(len(rows), 1), dim))  # fmt: skip

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors of ``rows`` (row numbers; those not held are ignored)."""
        inside = rows < len(self.slot)
        slots = np.full(len(rows), -1, dtype=np.int64)
        slots[inside] = self.slot[rows[inside]]
        held = slots >= 0
        self.vectors[slots[held]] = vectors[held]

    def clusters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row numbers, their vectors) of each cluster, in cluster order."""
        bounds = np.flatnonzero(np.r_[True, self.cluster[1:] != self.cluster[:-1], True])
        for start, end in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            if end > start:
                yield self.rows[start:end], np.asarray(self.vectors[start:end])

    def close(self) -> None:
        del self.vectors
        self._file.close()


class VectorIndex:
    """A FAISS inner-product index over unit vectors, built once, asked many times."""

    def __init__(self, vectors: np.ndarray) -> None:
        import faiss

        self.index = faiss.IndexFlatIP(vectors.shape[1])
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def similar(self, queries: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pairs (query position, indexed position, cosine) with cosine > 1 - eps."""
        lims, similarity, found = self.index.range_search(
            np.ascontiguousarray(queries, dtype=np.float32), 1.0 - eps
        )
        i = np.repeat(np.arange(len(queries)), np.diff(lims).astype(np.int64))
        return i, found.astype(np.int64), np.minimum(similarity, 1.0).astype(np.float32)


def similar_pairs(vectors: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j, cosine) of positions in ``vectors`` (unit-norm) with cosine > 1 - eps,
    each pair once (i > j)."""
    i, j, similarity = VectorIndex(vectors).similar(vectors, eps)
    once = i > j
    return i[once], j[once], similarity[once]
