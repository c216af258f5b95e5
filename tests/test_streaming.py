"""The streamed one-shot selection equals the in-memory one, whatever the batches."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import write_parquet_folder
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.errors import DataError
from dataselect.keyed import IdSet, row_keys
from dataselect.sampling.registry import STRATEGIES
from dataselect.sampling.strategies import Pool, allocate, select
from dataselect.sampling.strategy import SortColumns
from dataselect.sampling.streaming import SELECT_STREAM, BoundedTop


def in_memory(ids: list[str], cluster, distance, score, strategy, budget, allocation, t, seed):
    order = np.argsort(ids)
    sorted_ids = pa.array([ids[i] for i in order])
    pool = Pool(row_keys(sorted_ids, seed, SELECT_STREAM), cluster[order], distance[order],
                score[order])  # fmt: skip
    selection = select(pool, STRATEGIES.get(strategy)(), budget, allocation, t)
    return {sorted_ids[int(r)].as_py(): selection.reasons[r] for r in selection.rows}


def streamed(ids, cluster, distance, score, strategy, budget, allocation, t, seed, cuts, prune):
    strategy = STRATEGIES.get(strategy)()
    if strategy.per_cluster:
        quota = allocate(np.bincount(cluster), budget, allocation)
    else:
        quota = np.array([budget])
    top = np.full(cluster.max() + 1, -np.inf)
    np.maximum.at(top, cluster, score / t)
    selector = BoundedTop(quota, strategy.primary_type, prune)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        batch = pa.array(ids[lo:hi])
        keys = row_keys(batch, seed, SELECT_STREAM)
        rows = SortColumns(keys, cluster[lo:hi], distance[lo:hi], score[lo:hi], top, t)
        group, primary, secondary = strategy.sort_keys(rows)
        selector.add(group, primary, batch, secondary)
    chosen = selector.result()
    reasons = strategy.reasons(chosen.column("group").to_numpy(),
                               chosen.column("rank").to_numpy(), quota)  # fmt: skip
    return dict(zip(chosen.column("id").to_pylist(), reasons, strict=True))


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 12),
    strategy=st.sampled_from([e.names[0] for e in STRATEGIES if e.traits.streams]),
    allocation=st.sampled_from(["proportional", "equal"]),
    temperature=st.sampled_from([0.05, 1.0, 4.0]),
    seed=st.integers(0, 3),
    data=st.data(),
)
def test_streamed_selection_equals_in_memory(
    n: int, k: int, strategy: str, allocation: str, temperature: float, seed: int, data
) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ids = [f"r{v}" for v in rng.permutation(10 * n)[:n]]  # unique, in no particular order
    cluster = rng.integers(0, k, n).astype(np.int32)
    cluster[0] = k - 1
    distance = rng.integers(0, 4, n).astype(np.float32) / 4  # many ties: broken by id
    score = rng.integers(0, 3, n).astype(np.float64)
    budget = data.draw(st.integers(1, n))
    cuts = sorted({0, n, *data.draw(st.lists(st.integers(0, n), max_size=6))})
    prune = data.draw(st.sampled_from([None, 1, 7]))  # tiny limits prune on every batch
    args = (ids, cluster, distance, score, strategy, budget, allocation, temperature, seed)
    expected = in_memory(*args)
    got = streamed(*args, cuts, prune)
    assert len(got) == budget
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(
    members=st.lists(st.text(max_size=6), max_size=60, unique=True),
    probes=st.lists(st.text(max_size=6), max_size=60),
    as_int=st.booleans(),
)
def test_id_set_matches_is_in(members: list[str], probes: list[str], as_int: bool) -> None:
    def arr(values: list[str]) -> pa.Array:
        if as_int:
            return pa.array([sum(map(ord, v)) * 1000 + len(v) for v in values], pa.int64())
        return pa.array(values, pa.string())

    chosen = arr(members).unique()
    got = IdSet(chosen).contains(arr(probes))
    assert got.tolist() == pc.is_in(arr(probes), value_set=chosen).to_pylist()


def test_id_set_survives_hash_collisions(monkeypatch) -> None:
    """Two different ids with one hash: each is found, neither stands in for the other."""
    import dataselect.keyed as keyed

    real = keyed.row_keys
    monkeypatch.setattr(keyed, "row_keys", lambda ids, seed, stream=0: real(ids, seed, stream) % 3)
    members = pa.array([f"m{i}" for i in range(10)])
    probes = pa.array([f"m{i}" for i in range(0, 20, 2)] + ["x", "y"])
    got = keyed.IdSet(members).contains(probes)
    assert got.tolist() == pc.is_in(probes, value_set=members).to_pylist()


def test_coverage_is_the_same_streamed_and_in_memory_with_an_empty_last_cluster(
    tmp_path: Path, monkeypatch
) -> None:
    """clusters.parquet lists a centroid that got no rows; streamed (sizes from that file)
    and in-memory (sizes from the rows) must report the same cluster metrics."""
    from dataselect import ClusterConfig, EmbedConfig, SampleConfig, cluster, embed, sample

    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=60)
    embed(corpus, tmp_path / "embed", EmbedConfig(embedder="hashing", dim=16), quiet=True)
    x = pq.read_table(tmp_path / "embed").column("embedding").combine_chunks()
    x = x.flatten().to_numpy().reshape(-1, 16)
    np.save(tmp_path / "c.npy", np.vstack([x[0], x[50], x[100], x[0]]).astype(np.float32))
    cluster(tmp_path / "embed", tmp_path / "cluster",
            ClusterConfig(centroids=str(tmp_path / "c.npy")), quiet=True)  # fmt: skip
    sizes = (
        pq.read_table(tmp_path / "cluster" / "__artifacts__/clusters.parquet")
        .column("size")
        .to_pylist()
    )
    assert len(sizes) == 4 and sizes[3] == 0  # the duplicate centroid loses every tie
    config = SampleConfig(strategy="kmeans-random", budget="20")
    sample(tmp_path / "cluster", tmp_path / "streamed", config, quiet=True)
    entry = STRATEGIES.get("kmeans-random")  # force the in-memory pool
    monkeypatch.setattr(entry, "traits", dataclasses.replace(entry.traits, streams=False))
    sample(tmp_path / "cluster", tmp_path / "pool", config, quiet=True)
    streamed, pool = (json.loads((tmp_path / n / "_selection.json").read_text())
                      for n in ("streamed", "pool"))  # fmt: skip
    for key in ("cluster_coverage", "cluster_entropy", "counts_per_cluster", "rows_selected"):
        assert streamed[key] == pool[key], key
    assert (tmp_path / "streamed" / "__artifacts__/decisions.parquet").read_bytes() == (
        tmp_path / "pool" / "__artifacts__/decisions.parquet"
    ).read_bytes()


def test_an_overflowing_score_over_temperature_is_refused_in_both_paths() -> None:
    ids = pa.array([f"r{i:03d}" for i in range(20)])
    cluster = np.zeros(20, np.int32)
    score = np.full(20, 1e308)
    keys = row_keys(ids, 0, SELECT_STREAM)
    with pytest.raises(DataError, match="overflows"):
        select(Pool(keys, cluster, None, score), STRATEGIES.get("kmq")(), 10, "proportional", 0.5)
    with pytest.raises(DataError, match="overflows"):
        STRATEGIES.get("kmq")().sort_keys(SortColumns(keys, cluster, None, score, np.zeros(1), 0.5))
