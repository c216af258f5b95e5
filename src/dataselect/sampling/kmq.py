"""kmq (k-means + quality): the budget per cluster, drawn within each with probability
softmax(score / T), without replacement."""

from __future__ import annotations

import numpy as np

from dataselect.sampling.strategies import softmax_logits, uniform01
from dataselect.sampling.strategy import OneShotStrategy, SortColumns, StrategyTraits


class KmqStrategy(OneShotStrategy):
    names = ("kmq",)
    summary = (
        "the budget per cluster in proportion to its size, drawn within each with probability "
        "softmax(--score-column / --temperature), without replacement."
    )
    traits = StrategyTraits(needs_clusters=True, needs_score=True)
    needs_cluster_top = True
    draw = "drawn by softmax(score / T) within its cluster"

    def sort_keys(self, rows: SortColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """A weighted draw without replacement (Efraimidis-Spirakis): E / w with E ~ Exp(1)
        from the keyed hash, smallest first; in logs, so no overflow at a small T. A row's
        weight is measured against its cluster's largest (``top``)."""
        assert rows.cluster is not None and rows.score is not None and rows.top is not None
        log_weight = softmax_logits(rows.score, rows.temperature) - rows.top[rows.cluster]
        return rows.cluster, np.log(-np.log(uniform01(rows.keys))) - log_weight, None
