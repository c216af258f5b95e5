"""top-k: the rows with the highest score."""

from __future__ import annotations

import numpy as np

from dataselect.sampling.strategy import OneShotStrategy, SortColumns, StrategyTraits


class TopKStrategy(OneShotStrategy):
    names = ("top-k",)
    summary = "the rows with the highest --score-column."
    traits = StrategyTraits(needs_score=True, one_per_vector=True)
    per_cluster = False

    def sort_keys(self, rows: SortColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        # equal scores in the keyed (seed, id) order: a uniform, repeatable tie-break (id
        # order would take an id-sorted corpus's first labels)
        assert rows.score is not None
        return np.zeros(len(rows.keys), np.int32), -rows.score, rows.keys

    def reasons(self, group: np.ndarray, rank: np.ndarray, quota: np.ndarray) -> list[str]:
        return [f"score rank {r + 1}" for r in rank.tolist()]
