"""`dataselect run CONFIG`: the chained pipeline, skipping and refreshing stages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_parquet_folder

from dataselect.errors import UsageError
from dataselect.pipeline import load_config

ROOT = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, **sections: object) -> Path:
    config = {
        "input": str(write_parquet_folder(tmp_path / "data", shards=3, rows=60)),
        "run_dir": str(tmp_path / "run"),
        "embed": {"embedder": "hashing", "dim": 32},
        "cluster": {"k": 6},
        "sample": {"strategy": "kmeans-closest", "budget": 12},
        **sections,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_json(cli, *args: object) -> dict:
    result = cli("run", *args, "--json", "-q")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_run_chains_the_stages_and_skips_valid_ones(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    first = run_json(cli, config)
    assert first["rows_in"] == 180 and first["clusters"] == 6 and first["rows_selected"] == 12
    assert first["stages_skipped"] == []
    assert set(first["vendi_selected"]) == {"q1", "q2", "qinf"}
    for stage in ("embed", "cluster", "sample"):
        assert (tmp_path / "run" / stage / "_manifest.json").exists()
    again = run_json(cli, config)
    assert again["stages_skipped"] == ["embed", "cluster", "sample"]
    embed_before = (tmp_path / "run" / "embed" / "part-00000.parquet").stat().st_mtime_ns
    changed = run_json(cli, config, "--set", "cluster.k=4", "--set", "sample.budget=8")
    assert changed["clusters"] == 4 and changed["rows_selected"] == 8
    assert changed["stages_skipped"] == ["embed"]
    assert (tmp_path / "run" / "embed" / "part-00000.parquet").stat().st_mtime_ns == embed_before
    assert changed["stages_replaced"] == {
        "cluster": "params.k: 6 -> 4",
        "sample": "input data changed; params.budget: '12' -> '8'; params.budget_rows: 12 -> 8",
    }
    assert again["stages_replaced"] == {}


def test_run_says_which_stage_it_replaces_and_why(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert cli("run", config, "-q").exit_code == 0
    result = cli("run", config, "--set", "cluster.k=4")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "replacing" in line]
    assert len(lines) == 2, result.stderr
    assert lines[0].endswith(f"replacing the cluster output in {tmp_path / 'run' / 'cluster'}: "
                             "params.k: 6 -> 4")  # fmt: skip
    assert lines[1].endswith("sample: input data changed")  # its input, the clusters, changed


def test_human_summary_line(cli, tmp_path: Path) -> None:
    """On stderr, as every command's (stdout is for --json); none with --quiet."""
    result = cli("run", write_config(tmp_path))
    assert result.exit_code == 0 and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("rows in 180, clusters 6, rows selected 12, coverage 1.0")
    assert cli("run", write_config(tmp_path), "-q").stderr == ""


def test_relative_paths_in_a_config_are_relative_to_its_folder(tmp_path: Path) -> None:
    """Cron runs from $HOME: a config's relative input, run_dir and path options must not
    depend on the current folder. A --set value is relative to the current folder."""
    from conftest import run_process

    project = tmp_path / "project"
    write_parquet_folder(project / "data", shards=2, rows=40)
    (project / "config.yaml").write_text(yaml.safe_dump({
        "input": "data", "run_dir": "runs/a", "embed": {"embedder": "hashing", "dim": 16},
        "cluster": {"k": 3}, "sample": {"budget": 6},
    }))  # fmt: skip
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-m", "dataselect", "run", "../project/config.yaml",
                           "-q"], cwd=elsewhere, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (project / "runs" / "a" / "sample" / "_manifest.json").exists()
    assert not (elsewhere / "runs").exists()
    again = run_process("run", project / "config.yaml", "--set", f"run_dir={tmp_path / 'b'}", "-q")
    assert again.returncode == 0 and (tmp_path / "b" / "sample" / "_manifest.json").exists()


def test_config_errors(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [unclosed")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("run_dir: x\n")
    with pytest.raises(UsageError, match="'input' is required"):
        load_config(bad)
    config = write_config(tmp_path, cluster={"k": 6, "clusters": 3})
    result = cli("run", config)
    assert result.exit_code == 2 and "cluster: unknown option(s) clusters" in result.stderr
    result = cli("run", config, "--set", "nonsense")
    assert result.exit_code == 2 and "expected key=value" in result.stderr


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(name: str) -> None:
    from dataselect.pipeline import STAGES, stage_config

    config = load_config(ROOT / "configs" / name)
    for stage in STAGES:
        stage_config(stage, config.get(stage)).check()


def test_rerunning_a_pipeline_keeps_the_refined_rounds(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, sample={"strategy": "iterative", "budget": 30})
    assert run_json(cli, config)["rows_selected"] == 10  # round 1 of 3
    selection = tmp_path / "run" / "sample"
    ids = pq.read_table(sorted(str(p) for p in selection.glob("part-*.parquet")), columns=["id"])
    feedback = tmp_path / "feedback.parquet"
    pq.write_table(
        ids.append_column("score", pa.array(range(ids.num_rows), pa.float64())), feedback
    )
    assert cli("refine", selection, "--feedback", feedback, "-q").exit_code == 0
    plans = json.loads(cli("run", config, "--dry-run", "--json").stdout)["stages"]
    assert all(p["action"].startswith("skip") for p in plans), plans  # as the run will
    again = run_json(cli, config)
    assert again["rows_selected"] == 20 and "sample" in again["stages_skipped"]
    # other settings start the rounds again
    changed = run_json(cli, config, "--set", "sample.rounds=2")
    assert changed["rows_selected"] == 15


WRONG_VALUES = [
    ("cluster", "k", "a thousand"),
    ("cluster", "k", True),
    ("cluster", "k", 0),
    ("cluster", "niter", "twenty"),
    ("cluster", "k_grid", "eight"),
    ("cluster", "max_points_per_centroid", 1.5),
    ("cluster", "metric", "manhattan"),
    ("embed", "dim", "large"),
    ("embed", "seed", "seven"),
    ("embed", "shard_rows", -5),
    ("embed", "batch_size", [64]),
    ("embed", "template", 42),
    ("embed", "device", "tpu"),
    ("sample", "temperature", float("nan")),
    ("sample", "temperature", float("inf")),
    ("sample", "temperature", "hot"),
    ("sample", "budget", True),
    ("sample", "budget_tokens", "many"),
    ("sample", "rounds", 0),
    ("sample", "allocation", "fair"),
    ("score", "scorers", 3),
    ("score", "l2", "tiny"),
    ("score", "folds", 1),
]


@pytest.mark.parametrize(("section", "key", "value"), WRONG_VALUES)
def test_a_wrong_value_in_a_run_config_is_refused_before_any_stage(
    cli, tmp_path: Path, section: str, key: str, value: object
) -> None:
    """Every key typed and checked up front: exit 2, one line naming section.key, nothing
    run (the run folder is not even made)."""
    config = write_config(tmp_path, score={"scorers": ["heuristic"]})
    loaded = yaml.safe_load(config.read_text())
    loaded[section][key] = value
    config.write_text(yaml.safe_dump(loaded))
    result = cli("run", config)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert f"{section}.{key}" in lines[0], lines[0]
    assert not (tmp_path / "run").exists()
