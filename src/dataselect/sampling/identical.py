"""Rows with identical vectors: kmeans-closest, top-k and facility-location take one of each
set (identical vectors sit at the same distance from their centroid, so exact copies would
otherwise take the first ranks of a cluster). Which one: the first in keyed (seed, id)
order; the others are never drawn. A pass over the input's id and ``vector_hash`` columns
(8 bytes a row of each, and 4 of cluster) finds them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.io.sources import InputDataset
from dataselect.keyed import row_keys

VECTOR_HASH = "vector_hash"  # the cluster stage's column (carried by score and dedup)


@dataclass
class IdenticalCopies:
    """The rows not to draw: their keys (sorted, under the selection's key stream) and how
    many there are per cluster."""

    keys: np.ndarray  # uint64, sorted
    per_cluster: np.ndarray  # int64, by cluster id (empty without clusters)

    def drawable(self, keys: np.ndarray) -> np.ndarray:
        """A mask of the rows (by key) that may be drawn."""
        if not len(self.keys):
            return np.ones(len(keys), dtype=bool)
        at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return self.keys[at] != keys

    def eligible_sizes(self, sizes: np.ndarray) -> np.ndarray:
        """Rows per cluster that may be drawn."""
        skipped = np.zeros(len(sizes), dtype=np.int64)
        skipped[: len(self.per_cluster)] = self.per_cluster[: len(sizes)]
        return np.asarray(sizes, dtype=np.int64) - skipped


def later_copies(hashes: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A mask of the rows whose vector hash equals a row's before them in key order."""
    order = np.lexsort((keys, hashes))
    later = np.zeros(len(hashes), dtype=bool)
    if len(order) > 1:
        same = hashes[order][1:] == hashes[order][:-1]
        later[order[1:][same]] = True
    return later


def identical_copies(dataset: InputDataset, seed: int, stream: int) -> IdenticalCopies:
    """Read ids, vector hashes and clusters of every row; the copies after the first."""
    has_cluster = "cluster" in dataset.schema.names
    columns = ["id", VECTOR_HASH] + (["cluster"] if has_cluster else [])
    keys, hashes, clusters = [], [], []
    for shard in dataset.shards:
        for batch in shard.iter_batches(columns, batch_rows=1 << 16):
            keys.append(row_keys(batch.column("id"), seed, stream))
            hashes.append(batch.column(VECTOR_HASH).to_numpy(zero_copy_only=False))
            if has_cluster:
                clusters.append(batch.column("cluster").to_numpy(zero_copy_only=False))
    if not keys:
        return IdenticalCopies(np.zeros(0, np.uint64), np.zeros(0, np.int64))
    all_keys = np.concatenate(keys)
    later = later_copies(np.concatenate(hashes).astype(np.uint64), all_keys)
    per_cluster = (
        np.bincount(np.concatenate(clusters)[later].astype(np.int64))
        if has_cluster and later.any()
        else np.zeros(0, np.int64)
    )
    return IdenticalCopies(np.sort(all_keys[later]), per_cluster)
