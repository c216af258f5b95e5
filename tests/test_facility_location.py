"""facility-location: the lazy greedy over the sparse graph against a brute-force greedy on
the dense similarity matrix, its determinism, the weights, and the strategy end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect import SampleConfig, sample
from dataselect.io.folder_state import artifact_path
from dataselect.sampling.facility_location import (
    DenseCoverage,
    GraphCoverage,
    lazy_greedy,
    objective,
    score_weights,
)


def dense(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return (1.0 + unit @ unit.T) / 2.0


def brute_force_greedy(similarity: np.ndarray, budget: int, weights: np.ndarray) -> list[int]:
    """Greedy on the dense matrix: every gain computed at every step."""
    covered = np.zeros(len(similarity))
    picked: list[int] = []
    for _ in range(budget):
        gains = (weights[:, None] * np.maximum(similarity - covered[:, None], 0.0)).sum(axis=0)
        gains[picked] = -1.0
        j = int(np.argmax(gains))
        picked.append(j)
        covered = np.maximum(covered, similarity[:, j])
    return picked


def dense_objective(similarity: np.ndarray, chosen, weights: np.ndarray) -> float:
    return float((weights * similarity[:, list(chosen)].max(axis=1)).sum())


@settings(max_examples=25, deadline=None)
@given(n=st.integers(5, 120), budget=st.integers(1, 30), seed=st.integers(0, 10_000),
       weighted=st.booleans())  # fmt: skip
def test_lazy_greedy_is_the_brute_force_greedy(
    n: int, budget: int, seed: int, weighted: bool
) -> None:
    """Dense, and on the full graph (every row may cover every row): the objective of the
    brute-force greedy, whose gains are all computed at every step."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    weights = rng.random(n) if weighted else np.ones(n)
    budget = min(budget, n)
    keys = rng.integers(0, 2**63, n).astype(np.uint64)
    reference = brute_force_greedy(dense(x), budget, weights)
    theirs = dense_objective(dense(x), reference, weights)
    for coverage in (DenseCoverage(x), GraphCoverage(x, neighbours=n)):
        picked, gains = lazy_greedy(coverage, budget, keys, weights)
        assert len(picked) == len(set(picked.tolist())) == budget
        assert objective(coverage, picked, weights) == pytest.approx(theirs, rel=1e-4)
        assert np.all(np.diff(gains) <= 1e-4)  # submodular: the gains never grow


def test_sparse_graph_stays_within_one_percent_of_the_dense_greedy() -> None:
    """The default graph (32 neighbours) on 600 clustered rows: the dense objective of its
    picks within 1% of the brute-force dense greedy's."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((12, 16))
    x = (centres[rng.integers(0, 12, 600)] + 0.6 * rng.standard_normal((600, 16))).astype(
        np.float32
    )
    similarity, weights = dense(x), np.ones(600)
    for budget in (6, 30, 90):
        picked, _ = lazy_greedy(GraphCoverage(x, 32), budget, np.arange(600, dtype=np.uint64))
        reference = brute_force_greedy(similarity, budget, weights)
        ours = dense_objective(similarity, picked, weights)
        assert ours >= 0.99 * dense_objective(similarity, reference, weights), budget


def test_ties_go_to_the_smaller_key_whatever_the_row_order() -> None:
    """Identical rows tie on every gain: the pick is the smaller key, wherever it sits."""
    x = np.tile(np.array([[1.0, 0.0], [0.0, 1.0]], np.float32), (5, 1))  # 10 rows, 2 points
    keys = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0], dtype=np.uint64)
    for make in (DenseCoverage, lambda v: GraphCoverage(v, 10)):
        picked, _ = lazy_greedy(make(x), 2, keys)
        assert sorted(picked.tolist()) == [8, 9]  # the smallest keys of each point
        order = np.random.default_rng(1).permutation(10)
        again, _ = lazy_greedy(make(x[order]), 2, keys[order])
        assert sorted(order[again].tolist()) == [8, 9]


def test_weights_cover_the_heavy_rows_first() -> None:
    """Two far groups; all weight on the second: the first pick is in the second group."""
    rng = np.random.default_rng(2)
    x = np.vstack([rng.normal(5, 0.1, (20, 4)), rng.normal(-5, 0.1, (20, 4))]).astype(np.float32)
    weights = score_weights(np.r_[np.zeros(20), np.ones(20)])
    for coverage in (DenseCoverage(x), GraphCoverage(x, 8)):
        picked, _ = lazy_greedy(coverage, 1, np.arange(40, dtype=np.uint64), weights)
        assert picked[0] >= 20
    assert np.all(score_weights(np.full(5, 3.0)) == 1.0)


def test_the_strategy_end_to_end(cli, tmp_path: Path) -> None:
    """sample -s facility-location: the budget, per-cluster quotas as kmeans-random's, the
    gain column and the objective in the summary, and the same bytes on a rerun."""
    from test_sample import pipeline

    clustered = pipeline(tmp_path / "p")
    for out in ("a", "b"):
        result = cli("sample", clustered, tmp_path / out, "-s", "facility-location", "-b",
                     "30", "--neighbours", "8", "--dense-rows", "20", "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
    decisions = pq.read_table(artifact_path(tmp_path / "a", "decisions.parquet"))
    assert decisions.num_rows == 30 and decisions.column("gain").to_numpy().min() >= 0
    summary = json.loads((tmp_path / "a" / "_selection.json").read_text())
    assert summary["facility_location"]["neighbours"] == 8
    assert summary["facility_location"]["objective"] > 0
    random = tmp_path / "r"
    sample(clustered, random, SampleConfig(strategy="kmeans-random", budget="30"), quiet=True)
    random_counts = json.loads((random / "_selection.json").read_text())["counts_per_cluster"]
    assert summary["counts_per_cluster"] == random_counts  # the same allocation
    for name in ("part-00000.parquet", "__artifacts__/decisions.parquet"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    bad = cli("sample", clustered, tmp_path / "c", "-s", "facility-location", "--neighbours", "1")
    assert bad.exit_code == 2 and "--neighbours" in bad.output


def test_spilled_vectors_come_back_by_pool_row(tmp_path: Path) -> None:
    """The temporary vectors file holds the embed folder's vectors, and take() returns the
    vectors of any rows in any order (checked against the embed folder read directly)."""
    import pyarrow as pa
    from test_sample import pipeline

    from dataselect.lineage import trace_lineage
    from dataselect.sampling.vectors import SpilledVectors

    clustered = pipeline(tmp_path / "p", shards=3)
    lineage = trace_lineage(clustered)
    parts = sorted(lineage.embed_folder.glob("part-*.parquet"))
    tables = [pq.read_table(p) for p in parts]
    positions = pa.concat_tables(
        pa.table({"id": t.column("id"), "shard": np.full(t.num_rows, s, np.int32),
                  "row": np.arange(t.num_rows)})
        for s, t in enumerate(tables)
    )  # fmt: skip
    order = np.random.default_rng(0).permutation(positions.num_rows)
    positions = positions.take(pa.array(order))  # pool order is not the file order
    expected = np.vstack([np.array(t.column("embedding").to_pylist()) for t in tables])[order]
    spilled = SpilledVectors(tmp_path, lineage.embed_folder, positions, expected.shape[1])
    rows = np.random.default_rng(1).permutation(len(order))[:50]
    np.testing.assert_array_equal(spilled.take(rows), expected[rows].astype(np.float32))
    spilled.close()
