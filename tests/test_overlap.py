"""Overlapping runs (cron, Makefiles): one writer per folder, readers share it, nothing is
lost or mixed. The races are made deterministic: the first run stops itself (SIGSTOP) after
publishing a shard, the test acts, then continues it (SIGCONT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_process, shard_bytes, write_parquet_folder

from dataselect.engine.base import PAUSE_AFTER_ENV
from dataselect.io.lock import HOLDER, writing

EMBED = ("-e", "hashing", "--dim", "16", "--workers", "1")


def start(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dataselect", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def stopped(process: subprocess.Popen) -> None:
    """Wait until ``process`` has stopped itself (state T), or fail after a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        state = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.02)
    raise AssertionError("the first run never paused")


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*"))


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dataselect: error: "), stderr
    return lines[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)


def test_a_second_writer_is_refused_and_touches_nothing(corpus: Path, tmp_path: Path) -> None:
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run_process("embed", corpus, reference, *EMBED).returncode == 0
    first = start("embed", corpus, out, *EMBED, "-q", env={PAUSE_AFTER_ENV: "1"})
    stopped(first)
    (out / ".notes.tmp").write_text("the user's own")  # a hidden file that is not ours
    before = {name: (out / name).read_bytes() for name in hidden(out) if (out / name).is_file()}
    for args in (EMBED, ("-e", "hashing", "--dim", "8")):  # same settings, and other ones
        second = run_process("embed", corpus, out, *args)
        assert second.returncode == 2, second.stderr
        line = one_error_line(second.stderr)
        assert f"pid {first.pid}: dataselect embed" in line and "--wait" in line, line
    after = {name: (out / name).read_bytes() for name in hidden(out) if (out / name).is_file()}
    assert after == before  # not a byte of the first run's (or the user's) files touched
    first.send_signal(signal.SIGCONT)
    assert first.wait(60) == 0, first.stderr.read() if first.stderr else ""
    assert shard_bytes(out) == shard_bytes(reference)
    assert hidden(out) == [".notes.tmp"]  # the lock's holder file went with the lock


def test_wait_queues_a_second_run_behind_the_first(corpus: Path, tmp_path: Path) -> None:
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run_process("embed", corpus, reference, *EMBED).returncode == 0
    first = start("embed", corpus, out, *EMBED, "-q", env={PAUSE_AFTER_ENV: "1"})
    stopped(first)
    second = start("embed", corpus, out, *EMBED, "--json", "--wait", "120")
    assert second.stderr is not None
    line = second.stderr.readline()  # the barrier: it is waiting for the first
    assert f"waiting for pid {first.pid}" in line, line
    first.send_signal(signal.SIGCONT)
    assert first.wait(60) == 0
    out_text, err_text = second.communicate(timeout=120)
    assert second.returncode == 0, err_text
    assert json.loads(out_text)["shards_skipped"] == 3  # the first run finished them
    assert shard_bytes(out) == shard_bytes(reference)


def test_an_input_being_read_is_not_replaced_underneath(corpus: Path, tmp_path: Path) -> None:
    embedded, clusters, reference = tmp_path / "embed", tmp_path / "cluster", tmp_path / "ref"
    assert run_process("embed", corpus, embedded, *EMBED).returncode == 0
    assert run_process("cluster", embedded, reference, "--k", 3).returncode == 0
    reader = start("cluster", embedded, clusters, "--k", 3, "-q", env={PAUSE_AFTER_ENV: "1"})
    stopped(reader)
    rewrite = run_process("embed", corpus, embedded, *EMBED, "--seed", 7, "--overwrite")
    assert rewrite.returncode == 2, rewrite.stderr
    assert "another run uses this folder" in one_error_line(rewrite.stderr)
    reader.send_signal(signal.SIGCONT)
    assert reader.wait(60) == 0, reader.stderr.read() if reader.stderr else ""
    assert shard_bytes(clusters) == shard_bytes(reference)  # one input, not two


def test_refine_and_run_take_the_same_locks(corpus: Path, tmp_path: Path) -> None:
    """Two refines at once cannot both apply a round (one would be silently dropped), and
    two runs of one run folder cannot interleave: the second is refused."""
    embedded, clusters, rounds = tmp_path / "embed", tmp_path / "cluster", tmp_path / "rounds"
    assert run_process("embed", corpus, embedded, *EMBED).returncode == 0
    assert run_process("cluster", embedded, clusters, "--k", 3).returncode == 0
    assert run_process("sample", clusters, rounds, "-s", "iterative", "-b", 30).returncode == 0
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [f"row-{i:06d}" for i in range(120)]
    pq.write_table(pa.table({"id": ids, "score": [float(i % 7) for i in range(120)]}),
                   tmp_path / "feedback.parquet")  # fmt: skip
    with writing(rounds):  # another refine holds the selection
        busy = run_process("refine", rounds, "--feedback", tmp_path / "feedback.parquet")
    assert busy.returncode == 2 and "another run uses this folder" in busy.stderr, busy.stderr
    assert not (rounds / "_feedback").exists()  # its feedback was not stored either
    done = run_process("refine", rounds, "--feedback", tmp_path / "feedback.parquet", "--json")
    assert done.returncode == 0, done.stderr
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({"input": str(corpus), "run_dir": str(tmp_path / "run"),
                                  "embed": {"embedder": "hashing", "dim": 16},
                                  "cluster": {"k": 3}, "sample": {"budget": 9}}))  # fmt: skip
    (tmp_path / "run").mkdir()
    with writing(tmp_path / "run"):
        busy = run_process("run", config)
    assert busy.returncode == 2 and "another run uses this folder" in busy.stderr, busy.stderr
    assert run_process("run", config).returncode == 0
    assert not (tmp_path / "run" / HOLDER).exists()


def test_sigterm_is_handled_like_ctrl_c(corpus: Path, tmp_path: Path) -> None:
    """One line, exit 143, no hidden file left (temporary files, the lock's holder file);
    the finished shard stays and the rerun completes with the uninterrupted bytes."""
    reference, out = tmp_path / "reference", tmp_path / "out"
    assert run_process("embed", corpus, reference, *EMBED).returncode == 0
    run = start("embed", corpus, out, *EMBED, "-q", env={PAUSE_AFTER_ENV: "1"})
    stopped(run)
    run.send_signal(signal.SIGTERM)
    run.send_signal(signal.SIGCONT)
    assert run.wait(60) == 143
    assert run.stderr is not None
    assert run.stderr.read().strip() == "dataselect: terminated; rerun the same command to resume"
    assert hidden(out) == [] and len(list(out.glob("part-*.parquet"))) == 1
    again = run_process("embed", corpus, out, *EMBED, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["shards_skipped"] == 1
    assert shard_bytes(out) == shard_bytes(reference)
