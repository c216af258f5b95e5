"""Selection strategies: pure functions from per-row columns to the chosen rows.

Rows arrive in a canonical order (sorted by id), and every random draw comes from the
keyed hash of (seed, id), so a selection does not depend on sharding, row order or engine.
Every strategy returns exactly ``budget`` rows when the data has that many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.errors import DataError

STRATEGIES = ("random", "top-k", "kmeans-closest", "kmeans-random", "kmq", "iterative", "bandit")
NEEDS_CLUSTERS = ("kmeans-closest", "kmeans-random", "kmq", "iterative", "bandit")
NEEDS_SCORE = ("top-k", "kmq", "bandit")
ALLOCATIONS = ("proportional", "equal")


@dataclass
class Pool:
    """The per-row columns a strategy sees, in canonical (id) order."""

    keys: np.ndarray  # uint64, keyed hash of (seed, id)
    cluster: np.ndarray | None = None  # int32
    distance: np.ndarray | None = None  # float32
    score: np.ndarray | None = None  # float64

    def __len__(self) -> int:
        return len(self.keys)


@dataclass
class Selection:
    rows: np.ndarray  # indices into the pool, in selection order
    reasons: np.ndarray  # one short text per pool row


def uniform01(keys: np.ndarray) -> np.ndarray:
    """Keys -> floats in (0, 1), exactly representable, never 0 or 1."""
    return ((keys >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def allocate(sizes: np.ndarray, budget: int, mode: str) -> np.ndarray:
    """Rows to take per cluster; sums to ``budget`` exactly and never exceeds a size.

    proportional: budget * size / total, floored, the remainder to the largest fractions
    (largest-remainder rounding; ties to the lower cluster id). equal: the same share for
    every cluster, with what a small cluster cannot use handed to those that still have rows.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if budget > total:
        raise ValueError(f"budget {budget} exceeds {total} rows")
    if mode == "proportional":
        return allocate_weighted(sizes.astype(np.float64), sizes, budget)
    quota = np.zeros(len(sizes), dtype=np.int64)
    left = budget
    while left > 0:
        open_ = np.flatnonzero(quota < sizes)
        share = left // len(open_)
        if share == 0:  # fewer rows left than open clusters: largest room first, then id
            room = sizes[open_] - quota[open_]
            first = open_[np.lexsort((open_, -room))][:left]
            quota[first] += 1
            break
        grant = np.minimum(share, sizes[open_] - quota[open_])
        quota[open_] += grant
        left -= int(grant.sum())
    return quota


def allocate_weighted(shares: np.ndarray, capacity: np.ndarray, budget: int) -> np.ndarray:
    """Rows per cluster in proportion to ``shares``, never above ``capacity``; sums to
    ``budget`` exactly (it must not exceed the total capacity).

    Clusters whose exact share exceeds their capacity are filled and the rest of the budget
    is shared again among the others (water-filling); then largest-remainder rounding, ties
    to the lower cluster id. A cluster with share 0 gets rows only when nothing else can.
    """
    capacity = np.asarray(capacity, dtype=np.int64)
    shares = np.where(capacity > 0, np.asarray(shares, dtype=np.float64), 0.0)
    if budget > int(capacity.sum()):
        raise ValueError(f"budget {budget} exceeds {int(capacity.sum())} rows")
    exact = np.zeros(len(capacity))
    full = np.zeros(len(capacity), dtype=bool)
    while True:
        left = budget - float(capacity[full].sum())
        open_shares = np.where(full, 0.0, shares)
        if open_shares.sum() <= 0:  # only zero-share clusters remain: share by capacity
            open_shares = np.where(full, 0.0, capacity.astype(np.float64))
        if left <= 0 or open_shares.sum() <= 0:
            exact = np.where(full, capacity, 0.0)
            break
        exact = np.where(full, capacity, left * open_shares / open_shares.sum())
        over = ~full & (exact >= capacity)
        if not over.any():
            break
        full |= over
    quota = np.minimum(np.floor(exact).astype(np.int64), capacity)
    left = budget - int(quota.sum())
    fraction = np.where(quota < capacity, exact - quota, -1.0)
    order = np.lexsort((np.arange(len(capacity)), -fraction))
    quota[order[:left]] += 1
    return quota


def softmax_logits(score: np.ndarray, temperature: float) -> np.ndarray:
    """score / T, refused when it overflows (a huge score over a small T): the draw's
    weights would be NaN."""
    with np.errstate(over="ignore"):
        logits = np.asarray(score, dtype=np.float64) / temperature
    if not np.isfinite(logits).all():
        raise DataError(
            f"score / --temperature overflows (largest |score| {np.abs(score).max():.3g}, "
            f"T {temperature:g}): use a larger --temperature or rescale the scores"
        )
    return logits


def within_cluster_order(pool: Pool, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Every row, grouped by cluster, each cluster's rows in the order they are drawn:
    a weighted draw without replacement with weight softmax(score / T) when the pool has a
    score (Efraimidis-Spirakis), else uniform (keyed). Returns (order, start of each cluster).
    """
    assert pool.cluster is not None
    k = int(pool.cluster.max()) + 1
    if pool.score is None:
        rank_key = pool.keys.astype(np.float64)
    else:
        logits = softmax_logits(pool.score, temperature)
        top = np.full(k, -np.inf)
        np.maximum.at(top, pool.cluster, logits)
        log_weight = logits - top[pool.cluster]
        # E / w with E ~ Exp(1): the smallest values win; in logs, so no overflow at small T
        rank_key = np.log(-np.log(uniform01(pool.keys))) - log_weight
    order = np.lexsort((np.arange(len(pool)), rank_key, pool.cluster))
    starts = np.searchsorted(pool.cluster[order], np.arange(k + 1))
    return order, starts


PER_CLUSTER_DRAW = {
    "kmeans-closest": "closest to its centroid",
    "kmeans-random": "random within its cluster",
    "kmq": "drawn by softmax(score / T) within its cluster",
}


def reason_texts(
    strategy: str, group: np.ndarray, rank: np.ndarray, quota: np.ndarray
) -> list[str]:
    """Why each chosen row was kept: its strategy, and its 0-based ``rank`` in its group
    (the whole pool for random and top-k, else its cluster, whose quota is ``quota[group]``)."""
    if strategy == "random":
        return ["random draw"] * len(rank)
    if strategy == "top-k":
        return [f"score rank {r + 1}" for r in rank.tolist()]
    what = PER_CLUSTER_DRAW[strategy]
    return [
        f"{what} (rank {r + 1} of {quota[c]} in cluster {c})"
        for c, r in zip(group.tolist(), rank.tolist(), strict=True)
    ]


def select(
    pool: Pool, strategy: str, budget: int, allocation: str, temperature: float
) -> Selection:
    n = len(pool)
    reasons = np.full(n, "not selected", dtype=object)
    if strategy == "random":
        rows = np.argsort(pool.keys, kind="stable")[:budget]
        group, rank, quota = np.zeros(budget, np.int64), np.arange(budget), np.array([budget])
    elif strategy == "top-k":
        assert pool.score is not None
        # equal scores in the keyed (seed, id) order: a uniform, repeatable tie-break (id
        # order would take an id-sorted corpus's first labels)
        rows = np.lexsort((np.arange(n), pool.keys, -pool.score))[:budget]
        group, rank, quota = np.zeros(budget, np.int64), np.arange(budget), np.array([budget])
    else:
        assert pool.cluster is not None
        rows, group, rank, quota = _per_cluster(pool, strategy, budget, allocation, temperature)
    if len(rows):
        reasons[rows] = reason_texts(strategy, group, rank, quota)
    return Selection(rows=np.asarray(rows, dtype=np.int64), reasons=reasons)


def _per_cluster(
    pool: Pool, strategy: str, budget: int, allocation: str, temperature: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The chosen rows, cluster by cluster, with each one's cluster, rank in it, and the
    clusters' quotas."""
    assert pool.cluster is not None
    k = int(pool.cluster.max()) + 1
    sizes = np.bincount(pool.cluster, minlength=k)
    quota = allocate(sizes, budget, allocation)
    n = len(pool)
    if strategy == "kmeans-closest":
        assert pool.distance is not None
        order = np.lexsort((np.arange(n), pool.distance.astype(np.float64), pool.cluster))
        starts = np.searchsorted(pool.cluster[order], np.arange(k))
    elif strategy == "kmeans-random":
        order, starts = within_cluster_order(Pool(keys=pool.keys, cluster=pool.cluster), 1.0)
    else:
        assert pool.score is not None
        order, starts = within_cluster_order(pool, temperature)
    taken = np.flatnonzero(quota)
    chosen = [order[starts[c] : starts[c] + quota[c]] for c in taken]
    rows = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    group = np.repeat(taken, quota[taken])
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(quota[taken]) - quota[taken], quota[taken])
    return rows, group, rank, quota
