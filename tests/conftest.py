"""Shared fixtures: synthetic corpora, the real-data folder, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dataselect.cli.main import app

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"

WORDS = (
    "bank card transfer money account balance refund payment fee cash atm pin "
    "weather rain sunny cloud storm forecast wind snow temperature "
    "python code function error bug compile test module import class"
).split()


def needs_datasets() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not DATASETS.is_dir(), reason=f"real datasets folder {DATASETS} is not present"
    )


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    topics = np.array_split(np.array(WORDS), 3)
    texts = []
    for i in range(n):
        topic = topics[i % 3]
        words = rng.choice(topic, size=int(rng.integers(3, 12)))
        texts.append(" ".join(words) + f" #{i}")
    return texts


def write_parquet_folder(
    folder: Path, shards: int = 3, rows: int = 50, row_group_size: int | None = None, seed: int = 0
) -> Path:
    """A folder of `shards` Parquet files with id, text, label columns."""
    folder.mkdir(parents=True, exist_ok=True)
    texts = synthetic_texts(shards * rows, seed)
    for s in range(shards):
        part = texts[s * rows : (s + 1) * rows]
        table = pa.table(
            {
                "id": [f"row-{s * rows + i:06d}" for i in range(len(part))],
                "text": part,
                "label": [str((s * rows + i) % 3) for i in range(len(part))],
            }
        )
        pq.write_table(table, folder / f"data-{s:03d}.parquet", row_group_size=row_group_size)
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_parquet_folder(tmp_path / "corpus")


class Cli:
    """Runs the real command in-process (fast) and reports code, stdout and stderr."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: object) -> object:
        return self.runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def run_process(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m dataselect ...` in a separate process, as a user or cron would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dataselect", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=600,
    )


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}
