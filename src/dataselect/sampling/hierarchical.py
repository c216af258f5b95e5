"""hierarchical: balanced sampling down a tree of k-means levels (after Vo et al. 2024,
"Automatic data curation for self-supervised learning", Meta's ssl-data-curation).

The cluster stage's clusters are the leaves. Each level above is k-means on the centroids
of the level below (``--levels``, e.g. 100,10 over a cluster stage with k = 1000), with the
cluster stage's k-means (k-means++ seeds, FAISS, the same metric), so the tree is a
function of the centroids and the seed alone.

The budget goes down the tree: the top-level groups get equal shares (a group with fewer
rows gives what it cannot use to the others: kmeans-closest's "equal" allocation), then
each group's share is split equally among its children, and so on down to the leaves;
within a leaf the rows closest to its centroid go first (``--leaf-order closest``) or a
keyed random draw (``random``). Where a few topics hold most rows, each topic still gets
its share, which proportional sampling would give to the large ones.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataselect.errors import DataError, UsageError
from dataselect.io.output import StageOutput
from dataselect.options import at_least, one_of, option
from dataselect.sampling.strategies import Pool, Selection, allocate
from dataselect.sampling.strategy import AdaptiveStrategy, SampleContext, StrategyTraits

LEVEL_NITER = 20  # Lloyd iterations per level (the cluster stage's default)
LEVEL_RATIO = 10  # the default levels: k / 10, k / 100, ... while at least 2


def parse_levels(value: Any) -> tuple[int, ...]:
    """--levels 100,10: clusters per level above the cluster stage's, decreasing."""
    if value is None or value == ():
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        levels = tuple(int(p) for item in items for p in str(item).split(",") if p.strip())
    except ValueError:
        raise UsageError(f"must be cluster counts, comma-separated, not {value!r}") from None
    if any(k < 1 for k in levels) or list(levels) != sorted(levels, reverse=True):
        raise UsageError(f"must be positive and decreasing (e.g. 100,10), not {value!r}")
    return levels


def default_levels(k: int) -> tuple[int, ...]:
    levels = []
    while k // LEVEL_RATIO >= 2:
        k //= LEVEL_RATIO
        levels.append(k)
    return tuple(levels)


def build_tree(
    centroids: np.ndarray, levels: tuple[int, ...], seed: int, metric: str, resamples: int
) -> list[np.ndarray]:
    """For each level above the leaves, each node's parent (a node of the next level up).

    Each level is k-means on the nodes below, then ``resamples`` resampling steps (Vo et al.,
    section 4): k-means again on only the nodes closest to each centroid, about half the
    mean cluster size of each, and every node assigned to the new centroids. A dense region
    sends as many nodes to that fit as a sparse one, so the centroids spread over the
    concepts instead of following the density."""
    from dataselect.clustering.kmeans import Assigner, fit_kmeans

    parents = []
    nodes = np.ascontiguousarray(centroids, dtype=np.float32)
    for level, k in enumerate(levels):
        k = min(k, len(nodes))
        fit = fit_kmeans(nodes, k, LEVEL_NITER, seed + level, metric)
        parent, distance = Assigner(fit.centroids, metric).assign(nodes)
        per_cluster = max(1, round(len(nodes) / k / 2))
        for step in range(resamples if per_cluster > 1 else 0):
            order = np.lexsort((np.arange(len(nodes)), distance, parent))
            starts = np.searchsorted(parent[order], np.arange(k))
            rank = np.arange(len(nodes)) - starts[parent[order]]
            sample = np.ascontiguousarray(nodes[np.sort(order[rank < per_cluster])])
            fit = fit_kmeans(sample, min(k, len(sample)), LEVEL_NITER,
                             seed + 1000 * (level + 1) + step, metric)  # fmt: skip
            parent, distance = Assigner(fit.centroids, metric).assign(nodes)
        # renumber the parents that have children (a resampled centroid may get none)
        used, parent = np.unique(parent, return_inverse=True)
        parents.append(parent.astype(np.int64))
        nodes = np.ascontiguousarray(fit.centroids[used])
    return parents


def balanced_quotas(leaf_sizes: np.ndarray, parents: list[np.ndarray], budget: int) -> np.ndarray:
    """Rows per leaf: equal shares at the top level, then equal shares among each node's
    children, level by level down to the leaves; sums to ``budget`` exactly."""
    # sizes of every level's nodes, leaves first
    sizes = [np.asarray(leaf_sizes, dtype=np.int64)]
    for parent in parents:
        sizes.append(np.bincount(parent, weights=sizes[-1], minlength=int(parent.max()) + 1)
                     .astype(np.int64))  # fmt: skip
    quota = allocate(sizes[-1], budget, "equal")  # the top level
    for level in range(len(parents) - 1, -1, -1):  # split each node's quota among children
        parent, child_sizes = parents[level], sizes[level]
        below = np.zeros(len(child_sizes), dtype=np.int64)
        order = np.argsort(parent, kind="stable")
        bounds = np.searchsorted(parent[order], np.arange(len(quota) + 1))
        for node in np.flatnonzero(quota).tolist():
            children = order[bounds[node] : bounds[node + 1]]
            below[children] = allocate(child_sizes[children], int(quota[node]), "equal")
        quota = below
    return quota


@dataclass(frozen=True)
class HierarchicalOptions:
    levels: tuple[int, ...] = option(
        (),
        "hierarchical: clusters per level above the cluster stage's, comma-separated and "
        "decreasing (100,10) \\[default: k/10, k/100, ... while at least 2].",
        parse=parse_levels,
        cli_type=str,
    )
    resamples: int = option(
        10,
        "hierarchical: resampling steps per level (k-means again on the nodes closest to "
        "each centroid, so the levels balance over concepts, not density); 0: plain k-means.",
        parse=at_least(0),
    )
    leaf_order: str = option(
        "closest",
        "hierarchical: within a leaf cluster, closest to its centroid first, or random.",
        parse=one_of("closest", "random"),
    )


class HierarchicalStrategy(AdaptiveStrategy):
    names = ("hierarchical",)
    summary = (
        "k-means on the cluster stage's centroids, level by level (--levels), and the "
        "budget shared equally down the tree: every top-level topic gets its share, however "
        "few its rows; within a leaf, closest to its centroid first (--leaf-order)."
    )
    Options = HierarchicalOptions
    options: HierarchicalOptions
    traits = StrategyTraits(needs_clusters=True, needs_distance=True, streams=False)

    def choose(self, pool: Pool, budget: int, context: SampleContext) -> Selection:
        assert pool.cluster is not None and pool.distance is not None
        centroids, metric = self._centroids(context)
        k = len(centroids)
        if len(pool) and int(pool.cluster.max()) >= k:
            raise DataError(f"{context.dataset.path}: cluster ids exceed the {k} centroids")
        self.levels = self.options.levels or default_levels(k)
        parents = build_tree(centroids, self.levels, context.seed, metric, self.options.resamples)
        leaf_sizes = np.bincount(pool.cluster, minlength=k)
        quota = balanced_quotas(leaf_sizes, parents, budget)
        self.top = self._top_counts(quota, parents)
        within = pool.distance.astype(np.float64) if self.options.leaf_order == "closest" else (
            pool.keys.astype(np.float64))  # fmt: skip
        order = np.lexsort((np.arange(len(pool)), within, pool.cluster))
        starts = np.searchsorted(pool.cluster[order], np.arange(k))
        reasons = np.full(len(pool), "not selected", dtype=object)
        chosen = []
        how = "closest to its centroid" if self.options.leaf_order == "closest" else "random"
        for leaf in np.flatnonzero(quota).tolist():
            rows = order[starts[leaf] : starts[leaf] + quota[leaf]]
            chosen.append(rows)
            reasons[rows] = [
                f"hierarchical, {how} (rank {r + 1} of {quota[leaf]} in cluster {leaf})"
                for r in range(len(rows))
            ]
        rows = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        return Selection(rows=rows, reasons=reasons)

    @staticmethod
    def _top_counts(quota: np.ndarray, parents: list[np.ndarray]) -> list[int]:
        """Rows chosen under each top-level node (the leaves when there is no level)."""
        counts = quota
        for parent in parents:
            counts = np.bincount(parent, weights=counts, minlength=int(parent.max()) + 1)
        return [int(c) for c in counts]

    @staticmethod
    def _centroids(context: SampleContext) -> tuple[np.ndarray, str]:
        from dataselect.clustering.stage import CENTROIDS
        from dataselect.io.folder_state import artifact_bytes
        from dataselect.manifest import read_manifest

        folder = context.lineage.cluster_folder
        data = None if folder is None else artifact_bytes(folder, CENTROIDS)
        if folder is None or data is None:
            raise DataError(f"{context.dataset.path}: --strategy hierarchical needs the "
                            f"cluster folder's {CENTROIDS}")  # fmt: skip
        metric = str(read_manifest(folder).params.get("metric", "cosine"))
        return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32), metric

    def facts(self, output: StageOutput, context: SampleContext) -> dict[str, Any]:
        return {"hierarchical": {"levels": list(self.levels), "resamples": self.options.resamples,
                                 "rows_per_top_group": self.top}}  # fmt: skip
