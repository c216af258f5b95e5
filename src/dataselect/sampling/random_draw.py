"""random: a seeded uniform sample, the baseline every benchmark includes."""

from __future__ import annotations

import numpy as np

from dataselect.sampling.strategy import OneShotStrategy, SortColumns


class RandomStrategy(OneShotStrategy):
    names = ("random",)
    summary = "a uniform draw (keyed by seed and id): the baseline."
    per_cluster = False
    primary_type = np.uint64

    def sort_keys(self, rows: SortColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return np.zeros(len(rows.keys), np.int32), rows.keys, None

    def reasons(self, group: np.ndarray, rank: np.ndarray, quota: np.ndarray) -> list[str]:
        return ["random draw"] * len(rank)
