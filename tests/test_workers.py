"""--workers N: shards in several local processes, the same bytes as one."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_parquet_folder
from test_ray import files, pipeline

from dataselect.engine import use_engine


def test_workers_give_the_same_bytes_for_every_stage(tmp_path: Path) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=4, rows=60)
    one = pipeline(corpus, tmp_path / "one")
    with use_engine("local", workers=2):
        two = pipeline(corpus, tmp_path / "two")
    for a, b in zip(one, two, strict=True):
        assert files(a) == files(b), a.name


def test_bad_data_in_a_worker_leaves_nothing(cli, tmp_path: Path) -> None:
    source = write_parquet_folder(tmp_path / "data", shards=3, rows=20)
    bad = pa.table({"id": ["x"], "text": pa.array([None], pa.string()), "label": ["0"]})
    pq.write_table(bad, source / "data-001.parquet")  # the second of three shards
    out = tmp_path / "out"
    result = cli("embed", source, out, "--embedder", "hashing", "--workers", "2", "-q")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and "null text" in lines[0], result.stderr
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())  # hidden files too


def test_auto_workers_pick_processes_only_where_they_pay(monkeypatch) -> None:
    import dataselect.engine as engine
    from dataselect.engine.base import SchedulingTraits

    monkeypatch.setattr(engine, "usable_cores", lambda: 4)
    single, busy = SchedulingTraits(), SchedulingTraits(uses_every_core=True)
    assert engine.resolve_workers(engine.AUTO, single, 10, 1_000_000) == 4
    assert engine.resolve_workers(engine.AUTO, single, 3, 1_000_000) == 3  # one per shard
    assert engine.resolve_workers(engine.AUTO, single, 10, 1_000) == 1  # too small to pay
    assert engine.resolve_workers(engine.AUTO, single, 1, 1_000_000) == 1
    assert engine.resolve_workers(engine.AUTO, busy, 10, 1_000_000) == 1  # torch, FAISS
    assert engine.resolve_workers(3, busy, 10, 10) == 3  # a count is taken as given
    from dataselect.sampling.stage import SampleStage  # its write-out: threads side by side

    assert SampleStage.traits.shards_in_threads
    assert engine.resolve_workers(engine.AUTO, SampleStage.traits, 10, 1_000_000) == 4


def test_sample_writes_its_shards_in_threads(cli, tmp_path: Path) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=4, rows=60)
    runs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        assert cli("embed", corpus, out / "embed", "--embedder", "hashing", "-q").exit_code == 0
        assert cli("cluster", out / "embed", out / "cluster", "--k", "3", "-q").exit_code == 0
        result = cli("sample", out / "cluster", out / "sample", "--budget", "25%",
                     "--workers", workers)  # fmt: skip
        assert result.exit_code == 0, result.stderr
        runs.append((result.stderr, files(out / "sample")))
    assert "4 shards in 2 worker threads" in runs[1][0], runs[1][0]
    assert runs[0][1] == runs[1][1]


def test_auto_is_the_cli_default_and_runs_worker_processes(cli, tmp_path: Path, monkeypatch):
    """Above the row threshold, the default (auto) runs shards in processes: same bytes."""
    import dataselect.engine as engine

    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=40)
    one = cli("embed", corpus, tmp_path / "one", "--embedder", "hashing", "--workers", "1")
    monkeypatch.setattr(engine, "AUTO_MIN_ROWS", 10)
    auto = cli("embed", corpus, tmp_path / "auto", "--embedder", "hashing")
    assert one.exit_code == auto.exit_code == 0, auto.stderr
    assert "worker processes" in auto.stderr and "worker processes" not in one.stderr
    assert files(tmp_path / "one") == files(tmp_path / "auto")
    for bad in ("0", "two"):
        result = cli("embed", corpus, tmp_path / "bad", "--workers", bad)
        assert result.exit_code == 2 and "--workers" in result.stderr


def test_a_shard_run_side_by_side_records_its_own_time(tmp_path: Path, monkeypatch) -> None:
    """Not the publisher's wait for it: shard 1 (0.2 s) finishes while shard 0 (0.4 s) runs."""
    import time

    import dataselect.engine.base as local
    from dataselect.embedding.stage import EmbedConfig, EmbedStage, embed
    from dataselect.engine.base import SchedulingTraits
    from dataselect.manifest import read_manifest

    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=20)
    write = local.write_shard_file

    def slow(stage, shard, path, progress=None):
        time.sleep(0.4 if shard.index == 0 else 0.2)
        return write(stage, shard, path, progress)

    monkeypatch.setattr(local, "write_shard_file", slow)
    # threads, so the patch reaches the workers (a spawned process would not see it)
    real_init = EmbedStage.__init__

    def in_threads(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.traits = SchedulingTraits(shards_in_threads=True)

    monkeypatch.setattr(EmbedStage, "__init__", in_threads)
    with use_engine("local", workers=2):
        embed(corpus, tmp_path / "out", EmbedConfig(embedder="hashing"), quiet=True)
    seconds = [shard["seconds"] for shard in read_manifest(tmp_path / "out").shards]
    assert seconds[0] >= 0.4 and seconds[1] >= 0.2, seconds


@pytest.mark.parametrize("stage", ["embed", "sample"])  # worker processes; worker threads
def test_sigkill_with_workers_then_rerun_equals_one_process(tmp_path: Path, stage: str) -> None:
    """Killed after one shard was published while other workers were mid-shard: the rerun
    finishes with the bytes of an uninterrupted one-process run, and leaves no hidden file."""
    import signal

    from conftest import run_process, shard_bytes

    from dataselect.engine.base import CRASH_AFTER_ENV

    corpus = write_parquet_folder(tmp_path / "corpus", shards=6, rows=400)
    if stage == "sample":
        assert run_process("embed", corpus, tmp_path / "e", "-e", "hashing").returncode == 0
        assert run_process("cluster", tmp_path / "e", tmp_path / "c", "--k", "4").returncode == 0
        args = ["sample", tmp_path / "c", None, "--budget", "30%"]
    else:
        args = ["embed", corpus, None, "-e", "hashing"]
    args[2] = tmp_path / "reference"
    assert run_process(*args, "--workers", "1").returncode == 0
    args[2] = out = tmp_path / "out"
    crashed = run_process(*args, "--workers", "2", env={CRASH_AFTER_ENV: "1"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert "worker" in crashed.stderr  # it did run side by side
    rerun = run_process(*args, "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert shard_bytes(out) == shard_bytes(tmp_path / "reference")
    assert not list(out.glob(".*")), list(out.glob(".*"))
