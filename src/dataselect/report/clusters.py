"""Which rows a report shows for each cluster: the cards' examples and the texts its topics
are read from. Positions only (rows of the sample input); the texts come later, in one pass
over the source (``texts.py``).

Every choice is by a column (distance to the centroid, score) or by the rows' keys, so the
same selection gives the same report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CARD_CLUSTERS = 48  # cards for the largest clusters; the table lists more
TABLE_CLUSTERS = 2_000  # clusters in the table (the largest), each with its top terms
EXAMPLES = 3  # texts of each kind on a card
TOPIC_TEXTS = 40_000  # texts read for the top terms, over all clusters
TOPIC_PER_CLUSTER = (20, 300)  # at least, at most, per cluster


@dataclass
class ClusterView:
    """One cluster as the report shows it."""

    cluster: int
    rows: int
    selected: int
    nearest: list[int] = field(default_factory=list)  # closest to the centroid
    chosen: list[int] = field(default_factory=list)  # selected rows, in keyed order
    rejected: list[int] = field(default_factory=list)  # not selected, lowest score first
    topic_rows: list[int] = field(default_factory=list)  # a keyed sample, for the terms
    terms: list[str] = field(default_factory=list)
    card: bool = False  # among the largest: shown with its examples

    @property
    def positions(self) -> list[int]:
        """Every row whose text this view needs."""
        return [*self.nearest, *self.chosen, *self.rejected, *self.topic_rows]


def cluster_views(
    cluster: np.ndarray,
    selected: np.ndarray,
    keys: np.ndarray,
    distance: np.ndarray | None = None,
    score: np.ndarray | None = None,
    kept: np.ndarray | None = None,
) -> list[ClusterView]:
    """Views of the ``TABLE_CLUSTERS`` largest clusters, largest first (ties: lower id);
    examples for the first ``CARD_CLUSTERS``. ``score``: rejected rows are shown lowest
    first (else in keyed order); ``kept``: rows a dedup stage dropped are not shown as
    rejected (the dedup section shows them)."""
    if not len(cluster):
        return []
    k = int(cluster.max()) + 1
    sizes = np.bincount(cluster, minlength=k)
    picked = np.bincount(cluster[selected], minlength=k)
    shown = np.lexsort((np.arange(k), -sizes))[: min(k, TABLE_CLUSTERS)]
    shown = shown[sizes[shown] > 0]
    keyed = _grouped(cluster, keys)
    nearest = _grouped(cluster, keys, distance) if distance is not None else keyed
    candidates = ~selected if kept is None else ~selected & kept
    lowest = _grouped(cluster, keys, _finite_last(score)) if score is not None else keyed
    per_topic = int(np.clip(TOPIC_TEXTS // max(len(shown), 1), *TOPIC_PER_CLUSTER))
    views = []
    for rank, c in enumerate(shown.tolist()):
        view = ClusterView(c, int(sizes[c]), int(picked[c]))
        in_keyed = keyed[c]
        view.topic_rows = in_keyed[:per_topic].tolist()
        if rank < CARD_CLUSTERS:
            view.card = True
            view.nearest = nearest[c][:EXAMPLES].tolist()
            view.chosen = in_keyed[selected[in_keyed]][:EXAMPLES].tolist()
            order = lowest[c]
            view.rejected = order[candidates[order]][:EXAMPLES].tolist()
        views.append(view)
    return views


def empty_clusters(cluster: np.ndarray, selected: np.ndarray) -> list[int]:
    """Clusters holding rows of which none was selected, largest first."""
    if not len(cluster):
        return []
    k = int(cluster.max()) + 1
    sizes = np.bincount(cluster, minlength=k)
    picked = np.bincount(cluster[selected], minlength=k)
    empty = np.flatnonzero((sizes > 0) & (picked == 0))
    return empty[np.lexsort((empty, -sizes[empty]))].tolist()


def _grouped(
    cluster: np.ndarray, keys: np.ndarray, first: np.ndarray | None = None
) -> dict[int, np.ndarray]:
    """Each cluster's rows, ordered by ``first`` (then by key), or by key alone."""
    order = np.lexsort((keys, cluster) if first is None else (keys, first, cluster))
    bounds = np.searchsorted(cluster[order], np.arange(int(cluster.max()) + 2))
    return {c: order[bounds[c] : bounds[c + 1]] for c in range(len(bounds) - 1)}


def _finite_last(values: np.ndarray) -> np.ndarray:
    """NaN (no score) sorts after every score."""
    return np.where(np.isnan(values), np.inf, values)
