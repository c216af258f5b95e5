"""`--dry-run`: the plan and the estimates, and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_parquet_folder

from dataselect.clustering.estimate import estimate_cluster
from dataselect.planning import PlanRequest, estimate_command, format_plans, measure_command


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def dry(cli, *args: object) -> dict:
    result = cli(*args, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_stage_dry_run_writes_nothing_and_says_what_it_would_do(tmp_path: Path, cli):
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=60)
    before = tree(tmp_path)
    plans = {
        "embed": dry(cli, "embed", corpus, tmp_path / "embed", "--embedder", "hashing"),
    }
    assert tree(tmp_path) == before  # nothing at all: no output folder
    (plan,) = plans["embed"]["stages"]
    assert plan["action"] == "run all 3 shards" and plan["rows"] == 180
    assert plan["peak_memory_mb"] > 50 and plan["output_mb"] > 0
    assert plan["details"]["rows_per_second"] > 100  # the timed probe
    # the real stages, then a dry run of each against its finished output
    assert cli("embed", corpus, tmp_path / "embed", "--embedder", "hashing", "-q").exit_code == 0
    assert cli("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 6, "-q").exit_code == 0
    assert (
        cli(
            "score", tmp_path / "cluster", tmp_path / "score", "--scorer", "heuristic", "-q"
        ).exit_code
        == 0
    )
    assert (
        cli("sample", tmp_path / "score", tmp_path / "sample", "--budget", 20, "-q").exit_code == 0
    )
    before = tree(tmp_path)
    again = {
        "embed": dry(cli, "embed", corpus, tmp_path / "embed", "--embedder", "hashing"),
        "cluster": dry(cli, "cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 6),
        "score": dry(
            cli, "score", tmp_path / "cluster", tmp_path / "score", "--scorer", "heuristic"
        ),
        "sample": dry(cli, "sample", tmp_path / "score", tmp_path / "sample", "--budget", 20),
    }
    for name, plan in again.items():
        assert plan["stages"][0]["action"].startswith("skip"), (name, plan)
        assert plan["stages"][0]["rows_to_process"] == 0
    # refused, as the real command would be: the plan is printed, and exit 2
    refused = cli(
        "cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 7, "--dry-run", "--json"
    )
    assert refused.exit_code == 2 and "would be refused" in refused.stderr
    action = json.loads(refused.stdout)["stages"][0]["action"]
    assert action.startswith("refused: OUTPUT holds other settings (") and "k: 6 -> 7" in action
    replace = dry(cli, "cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 7, "--overwrite")
    assert replace["stages"][0]["action"].startswith("replace")
    fresh = dry(cli, "sample", tmp_path / "score", tmp_path / "other", "--budget", "10%")
    assert fresh["stages"][0]["details"]["budget_rows"] == 18
    assert tree(tmp_path) == before  # not a byte, not a timestamp


def test_run_dry_run_plans_every_stage_from_predicted_inputs(tmp_path: Path, cli) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=100)
    config = tmp_path / "run.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "input": str(corpus),
                "run_dir": str(tmp_path / "run"),
                "embed": {"embedder": "hashing", "dim": 64},
                "cluster": {"k": 8},
                "score": {"scorers": ["heuristic"]},
                "sample": {"budget": "10%"},
            }
        )
    )
    result = cli("run", config, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run: nothing is written" in result.stdout and "total: time" in result.stdout
    assert not (tmp_path / "run").exists()
    plans = json.loads(cli("run", config, "--dry-run", "--json").stdout)["stages"]
    assert [p["stage"] for p in plans] == ["embed", "cluster", "score", "sample"]
    assert plans[1]["details"]["dim"] == 64 and plans[1]["details"]["fit_sample_rows"] == 200
    assert plans[-1]["details"]["budget_rows"] == 20
    assert all(p["action"].startswith("run") for p in plans)
    # after the run, every stage would be skipped
    assert cli("run", config, "-q").exit_code == 0
    before = tree(tmp_path / "run")
    plans = json.loads(cli("run", config, "--dry-run", "--json").stdout)["stages"]
    assert all(p["action"].startswith("skip") for p in plans), plans
    assert tree(tmp_path / "run") == before


def test_dry_run_refuses_what_the_stage_would_refuse(tmp_path: Path, cli) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=1, rows=30)
    embed, clusters, out = tmp_path / "embed", tmp_path / "cl", tmp_path / "out"
    assert cli("embed", corpus, embed, "--embedder", "hashing", "-q").exit_code == 0
    assert cli("cluster", embed, clusters, "--k", 3, "-q").exit_code == 0
    cases = [
        (2, "larger than the number of rows", ("cluster", embed, out, "--k", 31)),
        (1, "nope", ("embed", corpus, out, "--text-column", "nope")),
        (1, "no score column 'nope'", ("sample", clusters, out, "-s", "top-k",
                                       "--score-column", "nope")),
        (1, "needs a 'cluster' column", ("sample", embed, out)),
        (1, "not a readable .npy", ("cluster", embed, out, "--centroids", tmp_path / "no.npy")),
    ]  # fmt: skip
    for code, message, args in cases:
        result = cli(*args, "--dry-run")
        assert result.exit_code == code and message in result.stderr, (args, result.output)
    assert not out.exists()


def test_dry_run_counts_jsonl_rows_and_skips_a_finished_token_budget(tmp_path: Path, cli):
    source = tmp_path / "rows.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": f"row {i} of text words"}) + "\n" for i in range(120)
        )
    )
    plan = dry(cli, "embed", source, tmp_path / "embed", "--embedder", "hashing")["stages"][0]
    assert plan["rows"] == 120 and plan["output_mb"] > 0
    assert cli("embed", source, tmp_path / "embed", "--embedder", "hashing", "-q").exit_code == 0
    assert cli("cluster", tmp_path / "embed", tmp_path / "cl", "--k", 4, "-q").exit_code == 0
    args = ("sample", tmp_path / "cl", tmp_path / "tok", "--budget-tokens", 100)
    assert cli(*args, "-q").exit_code == 0
    assert dry(cli, *args)["stages"][0]["action"].startswith("skip")


def test_cluster_plan_counts_the_fit_sample(tmp_path: Path, cli) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=200)
    assert (
        cli(
            "embed", corpus, tmp_path / "embed", "--embedder", "hashing", "--dim", 32, "-q"
        ).exit_code
        == 0
    )
    from dataselect.clustering.stage import ClusterConfig

    plan, shape = estimate_cluster(
        ClusterConfig(k=4, max_points_per_centroid=10),
        PlanRequest(tmp_path / "embed", tmp_path / "c"),
    )
    assert plan.details["fit_sample_rows"] == 40 and plan.details["dim"] == 32
    assert shape.rows == 400 and not shape.exists
    assert "cluster:" in format_plans([plan])


# -- the memory estimate against a measured peak -----------------------------------------------
@pytest.mark.slow
def test_memory_estimates_are_within_half_of_the_measured_peak(tmp_path: Path) -> None:
    """A mid-size run: 300,000 rows of 128-d vectors, k = 300 (a 76,800-row fit sample)."""
    rng = np.random.default_rng(0)
    source = tmp_path / "vectors"
    source.mkdir()
    centers = rng.standard_normal((40, 128)).astype(np.float32)
    for s in range(3):
        x = centers[rng.integers(0, 40, 100_000)]
        x = x + rng.standard_normal((100_000, 128), dtype=np.float32)
        ids = [f"doc-{s}-{i:07d}" for i in range(100_000)]
        table = pa.table({"id": ids, "vec": pa.FixedSizeListArray.from_arrays(x.reshape(-1), 128)})
        pq.write_table(table, source / f"part-{s}.parquet", row_group_size=25_000)
    ratios = {}
    stages = [
        ("embed", source, tmp_path / "embed", "--vector-column", "vec", "-q"),
        ("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 300, "--niter", 5, "-q"),
        ("sample", tmp_path / "cluster", tmp_path / "sample", "--budget", "5%", "-q"),
    ]
    for stage in stages:
        estimate = estimate_command(*stage)["peak_memory_mb"]
        measured, _ = measure_command(*stage)
        ratios[stage[0]] = estimate / measured
    assert all(1 / 1.5 <= r <= 1.5 for r in ratios.values()), ratios
