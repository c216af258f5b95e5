"""facility-location: in each cluster, the rows that best cover the others.

The objective (Krause & Golovin; apricot's FacilityLocationSelection) is

    f(S) = sum_i w_i * max_{j in S} s(i, j),    s(i, j) = (1 + cos(i, j)) / 2

over the rows i of a cluster: every row should have a chosen row close to it. f is
monotone submodular, so the greedy choice (the row with the largest gain, one at a time)
is within 1 - 1/e of the best set, and the lazy greedy of Minoux gives the same picks
while re-evaluating only the rows whose stale gain still tops the heap.

s is kept sparse: each row is covered only by its ``neighbours`` nearest rows of the
cluster (FAISS exact inner-product search over the unit vectors), so memory and time are
bounded by the largest cluster's graph (rows x neighbours), never a dense n x n matrix.
The budget is shared among the clusters as kmeans-random shares it (--allocation), so the
selection runs cluster by cluster; the vectors are read once into a memory-mapped
temporary file (the OS pages them to disk when memory is short).

Ties in gain go to the smaller keyed (seed, id) draw, so the picks do not depend on row
order, sharding or engine. Weights w come from --score-column when given (min-max scaled
to [0, 1]: coverage of high-score rows counts more), else 1.
"""

from __future__ import annotations

import heapq
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.errors import DataError
from dataselect.io.output import StageOutput
from dataselect.options import at_least, option
from dataselect.sampling.strategies import Pool, Selection, allocate
from dataselect.sampling.strategy import AdaptiveStrategy, SampleContext, StrategyTraits


@dataclass
class CoverageGraph:
    """Who covers whom in one cluster: for candidate j, the rows it covers
    (``covered[starts[j]:starts[j + 1]]``) with their similarity to it."""

    starts: np.ndarray  # int64, candidates + 1
    covered: np.ndarray  # int64, row numbers within the cluster
    similarity: np.ndarray  # float64, in [0, 1]


def coverage_graph(vectors: np.ndarray, neighbours: int) -> CoverageGraph:
    """Each row's ``neighbours`` nearest rows (itself included) by cosine, turned around:
    per candidate, the rows it may cover."""
    import faiss

    n = len(vectors)
    raw = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    unit = np.ascontiguousarray(raw / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    k = min(neighbours, n)
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(unit)
    cosine, nearest = index.search(unit, k)
    row = np.repeat(np.arange(n, dtype=np.int64), k)
    candidate = nearest.ravel().astype(np.int64)
    similarity = np.clip((1.0 + cosine.ravel().astype(np.float64)) / 2.0, 0.0, 1.0)
    order = np.lexsort((row, candidate))
    starts = np.searchsorted(candidate[order], np.arange(n + 1))
    return CoverageGraph(starts, row[order], similarity[order])


def lazy_greedy(
    graph: CoverageGraph, budget: int, tiebreak: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``budget`` rows picked greedily for the facility-location objective over the
    graph, in pick order, with each pick's gain. ``tiebreak`` (uint64 per row): among equal
    gains the smallest goes first."""
    n = len(graph.starts) - 1
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    covered_by = np.zeros(n)  # each row's best similarity to a picked row so far
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(tiebreak, kind="stable")] = np.arange(n)

    def gain(j: int) -> float:
        lo, hi = graph.starts[j], graph.starts[j + 1]
        rows = graph.covered[lo:hi]
        better = graph.similarity[lo:hi] - covered_by[rows]
        return float((w[rows] * np.maximum(better, 0.0)).sum())

    owner = np.repeat(np.arange(n), np.diff(graph.starts))
    first = np.bincount(owner, weights=w[graph.covered] * graph.similarity, minlength=n)
    heap = list(zip((-first).tolist(), rank.tolist(), range(n), strict=True))
    heapq.heapify(heap)
    picked: list[int] = []
    gains: list[float] = []
    while len(picked) < budget and heap:
        _, order, j = heapq.heappop(heap)
        fresh = gain(j)
        if heap and (-fresh, order) > heap[0][:2]:  # stale: no longer on top
            heapq.heappush(heap, (-fresh, order, j))
            continue
        lo, hi = graph.starts[j], graph.starts[j + 1]
        rows = graph.covered[lo:hi]
        covered_by[rows] = np.maximum(covered_by[rows], graph.similarity[lo:hi])
        picked.append(j)
        gains.append(fresh)
    return np.asarray(picked, dtype=np.int64), np.asarray(gains)


def objective(graph: CoverageGraph, chosen: np.ndarray, weights: np.ndarray | None = None) -> float:
    """f(chosen) over the graph."""
    n = len(graph.starts) - 1
    covered_by = np.zeros(n)
    for j in np.asarray(chosen).tolist():
        lo, hi = graph.starts[j], graph.starts[j + 1]
        rows = graph.covered[lo:hi]
        covered_by[rows] = np.maximum(covered_by[rows], graph.similarity[lo:hi])
    w = np.ones(n) if weights is None else weights
    return float((w * covered_by).sum())


def score_weights(score: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to [0, 1] (all 1 when every score is equal)."""
    low, high = float(score.min()), float(score.max())
    if high <= low:
        return np.ones(len(score))
    return (score - low) / (high - low)


@dataclass(frozen=True)
class FacilityLocationOptions:
    neighbours: int = option(
        32, "facility-location: nearest rows that may cover a row (graph degree).",
        parse=at_least(2),
    )  # fmt: skip


class FacilityLocationStrategy(AdaptiveStrategy):
    names = ("facility-location",)
    summary = (
        "in each cluster (budget shared by --allocation), the rows that best cover the "
        "others: lazy greedy on sum_i max_(j chosen) (1 + cos(i, j)) / 2 over a FAISS "
        "--neighbours graph; --score-column weights the rows to cover."
    )
    Options = FacilityLocationOptions
    options: FacilityLocationOptions
    traits = StrategyTraits(needs_clusters=True, streams=False)
    timed_as = "kmeans-random"

    @classmethod
    def cost_notes(cls, options: FacilityLocationOptions) -> list[str]:
        return [
            "facility-location: reads every vector once more (into a temporary file beside "
            f"the output) and searches {options.neighbours} neighbours per row within its "
            "cluster: time grows with the largest cluster's rows squared"
        ]

    def choose(self, pool: Pool, budget: int, context: SampleContext) -> Selection:
        assert pool.cluster is not None
        k = int(pool.cluster.max()) + 1 if len(pool) else 0
        sizes = np.bincount(pool.cluster, minlength=k)
        quota = allocate(sizes, budget, context.allocation)
        weights = None if pool.score is None else score_weights(pool.score)
        by_cluster = np.argsort(pool.cluster, kind="stable")
        bounds = np.searchsorted(pool.cluster[by_cluster], np.arange(k + 1))
        reasons = np.full(len(pool), "not selected", dtype=object)
        chosen: list[np.ndarray] = []
        self.gains = np.zeros(len(pool), dtype=np.float32)
        total = 0.0
        with tempfile.TemporaryDirectory(prefix=".facility-", dir=context.spill_folder) as tmp:
            vectors = context.vectors(tmp)
            for c in np.flatnonzero(quota).tolist():
                rows = by_cluster[bounds[c] : bounds[c + 1]]  # pool rows, id order
                graph = coverage_graph(np.asarray(vectors[rows]), self.options.neighbours)
                w = None if weights is None else weights[rows]
                picked, gains = lazy_greedy(graph, int(quota[c]), pool.keys[rows], w)
                total += objective(graph, picked, w)
                taken = rows[picked]
                chosen.append(taken)
                self.gains[taken] = gains
                reasons[taken] = [
                    f"facility location (pick {r + 1} of {quota[c]} in cluster {c}, gain {g:.3f})"
                    for r, g in enumerate(gains.tolist())
                ]
            del vectors
        self.objective = total
        self.mean_coverage = total / max(len(pool), 1)
        rows = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        if len(rows) != budget:
            raise DataError(f"facility-location chose {len(rows)} rows of {budget}")
        return Selection(rows=rows, reasons=reasons)

    def decision_columns(self, rows: np.ndarray) -> dict[str, pa.Array]:
        return {"gain": pa.array(self.gains[rows])}

    def facts(self, output: StageOutput, context: SampleContext) -> dict[str, Any]:
        return {
            "facility_location": {
                "objective": round(self.objective, 4),
                "mean_coverage": round(self.mean_coverage, 6),
                "neighbours": self.options.neighbours,
            }
        }
