"""The selection machinery the strategies share: the pool of per-row columns, budgets per
cluster, and the in-memory one-shot selection by a strategy's sort keys.

Rows arrive in a canonical order (sorted by id), and every random draw comes from the
keyed hash of (seed, id), so a selection does not depend on sharding, row order or engine.
Every strategy returns exactly ``budget`` rows when the data has that many.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.errors import DataError
from dataselect.sampling.strategy import OneShotStrategy, SortColumns

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

    def subset(self, rows: np.ndarray) -> Pool:
        """The pool of ``rows`` only (in their order)."""

        def take(column: np.ndarray | None) -> np.ndarray | None:
            return None if column is None else column[rows]

        return Pool(self.keys[rows], take(self.cluster), take(self.distance), take(self.score))


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


def cluster_top(cluster: np.ndarray, score: np.ndarray, temperature: float, k: int) -> np.ndarray:
    """Each cluster's largest score / T (kmq measures a row's weight against it)."""
    top = np.full(k, -np.inf)
    np.maximum.at(top, cluster, softmax_logits(score, temperature))
    return top


def select(
    pool: Pool, strategy: OneShotStrategy, budget: int, allocation: str, temperature: float
) -> Selection:
    """The one-shot ``strategy``'s ``budget`` rows of the pool, all sorted at once by its
    sort keys (ties by pool index: id order), with each chosen row's reason."""
    n = len(pool)
    k = int(pool.cluster.max()) + 1 if pool.cluster is not None and n else 0
    top = None
    if strategy.needs_cluster_top:
        assert pool.cluster is not None and pool.score is not None
        top = cluster_top(pool.cluster, pool.score, temperature, k)
    rows = SortColumns(pool.keys, pool.cluster, pool.distance, pool.score, top, temperature)
    group, primary, secondary = strategy.sort_keys(rows)
    if strategy.per_cluster:
        assert pool.cluster is not None
        quota = allocate(np.bincount(pool.cluster, minlength=k), budget, allocation)
    else:
        quota = np.array([budget], dtype=np.int64)
    tie = np.zeros(n, dtype=np.uint64) if secondary is None else secondary
    order = np.lexsort((np.arange(n), tie, primary, group))
    starts = np.searchsorted(group[order], np.arange(len(quota)))
    taken = np.flatnonzero(quota)
    chosen = [order[starts[g] : starts[g] + quota[g]] for g in taken]
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    in_group = np.repeat(taken, quota[taken])
    rank = np.arange(len(picked)) - np.repeat(np.cumsum(quota[taken]) - quota[taken], quota[taken])
    reasons = np.full(n, "not selected", dtype=object)
    if len(picked):
        reasons[picked] = strategy.reasons(in_group, rank, quota)
    return Selection(rows=np.asarray(picked, dtype=np.int64), reasons=reasons)
