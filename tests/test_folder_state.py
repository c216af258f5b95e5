"""One reading of a stage folder (``FolderState``): the dry run, the real run and `inspect`
agree on what is done, because they all read the folder through it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import run_process, shard_bytes, write_parquet_folder

from dataselect.engine.base import CRASH_AFTER_ENV
from dataselect.io.folder_state import MARKER_DIR, FolderState
from dataselect.manifest import read_manifest

EMBED = ("-e", "hashing", "--dim", "16")


def damage_deleted_part(out: Path) -> None:
    (out / "part-00001.parquet").unlink()


def damage_flipped_byte(out: Path) -> None:
    part = out / "part-00001.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    part.write_bytes(bytes(data))


def damage_missing_marker(out: Path) -> None:
    (out / MARKER_DIR / "part-00001.json").unlink()


def damage_flipped_byte_of_a_marked_part(out: Path) -> None:
    damage_flipped_byte(out)


@pytest.mark.parametrize(
    "damage, interrupted",
    [
        (damage_deleted_part, False),
        (damage_flipped_byte, False),
        (damage_missing_marker, True),
        (damage_flipped_byte_of_a_marked_part, True),
    ],
)
def test_dry_run_and_real_run_agree_on_a_damaged_folder(cli, tmp_path: Path, damage, interrupted):
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert cli("embed", corpus, reference, *EMBED, "-q").exit_code == 0
    if interrupted:  # killed after two of three shards: two markers, no complete manifest
        crashed = run_process("embed", corpus, out, *EMBED, "--workers", "1",
                              env={CRASH_AFTER_ENV: "2"})  # fmt: skip
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        assert len(list((out / MARKER_DIR).glob("*.json"))) == 2
    else:
        assert cli("embed", corpus, out, *EMBED, "-q").exit_code == 0
    damage(out)
    done_left = 1 if interrupted else 2  # shard 1 no longer counts, whatever was wrong
    plan = json.loads(cli("embed", corpus, out, *EMBED, "--dry-run", "--json").stdout)
    (stage,) = plan["stages"]
    assert stage["action"] == f"resume: {done_left} of 3 shards done", stage["action"]
    assert stage["rows_to_process"] == 40 * (3 - done_left)
    result = cli("embed", corpus, out, *EMBED, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["shards_skipped"] == done_left
    assert summary["rows_processed"] == stage["rows_to_process"]
    assert shard_bytes(out) == shard_bytes(reference)
    again = json.loads(cli("embed", corpus, out, *EMBED, "--dry-run", "--json").stdout)
    assert again["stages"][0]["action"].startswith("skip")


def test_inspect_reads_the_damage_the_stage_would_redo(cli, tmp_path: Path) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    out = tmp_path / "out"
    assert cli("embed", corpus, out, *EMBED, "-q").exit_code == 0
    damage_flipped_byte(out)
    cheap = json.loads(cli("inspect", out, "--json").stdout)
    assert cheap["problems"] == []  # sizes only: the same size passes
    verified = cli("inspect", out, "--verify", "--json")
    assert verified.exit_code == 1
    assert json.loads(verified.stdout)["problems"] == [
        "part-00001.parquet does not match its checksum"
    ]
    state = FolderState.read(out, verify="checksum")
    assert sorted(state.done) == [0, 2] and not state.complete


def test_folder_state_actions(tmp_path: Path) -> None:
    """run, skip, resume, replace and refuse, from the same reading."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=10)
    out = tmp_path / "out"
    assert run_process("embed", corpus, out, *EMBED).returncode == 0
    wanted = read_manifest(out)
    assert FolderState.read(tmp_path / "new", wanted).action == "run"
    assert FolderState.read(out, wanted).action == "skip"
    assert FolderState.read(out, wanted, overwrite=True).action == "replace"
    other = read_manifest(out)
    other.params = {**other.params, "dim": 8}
    refused = FolderState.read(out, other)
    assert refused.action == "refuse" and "dim: 16 -> 8" in refused.describe()
    assert "different settings (params.dim: 16 -> 8)" in str(refused.refusal())
    assert FolderState.read(out, other, overwrite="stale").action == "replace"
    other.stage = "cluster"
    assert FolderState.read(out, other, overwrite="stale").action == "refuse"
    assert "not 'cluster'" in str(FolderState.read(out, other).refusal())
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    assert FolderState.read(tmp_path / "foreign", wanted).action == "refuse"
    assert FolderState.read(tmp_path / "foreign", wanted, overwrite=True).action == "run"
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["shards"][0]["file"] = "part-00001.parquet"  # a record naming another shard's file
    (out / "_manifest.json").write_text(json.dumps(manifest))
    state = FolderState.read(out, wanted)
    assert state.action == "resume" and sorted(state.done) == [1]
    assert "malformed" in state.problems[0]


def test_a_marker_naming_another_shard_is_not_believed(tmp_path: Path) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    out = tmp_path / "out"
    crashed = run_process("embed", corpus, out, *EMBED, "--workers", "1",
                          env={CRASH_AFTER_ENV: "1"})  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    marker = out / MARKER_DIR / "part-00000.json"
    marker.rename(out / MARKER_DIR / "part-00002.json")  # says shard 0, is named for shard 2
    state = FolderState.read(out)
    assert state.done == {} and "malformed" in state.problems[0], state.problems


def test_a_stage_reading_a_folder_with_a_missing_part_refuses_it(cli, tmp_path: Path) -> None:
    """The next stage reads its input folder through the same view: a missing part is one
    error line naming it, not a traceback."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    embed = tmp_path / "embed"
    assert cli("embed", corpus, embed, *EMBED, "-q").exit_code == 0
    (embed / "part-00001.parquet").unlink()
    result = cli("cluster", embed, tmp_path / "cluster", "--k", 3, "-q")
    assert result.exit_code == 1 and "part-00001.parquet is missing" in result.stderr


def test_a_run_killed_after_its_manifest_leaves_nothing_behind_after_the_rerun(cli, tmp_path):
    """Killed between the complete manifest and the clean-up (the crash benchmark hit it):
    the rerun skips and removes the markers and the set-aside output."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=20)
    out = tmp_path / "out"
    assert cli("embed", corpus, out, *EMBED, "-q").exit_code == 0
    before = shard_bytes(out)
    (out / MARKER_DIR).mkdir()
    (out / MARKER_DIR / "part-00001.json").write_text("{}")
    (out / ".replaced-4242").mkdir()
    (out / ".replaced-4242" / "part-00000.parquet").write_bytes(b"old")
    result = cli("embed", corpus, out, *EMBED, "--json")
    assert json.loads(result.stdout)["shards_skipped"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["_manifest.json", *sorted(before)]
    assert shard_bytes(out) == before
