"""facility-location: in each cluster, the rows that best cover the others.

The objective (Krause & Golovin; apricot's FacilityLocationSelection) is

    f(S) = sum_i w_i * max_{j in S} s(i, j),    s(i, j) = (1 + cos(i, j)) / 2

over the rows i of a cluster: every row should have a chosen row close to it. f is
monotone submodular, so the greedy choice (the row with the largest gain, one at a time)
is within 1 - 1/e of the best set, and the lazy greedy of Minoux gives the same picks
while re-evaluating only the rows whose stale gain still tops the heap.

In a cluster of up to ``--dense-rows`` rows s is exact: every pair's similarity, one GEMM
(rows^2 x 4 bytes). In a larger one s is kept sparse: each row is covered only by its
``--neighbours`` nearest rows of the cluster (FAISS exact inner-product search), so memory
is bounded by the largest cluster's graph (rows x neighbours), never a dense n x n matrix.
The sparse objective is a different one, not only an approximation: a row none of whose
neighbours is chosen counts 0, where the dense objective still credits its best similarity
(about 0.5-0.8), so on the graph the first picks are the rows many others have as a near
neighbour (hubs). scripts/bench/selection_quality.py measures both. The budget is shared
among the clusters as kmeans-random shares it (--allocation), so the selection runs
cluster by cluster; the vectors are written once to a temporary file beside the output and
read back one cluster at a time (resident memory holds one cluster's vectors and
similarities, not the file).

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

LAZY_BATCH = 32  # stale candidates recomputed together at the top of the heap


class Coverage:
    """Who covers whom in one cluster, with what similarity: a candidate's gain against
    the rows' coverage so far, and the coverage after picking it."""

    rows: int
    dtype: type[np.floating] = np.float64  # of the coverage and weight vectors

    def initial_gains(self, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def gains(self, js: list[int], covered_by: np.ndarray, weights: np.ndarray) -> list[float]:
        """The gains of several candidates against the coverage so far."""
        raise NotImplementedError

    def cover(self, j: int, covered_by: np.ndarray) -> None:
        raise NotImplementedError


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    raw = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    return np.ascontiguousarray(raw / np.where(norms > 0, norms, 1.0), dtype=np.float32)


class DenseCoverage(Coverage):
    """Every pair's similarity (rows x rows float32): the exact objective, for clusters up
    to --dense-rows. Its gains are one matrix product per batch of candidates."""

    dtype = np.float32

    def __init__(self, vectors: np.ndarray) -> None:
        unit = unit_rows(vectors)
        self.rows = len(unit)
        similarity = unit @ unit.T  # symmetric: row j is candidate j's column
        similarity += 1.0
        similarity *= 0.5
        np.clip(similarity, 0.0, 1.0, out=similarity)
        self.similarity = similarity

    def initial_gains(self, weights: np.ndarray) -> np.ndarray:
        return (weights.astype(np.float32) @ self.similarity).astype(np.float64)

    def gains(self, js: list[int], covered_by: np.ndarray, weights: np.ndarray) -> list[float]:
        better = np.maximum(self.similarity[js] - covered_by, 0.0)
        return [float(g) for g in better @ weights]

    def cover(self, j: int, covered_by: np.ndarray) -> None:
        np.maximum(covered_by, self.similarity[j], out=covered_by)


class GraphCoverage(Coverage):
    """Each row covered only by its ``neighbours`` nearest rows (itself included), by
    cosine (FAISS exact inner-product search), turned around: per candidate j, the rows it
    covers are ``covered[starts[j]:starts[j + 1]]``."""

    def __init__(self, vectors: np.ndarray, neighbours: int) -> None:
        import faiss

        unit = unit_rows(vectors)
        n = self.rows = len(unit)
        k = min(neighbours, n)
        index = faiss.IndexFlatIP(unit.shape[1])
        index.add(unit)
        cosine, nearest = index.search(unit, k)
        row = np.repeat(np.arange(n, dtype=np.int64), k)
        candidate = nearest.ravel().astype(np.int64)
        similarity = np.clip((1.0 + cosine.ravel().astype(np.float64)) / 2.0, 0.0, 1.0)
        order = np.lexsort((row, candidate))
        self.starts = np.searchsorted(candidate[order], np.arange(n + 1))
        self.covered = row[order]
        self.similarity = similarity[order]

    def initial_gains(self, weights: np.ndarray) -> np.ndarray:
        owner = np.repeat(np.arange(self.rows), np.diff(self.starts))
        return np.bincount(owner, weights=weights[self.covered] * self.similarity,
                           minlength=self.rows)  # fmt: skip

    def gains(self, js: list[int], covered_by: np.ndarray, weights: np.ndarray) -> list[float]:
        found = []
        for j in js:  # a few dozen covered rows each: one small sum per candidate
            lo, hi = self.starts[j], self.starts[j + 1]
            rows = self.covered[lo:hi]
            better = self.similarity[lo:hi] - covered_by[rows]
            found.append(float((weights[rows] * np.maximum(better, 0.0)).sum()))
        return found

    def cover(self, j: int, covered_by: np.ndarray) -> None:
        lo, hi = self.starts[j], self.starts[j + 1]
        rows = self.covered[lo:hi]
        covered_by[rows] = np.maximum(covered_by[rows], self.similarity[lo:hi])


def coverage_of(vectors: np.ndarray, neighbours: int, dense_rows: int) -> Coverage:
    """The exact dense similarities up to ``dense_rows`` rows, else the neighbour graph."""
    if len(vectors) <= dense_rows:
        return DenseCoverage(vectors)
    return GraphCoverage(vectors, neighbours)


def lazy_greedy(
    coverage: Coverage, budget: int, tiebreak: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ``budget`` rows picked greedily for the facility-location objective, in pick
    order, with each pick's gain. ``tiebreak`` (uint64 per row): among equal gains the
    smallest goes first."""
    n = coverage.rows
    w = np.ones(n, coverage.dtype) if weights is None else weights.astype(coverage.dtype)
    covered_by = np.zeros(n, dtype=coverage.dtype)  # each row's best similarity to a pick
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(tiebreak, kind="stable")] = np.arange(n)
    first = coverage.initial_gains(w)
    # heap entries: (-gain, rank, row, picks made when the gain was computed); a gain
    # computed before the last pick is an upper bound (submodularity), so the top entry is
    # taken only when it is current, and stale entries near the top are recomputed a batch
    # at a time (one matrix product for the dense similarities)
    heap = [(-g, r, j, 0) for g, r, j in zip(first.tolist(), rank.tolist(), range(n), strict=True)]
    heapq.heapify(heap)
    picked: list[int] = []
    gains: list[float] = []
    while len(picked) < budget and heap:
        if heap[0][3] == len(picked):  # current: nothing else can beat it
            negative_gain, _, j, _ = heapq.heappop(heap)
            coverage.cover(j, covered_by)
            picked.append(j)
            gains.append(-negative_gain)
            continue
        batch = [heapq.heappop(heap) for _ in range(min(LAZY_BATCH, len(heap)))]
        stale = [entry for entry in batch if entry[3] != len(picked)]
        fresh = coverage.gains([entry[2] for entry in stale], covered_by, w)
        for (_, order, j, _), g in zip(stale, fresh, strict=True):
            heapq.heappush(heap, (-g, order, j, len(picked)))
        for entry in batch:
            if entry[3] == len(picked):
                heapq.heappush(heap, entry)
    return np.asarray(picked, dtype=np.int64), np.asarray(gains)


def objective(coverage: Coverage, chosen: np.ndarray, weights: np.ndarray | None = None) -> float:
    """f(chosen) over the coverage."""
    covered_by = np.zeros(coverage.rows, dtype=coverage.dtype)
    for j in np.asarray(chosen).tolist():
        coverage.cover(j, covered_by)
    w = np.ones(coverage.rows) if weights is None else weights
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
        32, "facility-location: in clusters above --dense-rows, the nearest rows that may "
        "cover a row (graph degree).",
        parse=at_least(2),
    )  # fmt: skip
    dense_rows: int = option(
        8192, "facility-location: clusters up to this many rows use every pair's similarity "
        "(rows^2 x 4 bytes: 256 MiB at 8192); 0: always the graph.",
        parse=at_least(0),
    )  # fmt: skip


class FacilityLocationStrategy(AdaptiveStrategy):
    names = ("facility-location",)
    summary = (
        "the default. In each cluster (budget shared by --allocation), the rows that best "
        "cover the others: lazy greedy on sum_i max_(j chosen) (1 + cos(i, j)) / 2, every "
        "pair's similarity up to --dense-rows rows, a FAISS --neighbours graph above; "
        "--score-column weights the rows to cover."
    )
    Options = FacilityLocationOptions
    options: FacilityLocationOptions
    # identical vectors cover the same rows, so a copy of a chosen row gains nothing; on the
    # sparse graph gains can all reach 0 and ties go to the keyed order: drop copies first
    traits = StrategyTraits(needs_clusters=True, streams=False, one_per_vector=True)
    timed_as = "kmeans-random"

    @classmethod
    def cost_notes(cls, options: FacilityLocationOptions) -> list[str]:
        return [
            "facility-location: the greedy itself is timed as kmeans-random; each cluster "
            "costs one similarity GEMM (rows^2 x dim) up to --dense-rows, a neighbour search "
            "above it: time grows with the largest cluster's rows squared"
        ]

    @classmethod
    def vector_passes(cls, options: FacilityLocationOptions) -> int:
        return 1  # every vector, into the temporary file

    @classmethod
    def working_bytes(cls, options: FacilityLocationOptions, rows: int, dim: int) -> float:
        """Each row's place in the vectors file, and one cluster's vectors and dense
        similarities (a cluster above --dense-rows holds its graph instead: about the same
        for the default degree up to a few times the limit)."""
        largest = min(rows, max(options.dense_rows, 1))
        return rows * 8.0 + largest * (dim * 4.0 + largest * 4.0)

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
        o = self.options
        with tempfile.TemporaryDirectory(prefix=".facility-", dir=context.spill_folder) as tmp:
            vectors = context.vectors(tmp)
            for c in np.flatnonzero(quota).tolist():
                rows = by_cluster[bounds[c] : bounds[c + 1]]  # pool rows, id order
                coverage = coverage_of(vectors.take(rows), o.neighbours, o.dense_rows)
                w = None if weights is None else weights[rows]
                picked, gains = lazy_greedy(coverage, int(quota[c]), pool.keys[rows], w)
                total += float(gains.sum())  # f(picks): the gains add up to it (f(empty) = 0)
                del coverage
                taken = rows[picked]
                chosen.append(taken)
                self.gains[taken] = gains
                reasons[taken] = [
                    f"facility location (pick {r + 1} of {quota[c]} in cluster {c}, gain {g:.3f})"
                    for r, g in enumerate(gains.tolist())
                ]
            vectors.close()
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
                "dense_rows": self.options.dense_rows,
            }
        }
