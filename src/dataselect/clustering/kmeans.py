"""k-means at scale: a keyed uniform sample across shards, FAISS k-means, batched assignment.

The fit sample is the ``size`` rows with the smallest keyed hash of (seed, id) (a "bottom-k"
sample: uniform without replacement, and the same whatever the shard count, shard order or
engine). It streams: only the current best ``size`` vectors are held.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa

from dataselect.embedding.vectors import normalised_vectors, rowwise_dot
from dataselect.io.ids import batch_ids
from dataselect.io.sources import InputDataset, InputShard
from dataselect.keyed import row_keys

READ_ROWS = 16_384
SAMPLE_STREAM = 1  # keyed-randomness stream of the fit sample
METRICS = ("cosine", "l2")
DEFAULT_K_GRID = (8, 16, 32, 64, 128, 256, 512, 1024)
# k-means++ seeds come from the first max(20 k, 10,000) rows of the (keyed, uniform) sample,
# one candidate per step (the classic rule; greedy trials cost 9x for little here)
PLUSPLUS_ROWS_PER_K = 20
PLUSPLUS_MIN_ROWS = 10_000


def iter_vectors(
    shard: InputShard, column: str, dim: int, id_column: str | None
) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(ids, unit vectors) per read batch of a shard, validated."""
    offset = 0
    columns = list(dict.fromkeys(([id_column] if id_column else []) + [column]))
    for batch in shard.iter_batches(columns, batch_rows=READ_ROWS):
        ids = batch_ids(batch, shard, offset, id_column)
        vectors = normalised_vectors(batch.column(column), dim, shard, offset, column)
        offset += batch.num_rows
        yield ids, vectors


def keyed_sample(
    dataset: InputDataset, column: str, dim: int, id_column: str | None, size: int, seed: int
) -> np.ndarray:
    """The fit sample: vectors of the ``size`` rows with the smallest (seed, id) keys.

    One preallocated buffer of size + READ_ROWS rows; when it fills, the best ``size`` are
    kept and the rest dropped. Once the sample is full, rows whose key is above the current
    worst are skipped before their vectors are copied, so most batches cost only the hash.
    """
    capacity = size + READ_ROWS
    keys = np.empty(capacity, dtype=np.uint64)
    vectors = np.empty((capacity, dim), dtype=np.float32)
    count, threshold = 0, np.uint64(np.iinfo(np.uint64).max)

    def compact() -> np.uint64:
        keep = np.argpartition(keys[:count], size - 1)[:size]
        keys[:size], vectors[:size] = keys[keep], vectors[keep]
        return keys[:size].max()

    for shard in dataset.shards:
        for ids, batch in iter_vectors(shard, column, dim, id_column):
            batch_keys = row_keys(ids, seed, SAMPLE_STREAM)
            if count >= size:
                wanted = batch_keys < threshold
                batch_keys, batch = batch_keys[wanted], batch[wanted]
            if count + len(batch_keys) > capacity:
                threshold, count = compact(), size
                wanted = batch_keys < threshold
                batch_keys, batch = batch_keys[wanted], batch[wanted]
            keys[count : count + len(batch_keys)] = batch_keys
            vectors[count : count + len(batch_keys)] = batch
            count += len(batch_keys)
    if count > size:
        compact()
        count = size
    order = np.argsort(keys[:count], kind="stable")
    return np.ascontiguousarray(vectors[:count][order])


@dataclass
class KMeansFit:
    centroids: np.ndarray
    objective: float


def fit_kmeans(sample: np.ndarray, k: int, niter: int, seed: int, metric: str) -> KMeansFit:
    """FAISS k-means on the sample (spherical for cosine: centroids renormalised each step),
    started from k-means++ seeds.

    FAISS alone seeds with k random rows, which often puts two seeds in one dense cluster and
    none in another; Lloyd iterations rarely repair that (seen here: 5 clear blobs came out as
    4 clusters with one split). k-means++ (scikit-learn's) on a slice of the sample costs
    about one assignment pass of that slice and avoids it.
    """
    from sklearn.cluster import kmeans_plusplus

    seeds_from = sample[: min(len(sample), max(PLUSPLUS_ROWS_PER_K * k, PLUSPLUS_MIN_ROWS))]
    init, _ = kmeans_plusplus(seeds_from, k, random_state=seed % (2**32), n_local_trials=1)
    init = np.ascontiguousarray(init, dtype=np.float32)
    if metric == "cosine":
        init /= np.linalg.norm(init, axis=1, keepdims=True)
    kmeans = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=niter,
        seed=seed,
        spherical=metric == "cosine",
        max_points_per_centroid=max(1, -(-len(sample) // k)),
        min_points_per_centroid=1,
        verbose=False,
    )
    kmeans.train(sample, init_centroids=init)
    objective = float(kmeans.obj[-1]) if len(kmeans.obj) else float("nan")
    return KMeansFit(np.ascontiguousarray(kmeans.centroids, dtype=np.float32), objective)


class Assigner:
    """Nearest centroid by a flat FAISS index (one GEMM per batch)."""

    def __init__(self, centroids: np.ndarray, metric: str) -> None:
        self.metric = metric
        dim = centroids.shape[1]
        self.index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.index.add(self.centroids)

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cluster int32, distance float32): cosine distance 1 - cos, or squared L2.

        FAISS finds the nearest centroid with one GEMM; the distance is then recomputed
        row by row in a fixed order, so its bytes do not depend on the batch a row is in.
        """
        _, labels = self.index.search(np.ascontiguousarray(vectors), 1)
        labels = labels[:, 0]
        nearest = self.centroids[labels]
        if self.metric == "cosine":
            distance = 1.0 - rowwise_dot(vectors, nearest)
        else:
            diff = vectors.astype(np.float64) - nearest
            distance = rowwise_dot(diff, diff)
        return labels.astype(np.int32), np.maximum(distance, 0).astype(np.float32)


def choose_k(
    sample: np.ndarray, grid: tuple[int, ...], niter: int, seed: int, metric: str
) -> tuple[int, dict[int, float]]:
    """The k of the grid with the best silhouette score on (a subsample of) the sample."""
    from sklearn.metrics import silhouette_score

    fit_rows = sample[:20_000]
    score_rows = min(len(fit_rows), 5_000)
    scores: dict[int, float] = {}
    for k in grid:
        if k < 2 or k > len(fit_rows) // 2:
            continue
        fit = fit_kmeans(fit_rows, k, niter, seed, metric)
        labels, _ = Assigner(fit.centroids, metric).assign(fit_rows[:score_rows])
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(
            silhouette_score(
                fit_rows[:score_rows],
                labels,
                metric="cosine" if metric == "cosine" else "euclidean",
            )
        )
    if not scores:
        raise ValueError("no k of the grid fits this sample")
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def size_skew(sizes: np.ndarray) -> dict[str, float | int]:
    """How unequal the clusters are (large skew: a few clusters hold most rows)."""
    nonempty = sizes[sizes > 0]
    mean = float(sizes.mean()) if len(sizes) else 0.0
    return {
        "min": int(sizes.min()) if len(sizes) else 0,
        "median": float(np.median(sizes)) if len(sizes) else 0.0,
        "max": int(sizes.max()) if len(sizes) else 0,
        "empty": int((sizes == 0).sum()),
        "max_over_mean": round(float(sizes.max()) / mean, 3) if mean else 0.0,
        "coefficient_of_variation": round(float(sizes.std()) / mean, 3) if mean else 0.0,
        "nonempty": int(len(nonempty)),
    }
