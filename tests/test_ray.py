"""The Ray engine on a local Ray instance: the same bytes as the local engine, every stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_process, write_parquet_folder

from dataselect import (
    ClusterConfig,
    DedupConfig,
    EmbedConfig,
    SampleConfig,
    ScoreConfig,
    cluster,
    dedup,
    embed,
    sample,
    score,
)
from dataselect.engine import use_engine


def pipeline(corpus: Path, root: Path) -> list[Path]:
    names = ("embed", "cluster", "score", "dedup", "sample", "facility", "hierarchical")
    folders = [root / name for name in names]
    embed(corpus, folders[0], EmbedConfig(embedder="hashing", dim=32), quiet=True)
    cluster(folders[0], folders[1], ClusterConfig(k=5), quiet=True)
    scorers = ScoreConfig(scorers=("heuristic", "label-agreement"), label_column="label")
    score(folders[1], folders[2], scorers, quiet=True)
    dedup(folders[2], folders[3], DedupConfig(method=("exact", "minhash")), quiet=True)
    sample(
        folders[3],
        folders[4],
        SampleConfig(strategy="kmq", budget="25", score_column="score_heuristic"),
        quiet=True,
    )
    sample(
        folders[1], folders[5], SampleConfig(strategy="facility-location", budget="20"), quiet=True
    )
    hierarchical = SampleConfig(strategy="hierarchical", budget="20", levels=(2,))
    sample(folders[1], folders[6], hierarchical, quiet=True)
    return folders


def files(folder: Path) -> dict[str, bytes]:
    """Shards and artifacts (the manifest holds timings and the input path)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "_manifest.json"
    }


def ray_or_skip():
    return pytest.importorskip("ray", reason="the 'ray' extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    ray = ray_or_skip()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_every_stage_gives_the_local_engines_bytes(local_ray, tmp_path: Path) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=4, rows=60)
    local = pipeline(corpus, tmp_path / "local")
    with use_engine("ray"):
        on_ray = pipeline(corpus, tmp_path / "ray")
    for a, b in zip(local, on_ray, strict=True):
        assert files(a) == files(b), a.name
        assert any(name.startswith("part-") for name in files(a))
    # a rerun on Ray skips the finished shards
    with use_engine("ray"):
        again = embed(corpus, on_ray[0], EmbedConfig(embedder="hashing", dim=32), quiet=True)
    assert again.shards_skipped == again.shards == 4


def test_bad_data_on_ray_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    ray_or_skip()
    source = tmp_path / "data"
    write_parquet_folder(source, shards=2, rows=20)
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = pa.table({"id": ["x"], "text": pa.array([None], pa.string()), "label": ["0"]})
    pq.write_table(bad, source / "z.parquet")
    done = run_process(
        "embed", source, tmp_path / "out", "--embedder", "hashing", "--engine", "ray", "-q"
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("dataselect:")]
    assert done.returncode == 1 and len(lines) == 1 and "null text" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_engine_options_are_checked(cli, tmp_path: Path) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=1, rows=10)
    bad = cli("embed", corpus, tmp_path / "o", "--embedder", "hashing", "--engine", "spark")
    assert bad.exit_code == 2 and "--engine must be one of local, ray" in bad.stderr
    lone = cli("embed", corpus, tmp_path / "o", "--embedder", "hashing", "--ray-address", "auto")
    assert lone.exit_code == 2 and "--ray-address needs --engine ray" in lone.stderr


def test_sigkill_on_ray_then_rerun_equals_the_local_engine(tmp_path: Path) -> None:
    """The publisher's crash injection covers Ray too: killed after one published shard
    while tasks were writing others, the rerun (on Ray) gives the local engine's bytes and
    leaves no hidden file."""
    import signal

    from conftest import shard_bytes

    from dataselect.engine.base import CRASH_AFTER_ENV

    ray_or_skip()
    corpus = write_parquet_folder(tmp_path / "corpus", shards=4, rows=100)
    args = ("embed", corpus, "-e", "hashing", "--dim", "32")
    assert run_process(*args[:2], tmp_path / "local", *args[2:]).returncode == 0
    out = tmp_path / "ray"
    crashed = run_process(*args[:2], out, *args[2:], "--engine", "ray",
                          env={CRASH_AFTER_ENV: "1"})  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert 1 <= len(list(out.glob("part-*.parquet"))) < 4
    rerun = run_process(*args[:2], out, *args[2:], "--engine", "ray", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["shards_skipped"] >= 1
    assert shard_bytes(out) == shard_bytes(tmp_path / "local")
    assert not list(out.glob(".*")), list(out.glob(".*"))
