"""The stage-folder contract: atomic shards, resume, refusal, determinism, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import run_process, shard_bytes, write_parquet_folder

from dataselect.embedding.stage import EmbedConfig, embed
from dataselect.engine.base import CRASH_AFTER_ENV
from dataselect.errors import DataError, UsageError
from dataselect.io import output as output_module

HASHING = EmbedConfig(embedder="hashing", dim=64)


def test_output_layout_and_manifest(corpus: Path, tmp_path: Path) -> None:
    result = embed(corpus, tmp_path / "out", HASHING, quiet=True)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] and manifest["stage"] == "embed" and manifest["rows"] == 150
    assert [s["source"]["file"] for s in manifest["shards"]] == [
        "data-000.parquet",
        "data-001.parquet",
        "data-002.parquet",
    ]
    table = pq.read_table(out / "part-00001.parquet")
    assert table.column_names == ["id", "embedding"]
    kind = table.schema.field("embedding").type
    assert kind.list_size == 64 and str(kind.value_type) == "float"
    # input shard i -> output shard i, rows in input order
    assert (
        table.column("id").to_pylist()
        == pq.read_table(corpus / "data-001.parquet").column("id").to_pylist()
    )
    assert result.rows == 150 and result.shards_skipped == 0


def test_rerun_skips_finished_shards(corpus: Path, tmp_path: Path) -> None:
    embed(corpus, tmp_path / "out", HASHING, quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    again = embed(corpus, tmp_path / "out", HASHING, quiet=True)
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert again.shards_skipped == 3 and before == after
    assert again.summary()["rows_processed"] == 0 and again.summary()["rows"] == 150


def test_resume_redoes_only_missing_or_damaged_shards(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    embed(corpus, out, HASHING, quiet=True)
    reference = shard_bytes(out)
    manifest = json.loads((out / "_manifest.json").read_text())
    # simulate a crash after shard 0: incomplete manifest, marker for shard 0 only
    manifest["complete"] = False
    manifest["shards"] = []
    (out / "_manifest.json").write_text(json.dumps(manifest))
    (out / "_shards").mkdir()
    record = json.loads(
        json.dumps(embed(corpus, tmp_path / "ref", HASHING, quiet=True).manifest.shards[0])
    )
    (out / "_shards" / "part-00000.json").write_text(json.dumps(record))
    (out / "part-00002.parquet").write_bytes(b"half a file")
    result = embed(corpus, out, HASHING, quiet=True)
    assert result.shards_skipped == 1
    assert shard_bytes(out) == reference
    assert not (out / "_shards").exists()


def test_same_seed_same_bytes_other_seed_other_bytes(corpus: Path, tmp_path: Path) -> None:
    embed(corpus, tmp_path / "a", HASHING, quiet=True)
    embed(corpus, tmp_path / "b", HASHING, quiet=True)
    embed(corpus, tmp_path / "c", EmbedConfig(embedder="hashing", dim=64, seed=1), quiet=True)
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert shard_bytes(tmp_path / "a") != shard_bytes(tmp_path / "c")


def test_changed_parameters_are_refused_unless_overwrite(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    embed(corpus, out, HASHING, quiet=True)
    with pytest.raises(UsageError, match=r"different settings \(params.dim: 64 -> 32"):
        embed(corpus, out, EmbedConfig(embedder="hashing", dim=32), quiet=True)
    result = embed(corpus, out, EmbedConfig(embedder="hashing", dim=32), overwrite=True, quiet=True)
    assert result.shards_skipped == 0
    assert pq.read_table(out / "part-00000.parquet").schema.field("embedding").type.list_size == 32


def test_changed_input_is_refused(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    embed(corpus, out, HASHING, quiet=True)
    write_parquet_folder(corpus, shards=3, rows=50, seed=7)
    with pytest.raises(UsageError, match="input data changed"):
        embed(corpus, out, HASHING, quiet=True)


def test_foreign_folder_and_other_stage_are_refused(corpus: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty and not a dataselect stage folder"):
        embed(corpus, foreign, HASHING, quiet=True)
    other = tmp_path / "other"
    embed(corpus, other, HASHING, quiet=True)
    manifest = json.loads((other / "_manifest.json").read_text())
    manifest["stage"] = "cluster"
    (other / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match="holds the output of the 'cluster' stage"):
        embed(corpus, other, HASHING, quiet=True)


def test_failed_write_leaves_no_partial_file(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while shard 1 is written rolls back this run; nothing half-written remains."""
    calls = {"n": 0}
    real_commit = output_module.commit

    def failing_commit(tmp: Path, final: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            assert tmp.exists() and not final.exists()
            raise OSError(28, "No space left on device")
        real_commit(tmp, final)

    monkeypatch.setattr(output_module, "commit", failing_commit)
    with pytest.raises(DataError, match="No space left on device"):
        embed(corpus, tmp_path / "out", HASHING, quiet=True)
    assert not (tmp_path / "out").exists()


def test_temporary_files_are_hidden_and_swept(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".part-00000.parquet.999.tmp").write_bytes(b"left by a crash")
    embed(corpus, out, HASHING, quiet=True)
    assert not list(out.glob(".*"))


def _crash_and_resume(corpus: Path, out: Path, extra_env: dict[str, str]) -> None:
    crashed = run_process(
        "embed", corpus, out, "--embedder", "hashing", "--dim", "64", env=extra_env
    )
    assert crashed.returncode == -signal.SIGKILL
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["complete"] is False
    assert len(list(out.glob("part-*.parquet"))) == 1
    resumed = run_process("embed", corpus, out, "--embedder", "hashing", "--dim", "64", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["shards_skipped"] == 1


def test_sigkill_after_a_shard_then_rerun_equals_uninterrupted(
    corpus: Path, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    assert (
        run_process("embed", corpus, reference, "--embedder", "hashing", "--dim", "64").returncode
        == 0
    )
    out = tmp_path / "out"
    _crash_and_resume(corpus, out, {CRASH_AFTER_ENV: "1"})
    assert shard_bytes(out) == shard_bytes(reference)
    assert not list(out.glob(".*")) and not (out / "_shards").exists()


def test_sigkill_at_a_random_moment_then_rerun(tmp_path: Path) -> None:
    """An external SIGKILL while shards are being written; the rerun completes identically."""
    corpus = write_parquet_folder(tmp_path / "big", shards=8, rows=4000)
    reference = tmp_path / "reference"
    assert run_process("embed", corpus, reference, "-e", "hashing", "-q").returncode == 0
    out = tmp_path / "out"
    args = [sys.executable, "-m", "dataselect", "embed", str(corpus), str(out), "-e", "hashing"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not list((out / "_shards").glob("*.json")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_mid_run = json.loads((out / "_manifest.json").read_text())["complete"] is False
    assert killed_mid_run, "the run finished before the kill; make the corpus larger"
    resumed = run_process("embed", corpus, out, "-e", "hashing", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert shard_bytes(out) == shard_bytes(reference)
    assert json.loads((out / "_manifest.json").read_text())["complete"] is True


def test_damaged_shard_of_a_finished_run_is_redone(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    embed(corpus, out, HASHING, quiet=True)
    reference = shard_bytes(out)
    (out / "part-00001.parquet").write_bytes(b"bit rot")
    result = embed(corpus, out, HASHING, quiet=True)
    assert result.shards_skipped == 2
    assert shard_bytes(out) == reference
