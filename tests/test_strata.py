"""--stratify-column: the budget split over a column's values, exact per stratum, for every
strategy that takes it; proportional, equal and mixture shares; the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import synthetic_texts
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect import ClusterConfig, EmbedConfig, cluster, embed
from dataselect.errors import UsageError
from dataselect.sampling.strata import parse_mixture, stratum_budgets

SIZES = {"a": 200, "b": 80, "c": 20}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """300 rows over 2 shards, labels a (200), b (80), c (20) and a null-free source column;
    embedded (hashing) and clustered (k = 6)."""
    root = tmp_path_factory.mktemp("strata")
    labels = [name for name, n in SIZES.items() for _ in range(n)]
    order = np.random.default_rng(0).permutation(len(labels))
    texts = synthetic_texts(len(labels), seed=7)
    (root / "data").mkdir()
    for s, part in enumerate(np.array_split(order, 2)):
        pq.write_table(
            pa.table({"id": [f"r{i:04d}" for i in part], "text": [texts[i] for i in part],
                      "label": [labels[i] for i in part]}),
            root / "data" / f"p{s}.parquet",
        )  # fmt: skip
    embed(root / "data", root / "embed", EmbedConfig(embedder="hashing", dim=32), quiet=True)
    cluster(root / "embed", root / "cluster", ClusterConfig(k=6), quiet=True)
    return root / "cluster"


def labels_of(folder: Path) -> dict[str, int]:
    table = pq.read_table(sorted(str(p) for p in folder.glob("part-*.parquet")))
    values, counts = np.unique(table.column("label").to_pylist(), return_counts=True)
    return dict(zip(values.tolist(), counts.tolist(), strict=True))


@pytest.mark.parametrize(
    "strategy", ["random", "kmeans-random", "kmeans-closest", "facility-location", "hierarchical"]
)
@pytest.mark.parametrize(
    "how,expected",
    [
        ((), {"a": 20, "b": 8, "c": 2}),
        (("--stratum-budget", "equal"), {"a": 10, "b": 10, "c": 10}),
        (("--mixture", "a=1,c=1"), {"a": 15, "c": 15}),
    ],
)
def test_each_stratum_gets_exactly_its_share(
    cli, labelled: Path, tmp_path: Path, strategy: str, how: tuple, expected: dict
) -> None:
    for out in ("s1", "s2"):
        result = cli("sample", labelled, tmp_path / out, "-s", strategy, "-b", "30",
                     "--stratify-column", "label", *how, "-q")  # fmt: skip
        assert result.exit_code == 0, result.output
    assert labels_of(tmp_path / "s1") == expected
    summary = json.loads((tmp_path / "s1" / "_selection.json").read_text())
    selected = {name: c["selected"] for name, c in summary["strata"].items() if c["selected"]}
    assert selected == expected
    assert {name: c["rows"] for name, c in summary["strata"].items()} == SIZES
    decisions = pq.read_table(tmp_path / "s1" / "__artifacts__" / "decisions.parquet")
    assert all(r.startswith("stratum ") for r in decisions.column("reason").to_pylist())
    for name in ("part-00000.parquet", "part-00001.parquet", "__artifacts__/decisions.parquet"):
        assert (tmp_path / "s1" / name).read_bytes() == (tmp_path / "s2" / name).read_bytes()


def test_refusals(cli, labelled: Path, tmp_path: Path) -> None:
    def fails(code: int, needle: str, *args: str) -> None:
        result = cli("sample", labelled, tmp_path / "out", "-b", "30", *args)
        assert result.exit_code == code, result.output
        assert needle in result.output
        assert not (tmp_path / "out").exists()

    fails(2, "--mixture needs --stratify-column", "--mixture", "a=1")
    fails(2, "does not take --stratify-column", "--stratify-column", "label", "-s", "bandit",
          "--score-column", "distance")  # fmt: skip
    fails(1, "no stratify column 'lang'", "--stratify-column", "lang")
    fails(1, "'z'", "--stratify-column", "label", "--mixture", "a=1,z=2")
    fails(2, "larger than the rows of the mixture's values", "--stratify-column", "label",
          "--mixture", "c=1")  # fmt: skip
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    fails(2, "must map each value", "--stratify-column", "label", "--mixture",
          str(tmp_path / "bad.yaml"))  # fmt: skip


def test_mixture_files_and_text_mean_the_same(tmp_path: Path) -> None:
    (tmp_path / "m.json").write_text('{"b": 2, "a": 1}')
    (tmp_path / "m.yaml").write_text("a: 1\nb: 2\n")
    expected = ("a=1", "b=2")
    assert parse_mixture(str(tmp_path / "m.json")) == expected
    assert parse_mixture(str(tmp_path / "m.yaml")) == expected
    assert parse_mixture("b=2,a=1") == expected
    assert parse_mixture({"a": 1, "b": 2}) == expected
    for bad in ("a=-1", "a=x", "a=0"):
        with pytest.raises(UsageError):
            parse_mixture(bad)


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), min_size=1, max_size=8).filter(lambda s: sum(s) > 0),
    data=st.data(),
)
def test_stratum_budgets_are_exact_and_feasible(sizes: list[int], data: st.DataObject) -> None:
    names = [f"v{i}" for i in range(len(sizes))]
    budget = data.draw(st.integers(1, sum(sizes)))
    array = np.array(sizes)
    for mode in ("proportional", "equal"):
        got = stratum_budgets(array, names, budget, mode, ())
        assert got.sum() == budget and (got <= array).all()
    weights = data.draw(st.lists(st.integers(0, 5), min_size=len(sizes), max_size=len(sizes)))
    named = array[np.array(weights) > 0].sum()
    if named >= budget:
        mixture = tuple(f"{n}={w}" for n, w in zip(names, weights, strict=True) if w)
        got = stratum_budgets(array, names, budget, "proportional", mixture)
        assert got.sum() == budget and (got <= array).all()
        assert (got[np.array(weights) == 0] == 0).all()
