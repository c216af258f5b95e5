"""A stage folder is data first: pandas, pyarrow, DuckDB and `datasets` read exactly its rows
(everything else has a name they skip), and folders written before that layout still work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from test_adaptive import GROUPS
from test_report import planted_run  # noqa: F401 (a fixture)

from dataselect.evaluation import selected_ids
from dataselect.io.folder_state import ARTIFACT_DIR
from dataselect.manifest import MANIFEST_NAME, read_manifest

STAGES = ("embed", "cluster", "score", "sample")


@pytest.fixture
def run(planted_run: Path) -> Path:  # noqa: F811
    """A run folder with every stage (embed, cluster, score, iterative sample)."""
    return planted_run


def shard_ids(folder: Path) -> list[str]:
    """The ids the folder's manifest lists, read shard by shard (the truth to compare with)."""
    files = [folder / str(r["file"]) for r in read_manifest(folder).shards]
    return sorted(
        i for f in files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()
    )


def test_standard_readers_read_exactly_the_rows(run: Path, cli, tmp_path: Path) -> None:
    import datasets

    assert cli("report", run / "sample", "-q").exit_code == 0  # a report in the folder
    assert (run / "sample" / "_report.html").exists()
    for stage in STAGES:
        folder = run / stage
        expected = shard_ids(folder)
        assert len(expected) == read_manifest(folder).rows > 0
        assert sorted(pd.read_parquet(folder)["id"]) == expected, stage
        assert sorted(pq.read_table(folder).column("id").to_pylist()) == expected, stage
        rows = duckdb.sql(f"select id from read_parquet('{folder}/*.parquet')").fetchall()
        assert sorted(r[0] for r in rows) == expected, stage
        cache = str(tmp_path / "hf-cache")
        loaded = datasets.load_dataset(str(folder), split="train", cache_dir=cache)
        assert sorted(loaded["id"]) == expected, stage
        globbed = datasets.load_dataset(
            "parquet", data_files=f"{folder}/*.parquet", split="train", cache_dir=cache
        )
        assert sorted(globbed["id"]) == expected, stage
    # nothing but the shards is visible: every other name starts with `_` (or `.`)
    for stage in STAGES:
        names = [p.name for p in (run / stage).iterdir()]
        assert all(n.startswith(("_", ".", "part-")) for n in names), names
    assert (run / "cluster" / ARTIFACT_DIR / "centroids.npy").exists()
    assert (run / "sample" / "_selection.json").exists()


def to_legacy_layout(folder: Path) -> None:
    """Put the folder's artifacts where dataselect 0.1 wrote them: at their bare names."""
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    for name, record in manifest["artifacts"].items():
        (folder / record["file"]).rename(folder / name)
        record["file"] = name
    shutil.rmtree(folder / ARTIFACT_DIR, ignore_errors=True)
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_folders_in_the_old_layout_keep_working(run: Path, cli, tmp_path: Path) -> None:
    for stage in ("cluster", "sample"):
        to_legacy_layout(run / stage)
    assert (run / "cluster" / "centroids.npy").exists()
    assert (run / "sample" / "decisions.parquet").exists()
    # readers find the old names, verified against the manifest
    assert cli("inspect", run / "cluster", "--verify").exit_code == 0
    assert cli("report", run, "--output", tmp_path / "r.html", "-q").exit_code == 0
    assert sorted(selected_ids(run / "sample").to_pylist()) == shard_ids(run / "sample")
    sampled = cli("sample", run / "cluster", tmp_path / "s", "-b", "20", "-s", "bandit",
                  "--score-column", "distance", "-q")  # fmt: skip
    assert sampled.exit_code == 0, sampled.output  # the old centroids.npy, for the bandit
    given = cli("cluster", run / "embed", tmp_path / "c", "--centroids", run / "cluster", "-q")
    assert given.exit_code == 0, given.output  # --centroids: the old folder's file
    # a rerun with the same settings keeps the old folder; --overwrite moves it to the new layout
    again = cli("cluster", run / "embed", run / "cluster", "--k", GROUPS, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["shards_skipped"] == read_manifest(run / "cluster").shards_total
    redone = cli("cluster", run / "embed", run / "cluster", "--k", GROUPS, "--overwrite", "-q")
    assert redone.exit_code == 0, redone.output
    names = sorted(p.name for p in (run / "cluster").iterdir())
    assert "centroids.npy" not in names and ARTIFACT_DIR in names, names
    assert read_manifest(run / "cluster").artifacts["centroids.npy"]["file"] == (
        f"{ARTIFACT_DIR}/centroids.npy"
    )


@pytest.mark.parametrize("given", ["folder", "file"])
def test_centroids_from_a_cluster_folder(run: Path, cli, tmp_path: Path, given: str) -> None:
    source = (
        run / "cluster" if given == "folder" else run / "cluster" / ARTIFACT_DIR / "centroids.npy"
    )
    result = cli("cluster", run / "embed", tmp_path / "assigned", "--centroids", source, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "assigned" / ARTIFACT_DIR / "centroids.npy").read_bytes() == (
        run / "cluster" / ARTIFACT_DIR / "centroids.npy"
    ).read_bytes()
