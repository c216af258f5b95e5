"""--workers N: shards in several local processes, the same bytes as one."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
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
