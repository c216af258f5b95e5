"""kmeans-closest (kM-Closest): in each cluster, the rows nearest its centroid."""

from __future__ import annotations

import numpy as np

from dataselect.sampling.strategy import OneShotStrategy, SortColumns, StrategyTraits


class KmeansClosestStrategy(OneShotStrategy):
    names = ("kmeans-closest",)
    summary = (
        "in each cluster, the rows nearest its centroid (with k = budget, one per cluster): a "
        "strong, simple diversity baseline."
    )
    traits = StrategyTraits(needs_clusters=True, needs_distance=True, one_per_vector=True)
    default_allocation = "equal"
    keyed = False
    draw = "closest to its centroid"

    def sort_keys(self, rows: SortColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        assert rows.cluster is not None and rows.distance is not None
        return rows.cluster, rows.distance.astype(np.float64), None
