"""hierarchical: the balanced quotas down the tree, the levels option, and a long-tailed
corpus where every top-level topic gets its share."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect import ClusterConfig, EmbedConfig, SampleConfig, cluster, embed, sample
from dataselect.errors import UsageError
from dataselect.sampling.hierarchical import balanced_quotas, default_levels, parse_levels


def test_quotas_are_equal_per_topic_then_per_child() -> None:
    """Nine leaves of 100 rows under topic 0, one leaf of 10 under topic 1: 20 rows go 10
    and 10, and topic 0's ten spread over its nine leaves."""
    leaves = np.array([100] * 9 + [10])
    quota = balanced_quotas(leaves, [np.array([0] * 9 + [1])], 20)
    assert quota[9] == 10 and quota[:9].sum() == 10 and quota[:9].max() - quota[:9].min() <= 1
    # a topic smaller than its share gives the rest to the others
    quota = balanced_quotas(leaves, [np.array([0] * 9 + [1])], 100)
    assert quota[9] == 10 and quota.sum() == 100


@settings(max_examples=100, deadline=None)
@given(data=st.data(), leaves=st.integers(1, 30), levels=st.integers(0, 3))
def test_quotas_meet_the_budget_exactly(data: st.DataObject, leaves: int, levels: int) -> None:
    sizes = np.array(data.draw(st.lists(st.integers(0, 40), min_size=leaves, max_size=leaves)))
    if sizes.sum() == 0:
        return
    parents, nodes = [], leaves
    for _ in range(levels):
        up = data.draw(st.integers(1, nodes))
        parent = np.array(data.draw(st.lists(st.integers(0, up - 1), min_size=nodes,
                                             max_size=nodes)))  # fmt: skip
        parent = np.unique(parent, return_inverse=True)[1]  # every parent has a child
        parents.append(parent)
        nodes = int(parent.max()) + 1
    budget = data.draw(st.integers(1, int(sizes.sum())))
    quota = balanced_quotas(sizes, parents, budget)
    assert quota.sum() == budget and (quota <= sizes).all()


def test_levels_option() -> None:
    assert parse_levels("100,10") == (100, 10)
    assert default_levels(1000) == (100, 10)
    assert default_levels(15) == ()
    for bad in ("10,100", "0", "a,b"):
        with pytest.raises(UsageError):
            parse_levels(bad)


def test_a_long_tail_gets_its_share(tmp_path: Path) -> None:
    """Two far-apart topics, 900 rows and 60: with one level of 2 groups over 12 leaf
    clusters, the 30-row budget is split 15 / 15; kmeans-random gives the small topic ~2."""
    rng = np.random.default_rng(0)
    big = rng.normal(0, 1, (900, 8)) + np.r_[10, np.zeros(7)]
    small = rng.normal(0, 1, (60, 8)) - np.r_[10, np.zeros(7)]
    vectors = np.vstack([big, small]).astype(np.float32)
    topic = ["big"] * 900 + ["small"] * 60
    pq.write_table(pa.table({"id": [f"r{i:04d}" for i in range(960)], "topic": topic,
                             "v": vectors.tolist()}), tmp_path / "d.parquet")  # fmt: skip
    embed(tmp_path / "d.parquet", tmp_path / "e", EmbedConfig(vector_column="v"), quiet=True)
    cluster(tmp_path / "e", tmp_path / "c", ClusterConfig(k=12, metric="l2"), quiet=True)
    counts = {}
    for strategy in ("hierarchical", "kmeans-random"):
        config = SampleConfig(strategy=strategy, budget="30", levels=(2,))
        sample(tmp_path / "c", tmp_path / strategy, config, quiet=True)
        table = pq.read_table(sorted(str(p) for p in (tmp_path / strategy).glob("part-*")))
        counts[strategy] = table.column("topic").to_pylist().count("small")
    assert counts["hierarchical"] == 15
    assert counts["kmeans-random"] <= 4
    summary = json.loads((tmp_path / "hierarchical" / "_selection.json").read_text())
    assert summary["hierarchical"]["levels"] == [2]
    assert sorted(summary["hierarchical"]["rows_per_top_group"]) == [15, 15]


@pytest.mark.parametrize("resamples", [0, 3])
def test_tree_levels_are_valid_and_deterministic(resamples: int) -> None:
    """Every node has a parent, every parent a child, and the same seed gives the same tree
    (with resampling steps too)."""
    from dataselect.sampling.hierarchical import build_tree

    rng = np.random.default_rng(4)
    centroids = np.vstack([rng.normal(0, 0.1, (150, 6)), rng.normal(3, 2.0, (50, 6))])
    centroids = centroids.astype(np.float32)
    tree = build_tree(centroids, (20, 4), seed=1, metric="l2", resamples=resamples)
    assert len(tree) == 2 and len(tree[0]) == 200
    assert len(tree[1]) == int(tree[0].max()) + 1  # the level above has a node per parent
    for parent in tree:
        assert set(np.unique(parent).tolist()) == set(range(int(parent.max()) + 1))
    again = build_tree(centroids, (20, 4), seed=1, metric="l2", resamples=resamples)
    assert all(np.array_equal(a, b) for a, b in zip(tree, again, strict=True))
