"""kmeans-closest and top-k never take two rows with identical vectors (issue 17 item 3):
the cluster stage hashes each vector, the sampler draws one row of each set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.keyed import vector_hashes
from dataselect.sampling.identical import later_copies


def planted(path: Path, rows: int = 300, copies: int = 60, seed: int = 0) -> Path:
    """Random vectors, then exact copies (new ids) of the first ``copies`` of them, each
    with a `score` column equal to its original's."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((rows, 12)).astype(np.float32)
    score = rng.random(rows)
    ids = [f"r{i:04d}" for i in range(rows)]
    for k in range(copies):
        for c in range(3):
            ids.append(f"c{c}-{k:04d}")
            vectors = np.vstack([vectors, vectors[k]])
            score = np.append(score, score[k])
    origin = [i if i.startswith("r") else "r" + i.split("-")[1] for i in ids]
    table = pa.table({"id": ids, "vec": [v.tolist() for v in vectors], "score": score,
                      "origin": origin, "tokens": [10] * len(ids)})  # fmt: skip
    pq.write_table(table, path, row_group_size=97)
    return path


@pytest.fixture
def run(tmp_path: Path, cli) -> Path:
    data = planted(tmp_path / "v.parquet")
    steps = [
        ("embed", data, tmp_path / "embed", "--vector-column", "vec", "--shard-rows", 100),
        ("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 6),
        ("score", tmp_path / "cluster", tmp_path / "score", "--scorer", "column:score"),
    ]
    for step in steps:
        result = cli(*step, "-q")
        assert result.exit_code == 0, (step, result.output)
    return tmp_path


@pytest.mark.parametrize(
    "args",
    [
        ("cluster", "-s", "kmeans-closest", "-b", 60),
        ("cluster", "-s", "kmeans-closest", "-b", 6),  # one per cluster: the nearest
        ("cluster", "-s", "kmeans-closest", "--budget-tokens", 600, "--token-column", "tokens"),
        ("score", "-s", "top-k", "--score-column", "score_score", "-b", 50),
        ("score", "-s", "top-k", "--score-column", "score_score", "-b", 240),
    ],
)
def test_no_two_selected_rows_share_a_vector(run: Path, cli, args) -> None:
    source, *rest = args
    out = run / "sel"
    result = cli("sample", run / source, out, *rest, "-q")
    assert result.exit_code == 0, result.output
    chosen = pd.read_parquet(out)
    assert chosen.origin.nunique() == len(chosen)  # one of each original and its copies
    budget = 60 if "--budget-tokens" in rest else rest[rest.index("-b") + 1]
    assert len(chosen) == budget  # the budget met exactly


def test_copies_share_a_hash_and_a_budget_above_the_distinct_rows_is_refused(run, cli):
    cluster = pd.read_parquet(run / "cluster")
    assert cluster.vector_hash.dtype == np.uint64
    by_id = cluster.set_index("id").vector_hash
    assert by_id["c0-0005"] == by_id["c2-0005"] == by_id["r0005"] != by_id["r0006"]
    result = cli("sample", run / "cluster", run / "big", "-b", 301)  # 480 rows, 300 distinct
    assert result.exit_code == 2 and "distinct rows" in result.output
    assert not (run / "big").exists()


def test_vector_hashes_are_the_same_on_every_machine() -> None:
    vectors = np.arange(24, dtype=np.float32).reshape(2, 12) / 7
    hashes = vector_hashes(vectors)
    assert hashes.dtype == np.uint64 and hashes[0] != hashes[1]
    assert vector_hashes(vectors[:1])[0] == hashes[0]  # per row, whatever the batch
    assert vector_hashes(np.ones((1, 5000), np.float32))[0] != vector_hashes(
        np.ones((1, 5001), np.float32)[:, :5000] * 1.0001)[0]  # fmt: skip
    assert int(hashes[0]) == int(vector_hashes(vectors.copy())[0])
    # XXH3-64 of the row's little-endian float32 bytes, whatever the array's layout
    assert [int(h) for h in hashes] == [xxhash.xxh3_64_intdigest(row.tobytes()) for row in vectors]
    strided = np.arange(48, dtype=np.float32).reshape(2, 24)[:, ::2]
    assert np.array_equal(vector_hashes(strided), vector_hashes(strided.copy()))
    assert np.array_equal(vector_hashes(np.zeros((0, 3), np.float32)), np.zeros(0, np.uint64))
    assert set(vector_hashes(np.zeros((2, 0), np.float32))) == {xxhash.xxh3_64_intdigest(b"")}


@settings(max_examples=50, deadline=None)
@given(groups=st.lists(st.integers(0, 5), min_size=1, max_size=30), seed=st.integers(0, 99))
def test_later_copies_keep_the_first_of_each_set_in_key_order(groups, seed) -> None:
    keys = np.random.default_rng(seed).permutation(len(groups)).astype(np.uint64)
    hashes = np.array(groups, dtype=np.uint64)
    later = later_copies(hashes, keys)
    for g in set(groups):
        members = [i for i in range(len(groups)) if groups[i] == g]
        first = min(members, key=lambda i: keys[i])
        assert not later[first] and all(later[i] for i in members if i != first)
