"""k-means at scale: a keyed uniform sample across shards, FAISS k-means, batched assignment.

The fit sample is the ``size`` rows with the smallest keyed hash of (seed, id) (a "bottom-k"
sample: uniform without replacement, and the same whatever the shard count, shard order or
engine). It streams: only the current best ``size`` vectors are held.

Batches are read on the calling thread: a read-ahead thread made the assignment pass 10-20%
slower on 2 cores (FAISS's OpenMP threads wait on each other when a third thread takes a
core) and did not speed up the sample pass (measured on 1M x 384 rows).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import faiss
import numpy as np
import pyarrow as pa

from dataselect.embedding.vectors import normalised_vectors
from dataselect.errors import DataError
from dataselect.io.ids import batch_ids
from dataselect.io.sources import InputDataset, InputShard
from dataselect.io.vector_pages import PlainVectors
from dataselect.keyed import row_keys

READ_ROWS = 16_384
SEARCH_ROWS = 4_096  # rows read at a time in the assignment pass
SEARCH_PIECE = 1_024  # rows searched at a time: a single-threaded search runs as fast on
# 512 rows as on 8,192, and small pieces leave a core idle for less when a shard ends
SAMPLE_STREAM = 1  # keyed-randomness stream of the fit sample
# k-means++ seeds come from the first max(4 k, 4,096) rows of the (keyed, uniform) sample
PLUSPLUS_ROWS_PER_K = 4
PLUSPLUS_MIN_ROWS = 4_096


def unit_vectors(
    values: pa.Array,
    dim: int,
    shard: InputShard,
    offset: int,
    column: str,
    trusted: bool,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """The batch's vectors as float32 rows. ``trusted``: the column comes from an embed
    stage, which wrote it validated and unit-norm, so it is used as stored (zero-copy)."""
    if trusted:
        return values.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
    return normalised_vectors(values, dim, shard, offset, column, positions=positions)


VectorLoader = Callable[[np.ndarray | None], np.ndarray]


def vector_batches(
    shard: InputShard,
    column: str,
    dim: int,
    id_column: str | None,
    trusted: bool,
    batch_rows: int = READ_ROWS,
) -> Iterator[tuple[pa.Array, VectorLoader]]:
    """(ids, load) per read batch of a shard: ``load(rows)`` gives the unit vectors of those
    rows of the batch (all with None), validated unless ``trusted``; only the rows asked
    for are decoded and validated.

    Trusted vectors in the plain layout are copied from their pages (``io/vector_pages``)
    beside pyarrow's reading of the ids: the same floats, without pyarrow's list decode."""
    plain = shard.plain_vectors(column, dim) if trusted and id_column else None
    offset = 0
    if plain is not None:
        with plain:
            for batch in shard.iter_batches([str(id_column)], batch_rows=batch_rows):
                load = partial(_copied_rows, plain, offset, offset + batch.num_rows)
                yield batch_ids(batch, shard, offset, id_column), load
                offset += batch.num_rows
        return
    columns = list(dict.fromkeys(([id_column] if id_column else []) + [column]))
    for batch in shard.iter_batches(columns, batch_rows=batch_rows):
        values = batch.column(column)
        load = partial(_decoded_rows, values, dim, shard, offset, column, trusted)
        yield batch_ids(batch, shard, offset, id_column), load
        offset += batch.num_rows


def _copied_rows(plain: PlainVectors, start: int, stop: int, rows: np.ndarray | None) -> np.ndarray:
    vectors = plain.read(start, stop)
    return vectors if rows is None else vectors[rows]


def _decoded_rows(values: pa.Array, dim: int, shard: InputShard, offset: int, column: str,
                  trusted: bool, rows: np.ndarray | None) -> np.ndarray:  # fmt: skip
    if rows is None:
        return unit_vectors(values, dim, shard, offset, column, trusted)
    if trusted:  # stored validated: one copy, from the batch's buffer
        return unit_vectors(values, dim, shard, offset, column, True)[rows]
    return unit_vectors(values.take(pa.array(rows)), dim, shard, offset, column, False,
                        positions=rows)  # fmt: skip


def iter_vectors(
    shard: InputShard,
    column: str,
    dim: int,
    id_column: str | None,
    trusted: bool = False,
    batch_rows: int = READ_ROWS,
) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(ids, unit vectors) per read batch of a shard, validated unless ``trusted``."""
    for ids, load in vector_batches(shard, column, dim, id_column, trusted, batch_rows):
        yield ids, load(None)


def keyed_sample(
    dataset: InputDataset,
    column: str,
    dim: int,
    id_column: str | None,
    size: int,
    seed: int,
    trusted: bool = False,
    on_rows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The fit sample: vectors of the ``size`` rows with the smallest (seed, id) keys, in
    key order. ``on_rows`` is told the rows of each batch read (two passes: 2 x the rows).

    Two passes. The first reads only the ids and finds the ``size``-th smallest key (a
    streaming bottom-k over keys: a few MB). The second reads the vectors and decodes only
    the rows at or under that key, straight into their final buffer. One pass that kept the
    best vectors so far decoded and copied ~2.4x as many rows and cost twice as long.
    """
    ordered = smallest_keys(dataset, id_column, size, seed, SAMPLE_STREAM, on_rows)
    candidates = len(ordered)
    threshold = ordered[-1] if candidates else np.uint64(0)
    # keys are unique but for a 64-bit collision: each sampled row's place in key order is
    # then known from the first pass, and its vector is written there (no final gather)
    placed = not np.any(ordered[1:] == ordered[:-1])
    keys = np.empty(candidates, dtype=np.uint64)
    vectors = np.empty((candidates, dim), dtype=np.float32)
    chosen_ids: list[pa.Array] = []
    count = 0
    for shard in dataset.shards:
        for ids, load in vector_batches(shard, column, dim, id_column, trusted):
            batch_keys = row_keys(ids, seed, SAMPLE_STREAM)
            # only sampled rows are decoded and validated here; the assignment validates all
            rows = np.flatnonzero(batch_keys <= threshold)
            if len(rows) and count + len(rows) <= candidates:
                chosen = load(rows)
                if placed:
                    vectors[np.searchsorted(ordered, batch_keys[rows])] = chosen
                else:
                    vectors[count : count + len(rows)] = chosen
                    keys[count : count + len(rows)] = batch_keys[rows]
                    chosen_ids.append(ids.take(pa.array(rows)))
            count += len(rows)
            if on_rows is not None:
                on_rows(len(ids))
    if count != candidates:  # the input changed between the passes
        raise DataError(f"{dataset.path}: rows changed while the k-means sample was read")
    if placed:
        return vectors[:size]
    # a 64-bit key collision: ties break by id
    all_ids = pa.concat_arrays(chosen_ids).to_numpy(zero_copy_only=False)
    order = np.lexsort((all_ids, keys))
    return np.ascontiguousarray(vectors[order[:size]])


def smallest_keys(
    dataset: InputDataset,
    id_column: str | None,
    size: int,
    seed: int,
    stream: int,
    on_rows: Callable[[int], None] | None = None,
) -> np.ndarray:
    """The ``size`` smallest row keys (and any ties with the largest of them), sorted: a
    streaming bottom-k over the ids alone."""
    capacity = size + READ_ROWS
    keys = np.empty(capacity, dtype=np.uint64)
    count, threshold = 0, np.uint64(np.iinfo(np.uint64).max)

    def compact() -> tuple[np.uint64, int]:
        """Keep the ``size`` smallest keys and any ties with the largest of them."""
        kth = np.partition(keys[:count], size - 1)[size - 1]
        kept = keys[:count][keys[:count] <= kth]
        keys[: len(kept)] = kept
        return kth, len(kept)

    columns = [id_column] if id_column else []
    for shard in dataset.shards:
        offset = 0
        for record_batch in shard.iter_batches(columns, batch_rows=READ_ROWS):
            ids = batch_ids(record_batch, shard, offset, id_column)
            offset += record_batch.num_rows
            batch_keys = row_keys(ids, seed, stream)
            batch_keys = batch_keys[batch_keys <= threshold]
            if count + len(batch_keys) > capacity:
                threshold, count = compact()
                batch_keys = batch_keys[batch_keys <= threshold]
                if count + len(batch_keys) > len(keys):  # many ties: grow
                    keys = np.concatenate([keys, np.empty(len(batch_keys), dtype=np.uint64)])
            keys[count : count + len(batch_keys)] = batch_keys
            count += len(batch_keys)
            if on_rows is not None:
                on_rows(record_batch.num_rows)
    if count > size:
        threshold, count = compact()
    return np.sort(keys[:count])


@dataclass
class KMeansFit:
    centroids: np.ndarray
    objective: float
    trace: tuple[float, ...] = ()  # FAISS's objective at each iteration (before its update)


# called after each Lloyd iteration with (iterations done, FAISS's objective)
IterationCallback = Callable[[int, float], None]
# from this k on, a fit reports each iteration live (one FAISS call each): each call rescans
# the sample for NaNs on one core, an overhead of about 13% of an iteration at k = 1000
# (an ad hoc timing on 256k x 384; scripts/bench/cluster.py --rows 300000 --k 1000: the
# stage took 19.6 s with per-iteration calls, 15.7 s with one)
# and under 5% from k = 3000; below it the fit is one call, its iterations told at its end
STEPWISE_MIN_K = 3000


def fit_kmeans(
    sample: np.ndarray,
    k: int,
    niter: int,
    seed: int,
    metric: str,
    on_iteration: IterationCallback | None = None,
    stepwise: bool | None = None,
) -> KMeansFit:
    """FAISS k-means on the sample (spherical for cosine: centroids renormalised each step),
    started from k-means++ seeds.

    FAISS alone seeds with k random rows, which often puts two seeds in one dense cluster and
    none in another; Lloyd iterations rarely repair that (seen here: 5 clear blobs came out as
    4 clusters with one split). k-means++ on a slice of the sample avoids it.

    With many clusters (``STEPWISE_MIN_K``) the fit runs one FAISS call per iteration
    (``lloyd_iterations``), so each is reported as it ends; the centroids are bit for bit
    those of one ``faiss.Kmeans`` call. Each call rescans the sample for NaNs on one core,
    which costs too much of an iteration with fewer clusters: then the fit is one call and
    its iterations are reported when it ends. ``stepwise`` forces either way (tests).
    """
    init = initial_centroids(sample, k, seed, metric)
    if stepwise is None:
        stepwise = reports_live(k)
    if len(sample) <= k or not stepwise:  # (n <= k: FAISS copies the rows; as it does)
        fit = _one_call(sample, init, k, niter, seed, metric)
        for iteration, objective in enumerate(fit.trace, start=1):  # told after the fact
            if on_iteration is not None:
                on_iteration(iteration, objective)
        return fit
    centroids, trace = lloyd_iterations(sample, init, niter, seed, metric, on_iteration)
    return KMeansFit(centroids, float(trace[-1]) if trace else float("nan"), tuple(trace))


def reports_live(k: int) -> bool:
    """Whether a fit with ``k`` clusters reports each iteration as it ends."""
    return k >= STEPWISE_MIN_K


def initial_centroids(sample: np.ndarray, k: int, seed: int, metric: str) -> np.ndarray:
    """k-means++ seeds from the first rows of the sample (unit-norm for cosine)."""
    seeds_from = sample[: min(len(sample), max(PLUSPLUS_ROWS_PER_K * k, PLUSPLUS_MIN_ROWS))]
    init = kmeans_plusplus_seeds(seeds_from, k, seed)
    if metric == "cosine":
        init /= np.linalg.norm(init, axis=1, keepdims=True)
    return init


def _clustering_parameters(n: int, k: int, niter: int, seed: int) -> faiss.ClusteringParameters:
    params = faiss.ClusteringParameters()
    params.niter = niter
    params.seed = seed
    params.max_points_per_centroid = max(1, -(-n // k))  # the whole sample: no subsampling
    params.min_points_per_centroid = 1
    params.verbose = False
    return params


def _one_call(
    sample: np.ndarray, init: np.ndarray, k: int, niter: int, seed: int, metric: str
) -> KMeansFit:
    """One ``faiss.Kmeans`` call (the fit ``lloyd_iterations`` equals, for n <= k)."""
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
    trace: list[float] = list(kmeans.obj) if kmeans.obj is not None else []
    objective = float(trace[-1]) if len(trace) else float("nan")
    centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
    return KMeansFit(centroids, objective, tuple(float(v) for v in trace))


def lloyd_iterations(
    sample: np.ndarray,
    init: np.ndarray,
    niter: int,
    seed: int,
    metric: str,
    on_iteration: IterationCallback | None = None,
) -> tuple[np.ndarray, list[float]]:
    """FAISS's k-means (``Clustering::train``) from ``init``, one iteration per call, so
    progress can be reported between them; the same centroids, bit for bit, and the same
    objectives as one call with ``niter`` iterations (tests/test_progress_logs.py compares
    them), because each call replays what FAISS does between its iterations:

    - FAISS normalises the centroids (``spherical``) before the first iteration and after
      each; a call given normalised centroids would normalise them once more (not always
      the same bits), so the calls run with ``spherical`` off and the same
      ``fvec_renorm_L2`` is applied here at those two points instead;
    - the empty-cluster split draws from a generator seeded afresh at each iteration, the
      sample is never subsampled (``max_points_per_centroid`` covers it), and the index is
      the same kind, emptied and refilled with the centroids at each iteration;
    - FAISS (1.14.2 on) stops early when the objective did not change
      (``early_stop_threshold``): the same float32 test is made here between calls."""
    x = np.ascontiguousarray(sample, dtype=np.float32)
    n, d = x.shape
    k = len(init)
    spherical = metric == "cosine"
    index = faiss.IndexFlatIP(d) if spherical else faiss.IndexFlatL2(d)
    params = _clustering_parameters(n, k, 1, seed)
    centroids = np.array(init, dtype=np.float32, order="C")
    if spherical:
        _renormalise(centroids)
    # FAISS 1.14.2 and later stop early (an unchanged objective); earlier ones do not
    threshold: float | None = getattr(params, "early_stop_threshold", None)
    trace: list[float] = []
    for iteration in range(1, niter + 1):
        clustering = faiss.Clustering(d, k, params)
        faiss.copy_array_to_vector(centroids.ravel(), clustering.centroids)
        clustering.train(x, index)
        centroids = faiss.vector_float_to_array(clustering.centroids).reshape(k, d)
        centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        if spherical:
            _renormalise(centroids)
        stats = clustering.iteration_stats.at(0)  # type: ignore[attr-defined]
        trace.append(float(stats.obj))
        if on_iteration is not None:
            on_iteration(iteration, trace[-1])
        if threshold is not None and len(trace) > 1 and _unchanged(trace[-2], trace[-1], threshold):
            break
    return centroids, trace


def _renormalise(centroids: np.ndarray) -> None:
    """FAISS's own normalisation of the centroids (``post_process_centroids``), in place."""
    k, d = centroids.shape
    faiss.fvec_renorm_L2(d, k, faiss.swig_ptr(centroids))  # type: ignore[attr-defined]


def _unchanged(previous: float, objective: float, threshold: float) -> bool:
    """FAISS's early stop: |previous - objective| / |previous| <= threshold, in float32."""
    before, now = np.float32(previous), np.float32(objective)
    if before == 0:
        return False
    return float(np.abs(before - now) / np.abs(before)) <= threshold


def kmeans_plusplus_seeds(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ (Arthur and Vassilvitskii): each seed drawn with probability proportional
    to its squared distance to the nearest seed so far, one candidate per step.

    Distances are float64, their dot products one BLAS matrix-vector product per step
    (17x faster than per-row numpy sums; the same rows give the same bits at any memory
    alignment, checked); scikit-learn's version cost 4 s for k = 1000 here, this one 0.1 s.
    """
    rng = np.random.default_rng(seed)
    x64 = np.ascontiguousarray(x, dtype=np.float64)
    squared = (x64 * x64).sum(axis=1)

    def distance_to(row: int) -> np.ndarray:
        return np.maximum(squared + squared[row] - 2.0 * (x64 @ x64[row]), 0.0)

    chosen = [int(rng.integers(len(x)))]
    nearest = distance_to(chosen[0])
    for _ in range(1, k):
        total = float(nearest.sum())
        if total > 0:
            pick = int(np.searchsorted(np.cumsum(nearest), rng.random() * total, side="right"))
            pick = min(pick, len(x) - 1)
        else:  # every row sits on a seed already
            pick = int(rng.integers(len(x)))
        chosen.append(pick)
        nearest = np.minimum(nearest, distance_to(pick))
    return np.ascontiguousarray(x[chosen], dtype=np.float32)


class Assigner:
    """Nearest centroid by a flat FAISS index (one GEMM per batch)."""

    def __init__(self, centroids: np.ndarray, metric: str) -> None:
        self.metric = metric
        dim = centroids.shape[1]
        self.index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.index.add(self.centroids)

    def __getstate__(self) -> dict[str, object]:  # a FAISS index does not pickle: rebuild it
        return {"centroids": self.centroids, "metric": self.metric}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["centroids"], state["metric"])  # type: ignore[misc]

    def assign_stream(
        self,
        batches: Iterator[tuple[pa.Array, np.ndarray]],
        per_row: Callable[[np.ndarray], np.ndarray],
    ) -> Iterator[tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]]:
        """(ids, cluster, distance, per_row(vectors)) per batch, in order, searched on
        worker threads of one OpenMP thread each while this thread reads the next batches.

        One multi-threaded search at a time with reading in between left cores idle, and a
        read-ahead thread beside FAISS's OpenMP threads slowed them (they wait on each
        other when one loses its core); one single-threaded search per core does neither.
        Small batches (``SEARCH_ROWS``) keep each one in cache from its read to its search;
        each is searched in pieces of ``SEARCH_PIECE`` rows, so when the pool drains at
        the end of a shard the last piece keeps one core busy for a quarter as long.
        ``per_row`` (the stage's vector hashes, a Python loop over rows) runs on the
        worker with each piece: on this thread it held the GIL for a millisecond per batch
        while a worker that had finished its search waited for it to return.
        """
        workers = max(1, faiss.omp_get_max_threads())
        Piece = Future[tuple[np.ndarray, np.ndarray, np.ndarray]]
        pending: deque[tuple[pa.Array, list[Piece]]] = deque()

        def piece(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return *self.assign(vectors), per_row(vectors)

        def result(ids: pa.Array, pieces: list[Piece]
                   ) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
            labels, distance, extra = zip(*(future.result() for future in pieces), strict=True)
            return ids, np.concatenate(labels), np.concatenate(distance), np.concatenate(extra)

        with ThreadPoolExecutor(
            workers, initializer=faiss.omp_set_num_threads, initargs=(1,)
        ) as pool:
            for ids, vectors in batches:
                starts = range(0, max(len(vectors), 1), SEARCH_PIECE)
                pieces = [pool.submit(piece, vectors[i : i + SEARCH_PIECE]) for i in starts]
                pending.append((ids, pieces))
                if len(pending) > workers:
                    yield result(*pending.popleft())
            while pending:
                yield result(*pending.popleft())

    def assign(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cluster int32, distance float32): cosine distance 1 - cos, or squared L2.

        FAISS finds the nearest centroid with one GEMM, whose last bits depend on the batch
        a row is in; the distance is then recomputed row by row (FAISS's by-index kernels,
        one fixed SIMD reduction per row), so its bytes do not; a numpy gather and row-wise
        dot did the same at several times the cost.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        _, labels = self.index.search(vectors, 1)
        distance = np.empty(len(vectors), dtype=np.float32)
        # (both are in FAISS's Python module, not in its type stubs)
        if self.metric == "cosine":
            by_index = faiss.fvec_inner_products_by_idx  # type: ignore[attr-defined]
        else:
            by_index = faiss.fvec_L2sqr_by_idx  # type: ignore[attr-defined]
        by_index(faiss.swig_ptr(distance), faiss.swig_ptr(vectors),
                 faiss.swig_ptr(self.centroids), faiss.swig_ptr(labels),
                 vectors.shape[1], len(vectors), 1)  # fmt: skip
        if self.metric == "cosine":
            distance = (1.0 - distance.astype(np.float64)).astype(np.float32)
        return labels[:, 0].astype(np.int32), np.maximum(distance, 0)


def choose_k(
    sample: np.ndarray,
    grid: tuple[int, ...],
    niter: int,
    seed: int,
    metric: str,
    on_k: Callable[[int], None] | None = None,
) -> tuple[int, dict[int, float]]:
    """The k of the grid with the best silhouette score on (a subsample of) the sample;
    ``on_k`` is told each k of the grid once it is tried."""
    fit_rows = sample[:20_000]
    scores: dict[int, float] = {}
    for k in grid:
        score = _silhouette(fit_rows, k, niter, seed, metric)
        if score is not None:
            scores[k] = score
        if on_k is not None:
            on_k(k)
    if not scores:
        raise ValueError("no k of the grid fits this sample")
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def _silhouette(fit_rows: np.ndarray, k: int, niter: int, seed: int, metric: str) -> float | None:
    """The silhouette score of a k-means fit with ``k`` clusters (None: k does not fit)."""
    from sklearn.metrics import silhouette_score

    if k < 2 or k > len(fit_rows) // 2:
        return None
    score_rows = min(len(fit_rows), 5_000)
    fit = fit_kmeans(fit_rows, k, niter, seed, metric)
    labels, _ = Assigner(fit.centroids, metric).assign(fit_rows[:score_rows])
    if len(np.unique(labels)) < 2:
        return None
    return float(
        silhouette_score(
            fit_rows[:score_rows],
            labels,
            metric="cosine" if metric == "cosine" else "euclidean",
        )
    )


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
