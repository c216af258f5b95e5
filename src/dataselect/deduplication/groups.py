"""Which row of a group of duplicates is kept: the first in a fixed order (keyed order, or
closest to the centroid), so the choice does not depend on sharding or engine.

Given candidate pairs (rows a, b, similarity), rows are visited in order; a row is dropped
when a row before it that was kept is its duplicate, and names the most similar such row.
Every dropped row thus points at a kept row it is similar to (no chains), and no two kept
rows form a pair."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NO_ROW = -1


@dataclass
class Verdicts:
    """Per row of the compared set: the row it duplicates (NO_ROW: kept) and how similar."""

    duplicate_of: np.ndarray  # int64
    similarity: np.ndarray  # float32 (NaN where kept)

    @classmethod
    def all_kept(cls, n: int) -> Verdicts:
        return cls(np.full(n, NO_ROW, dtype=np.int64), np.full(n, np.nan, dtype=np.float32))

    @property
    def dropped(self) -> np.ndarray:
        return self.duplicate_of != NO_ROW


def keep_first(rank: np.ndarray, a: np.ndarray, b: np.ndarray, similarity: np.ndarray) -> Verdicts:
    """Verdicts for rows 0..n-1 visited in ``rank`` order (distinct ranks), given pairs
    (a[i], b[i]) of duplicates with their similarity."""
    n = len(rank)
    verdicts = Verdicts.all_kept(n)
    if len(a) == 0:
        return verdicts
    # each pair as (later row, earlier row): only an earlier row can make a row a duplicate
    later = np.where(rank[a] > rank[b], a, b)
    earlier = np.where(rank[a] > rank[b], b, a)
    # visit later rows in rank order; within one, candidates by similarity, then rank
    order = np.lexsort((rank[earlier], -similarity, rank[later]))
    later, earlier, similarity = later[order], earlier[order], similarity[order]
    kept = np.ones(n, dtype=bool)
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
    ends = np.r_[starts[1:], len(later)]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        row = int(later[start])
        for k in range(start, end):  # the best kept earlier row (ranks below are final)
            if kept[earlier[k]]:
                kept[row] = False
                verdicts.duplicate_of[row] = earlier[k]
                verdicts.similarity[row] = similarity[k]
                break
    return verdicts


def exact_groups(rank: np.ndarray, hashes: np.ndarray) -> Verdicts:
    """Rows with equal hashes (an (n, 2) array) are one group; its first row in rank order
    is kept and every other names it."""
    n = len(rank)
    verdicts = Verdicts.all_kept(n)
    if n == 0:
        return verdicts
    order = np.lexsort((rank, hashes[:, 1], hashes[:, 0]))
    sorted_hashes = hashes[order]
    new_group = np.r_[True, (sorted_hashes[1:] != sorted_hashes[:-1]).any(axis=1)]
    leader = order[np.flatnonzero(new_group)][np.cumsum(new_group) - 1]
    copies = ~new_group
    verdicts.duplicate_of[order[copies]] = leader[copies]
    verdicts.similarity[order[copies]] = 1.0
    return verdicts
