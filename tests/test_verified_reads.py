"""What a stage reads is what was written (issue 16, item 3): input shards are checked against
their manifest's SHA-256 as they are read, raw inputs are fingerprinted in full, saved
artifacts are checked on resume, and manifests of the wrong shape are one error line."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from conftest import run_process, shard_bytes, write_parquet_folder

from dataselect.engine.base import CRASH_AFTER_ENV
from dataselect.io.folder_state import MARKER_DIR, FolderState, artifact_marker_name
from dataselect.manifest import read_manifest

EMBED = ("-e", "hashing", "--dim", "16")
CLUSTER = ("--k", "4", "--seed", "3")


def flip_bytes_inside(part: Path) -> None:
    """Damage that keeps the size (the case a size check misses)."""
    data = bytearray(part.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0x5A for b in data[middle : middle + 8])
    part.write_bytes(bytes(data))


def one_error_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_damaged_input_shard_is_refused_and_a_repaired_one_is_used(cli, tmp_path: Path):
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    embedded, out, reference = tmp_path / "embedded", tmp_path / "out", tmp_path / "reference"
    assert cli("embed", corpus, embedded, *EMBED, "-q").exit_code == 0
    assert cli("cluster", embedded, reference, *CLUSTER, "-q").exit_code == 0
    flip_bytes_inside(embedded / "part-00001.parquet")

    process = run_process("cluster", embedded, out, *CLUSTER, "-q")  # stderr as a user sees it
    assert process.returncode == 1
    (line,) = process.stderr.strip().splitlines()  # the damaged floats' warnings not shown
    assert "part-00001.parquet" in line and "checksum" in line, line
    assert not out.exists()  # nothing half-written, nothing to resume from a corrupt input
    line = one_error_line(cli("score", embedded, tmp_path / "s", "--scorer", "heuristic", "-q"), 1)
    assert "part-00001.parquet" in line and "checksum" in line, line

    assert cli("embed", corpus, embedded, *EMBED, "-q").exit_code == 0  # redoes shard 1
    assert cli("cluster", embedded, out, *CLUSTER, "-q").exit_code == 0
    assert shard_bytes(out) == shard_bytes(reference)
    assert read_manifest(out).input == read_manifest(reference).input


def test_a_change_in_the_middle_of_a_raw_file_is_seen(cli, tmp_path: Path) -> None:
    """A JSONL file of ~3 MiB: the change lies outside its first and last MiB."""
    rows = [{"id": i, "text": f"row {i:06d} " + "x" * 90} for i in range(30_000)]
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert source.stat().st_size > 3 << 20
    out = tmp_path / "out"
    assert cli("embed", source, out, *EMBED, "-q").exit_code == 0
    rows[15_000]["text"] = rows[15_000]["text"].replace("x", "y")  # same size
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    line = one_error_line(cli("embed", source, out, *EMBED, "-q"), 2)
    assert "input data changed" in line, line
    fingerprint = read_manifest(out).input["fingerprint"]
    assert set(fingerprint["files"][0]) == {"file", "size", "sha256", "xxh3_128"}


def crashed_cluster(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A cluster run killed after one of three shards, and an uninterrupted reference."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    embedded, out, reference = tmp_path / "embedded", tmp_path / "out", tmp_path / "reference"
    assert run_process("embed", corpus, embedded, *EMBED, "-q").returncode == 0
    assert run_process("cluster", embedded, reference, *CLUSTER, "-q").returncode == 0
    crashed = run_process("cluster", embedded, out, *CLUSTER, env={CRASH_AFTER_ENV: "1"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert (out / MARKER_DIR / artifact_marker_name("centroids.npy")).exists()
    return embedded, out, reference


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_resume_refits_when_the_saved_centroids_were_changed(cli, tmp_path: Path, damage: str):
    embedded, out, reference = crashed_cluster(tmp_path)
    centroids = out / "__artifacts__/centroids.npy"
    if damage == "truncated":
        centroids.write_bytes(centroids.read_bytes()[:-64])
    else:  # other centroids of the same shape: a size check alone would pass them
        saved = np.load(centroids)
        np.save(centroids, np.ascontiguousarray(saved[::-1]))
    state = FolderState.read(out)
    assert state.done == {} and any("__artifacts__/centroids.npy" in p for p in state.problems), (
        state
    )
    plan = json.loads(cli("cluster", embedded, out, *CLUSTER, "--dry-run", "--json").stdout)
    assert plan["stages"][0]["action"] == "resume: 0 of 3 shards done"
    result = cli("cluster", embedded, out, *CLUSTER, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shards_skipped"] == 0  # every shard redone, refitted
    assert shard_bytes(out) == shard_bytes(reference)
    assert (out / "__artifacts__/centroids.npy").read_bytes() == (
        reference / "__artifacts__/centroids.npy"
    ).read_bytes()


def test_an_intact_resume_reuses_the_fit(cli, tmp_path: Path) -> None:
    embedded, out, reference = crashed_cluster(tmp_path)
    result = cli("cluster", embedded, out, *CLUSTER, "--json")
    assert json.loads(result.stdout)["shards_skipped"] == 1
    assert shard_bytes(out) == shard_bytes(reference)
    manifest = read_manifest(out)
    assert sorted(manifest.artifacts) == ["centroids.npy", "clusters.parquet", "fit.json"]
    assert manifest.artifacts == read_manifest(reference).artifacts


def test_a_damaged_artifact_of_a_finished_folder(cli, tmp_path: Path) -> None:
    """inspect --verify names it; a stage reading it refuses it; a rerun repairs it."""
    embedded, out, reference = crashed_cluster(tmp_path)
    assert cli("cluster", embedded, out, *CLUSTER, "-q").exit_code == 0
    flip_bytes_inside(out / "__artifacts__/clusters.parquet")
    result = cli("inspect", out, "--verify")
    assert result.exit_code == 1 and "__artifacts__/clusters.parquet" in result.output, (
        result.output
    )
    # kmeans-closest streams and reads the cluster sizes from clusters.parquet
    sampled = cli("sample", out, tmp_path / "s", "-b", "10", "-s", "kmeans-closest", "-q")
    line = one_error_line(sampled, 1)
    assert "__artifacts__/clusters.parquet" in line and "checksum" in line, line
    assert cli("cluster", embedded, out, *CLUSTER, "-q").exit_code == 0
    assert (out / "__artifacts__/clusters.parquet").read_bytes() == (
        reference / "__artifacts__/clusters.parquet"
    ).read_bytes()


@pytest.mark.parametrize(
    "manifest",
    ["[]", "null", '"text"', '{"stage": "embed"}', '{"stage": 3, "version": "0", "params": {},'
     ' "input": {}}', '{"stage": "embed", "version": "0", "params": {}, "input": {}, '
     '"complete": 1}', '{"stage": "embed", "version": "0", "params": {}, "input": {}, '
     '"shards": {}}'],
)  # fmt: skip
def test_a_manifest_of_the_wrong_shape_is_one_line(cli, tmp_path: Path, manifest: str) -> None:
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / "_manifest.json").write_text(manifest)
    for args in (("inspect", folder), ("cluster", folder, tmp_path / "out", "-q")):
        line = one_error_line(cli(*args), 1)
        assert "unreadable manifest" in line, line
    line = one_error_line(cli("embed", write_parquet_folder(tmp_path / "c"), folder, *EMBED), 1)
    assert "unreadable manifest" in line, line


def test_a_remade_identical_reference_folder_is_the_same_reference(cli, tmp_path: Path) -> None:
    """--reference names an embed folder: its rows identify it, not its manifest's timings."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=40)
    embedded, reference = tmp_path / "embedded", tmp_path / "reference"
    assert cli("embed", corpus, embedded, *EMBED, "-q").exit_code == 0
    assert cli("cluster", embedded, tmp_path / "c", *CLUSTER, "-q").exit_code == 0
    args = ("--scorer", "influence", "--reference", reference, "-q")
    assert cli("embed", corpus, reference, *EMBED, "-q").exit_code == 0
    assert cli("score", tmp_path / "c", tmp_path / "s", *args).exit_code == 0
    manifest = json.loads((reference / "_manifest.json").read_text())
    manifest["started"] = "2000-01-01T00:00:00+00:00"  # remade: other timings, same rows
    (reference / "_manifest.json").write_text(json.dumps(manifest))
    again = cli("score", tmp_path / "c", tmp_path / "s", *args[:-1], "--json")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["shards_skipped"] == 2


def test_a_source_changed_after_it_was_embedded_is_refused_by_the_sample_stage(cli, tmp_path):
    """The sample stage writes the source's rows: a change anywhere in a source file since
    the embed stage read it (the same size: only the full SHA-256 sees it) is one line."""
    rows = [{"id": i, "text": f"row {i:05d} " + "x" * 60, "label": str(i % 3)} for i in range(600)]
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    embedded, clustered = tmp_path / "embedded", tmp_path / "clustered"
    assert cli("embed", source, embedded, *EMBED, "-q").exit_code == 0
    assert cli("cluster", embedded, clustered, *CLUSTER, "-q").exit_code == 0
    rows[300]["text"] = rows[300]["text"].replace("x", "y")  # same size
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "sample"
    line = one_error_line(cli("sample", clustered, out, "-b", "20", "-q"), 1)
    assert line.endswith(f"{source}: the source data changed since {embedded} was embedded "
                         "(its checksum differs)"), line  # fmt: skip
    assert not out.exists()
    source.write_text(source.read_text() + json.dumps({"id": 600, "text": "t", "label": "0"}))
    line = one_error_line(cli("sample", clustered, out, "-b", "20", "-q"), 1)
    assert "the source data changed since" in line, line
