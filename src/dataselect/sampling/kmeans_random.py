"""kmeans-random (kM-Random): the budget spread over the clusters, uniform within each."""

from __future__ import annotations

import numpy as np

from dataselect.sampling.strategy import OneShotStrategy, SortColumns, StrategyTraits


class KmeansRandomStrategy(OneShotStrategy):
    names = ("kmeans-random",)
    summary = "the budget spread over the clusters (--allocation), a uniform draw in each."
    traits = StrategyTraits(needs_clusters=True)
    draw = "random within its cluster"

    def sort_keys(self, rows: SortColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        assert rows.cluster is not None
        return rows.cluster, rows.keys.astype(np.float64), None
