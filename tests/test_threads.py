"""Same bytes whatever the BLAS thread count (issue 16, item 6): the fits run with one BLAS
thread (``numeric.py``), so a pipeline run with OPENBLAS_NUM_THREADS=1 and one with 2 write
the same models, scores and selections."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_process

LABELS = 60


def labelled_corpus(path: Path, rows: int, seed: int) -> Path:
    """Texts whose words depend on their label (60 labels), so the probes have work to do."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(600)]
    labels = rng.integers(0, LABELS, rows)
    texts = []
    for i, label in enumerate(labels):
        own = rng.choice(vocabulary[label * 10 : label * 10 + 10], size=5)
        noise = rng.choice(vocabulary, size=5)
        texts.append(" ".join([*own, *noise]) + f" {i}")
    table = pa.table({"id": np.arange(rows) + seed * rows, "text": texts,
                      "label": [f"l{label}" for label in labels]})  # fmt: skip
    pq.write_table(table, path)
    return path


def run_pipeline(tmp_path: Path, threads: int) -> dict[str, bytes]:
    train = labelled_corpus(tmp_path / "train.parquet", 6000, seed=0)
    test = labelled_corpus(tmp_path / "test.parquet", 1200, seed=1)
    out = tmp_path / f"threads-{threads}"
    env = {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                           "MKL_NUM_THREADS")}  # fmt: skip
    embed = ("-e", "hashing", "--dim", "384", "-q")
    steps = [
        ("embed", train, out / "e", *embed),
        ("embed", test, out / "r", *embed),
        ("cluster", out / "e", out / "c", "--k", "30", "-q"),
        ("score", out / "c", out / "s", "--scorer", "label-agreement", "--scorer", "influence",
         "--reference", out / "r", "--scorer", "el2n", "--label-column", "label", "-q"),
        ("sample", out / "s", out / "k", "-s", "kmq", "--score-column",
         "score_label_agreement", "-b", "5%", "-q"),
        ("sample", out / "s", out / "i", "-s", "iterative", "--label-column", "label",
         "-b", "5%", "-q"),
    ]  # fmt: skip
    for step in steps:
        result = run_process(*step, env=env)
        assert result.returncode == 0, (step, result.stderr)
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.suffix in (".parquet", ".npy", ".npz")
    }


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to run BLAS on 2 threads")
def test_one_and_two_blas_threads_give_the_same_bytes(tmp_path: Path) -> None:
    one = run_pipeline(tmp_path, 1)
    two = run_pipeline(tmp_path, 2)
    assert sorted(one) == sorted(two)
    assert "s/__artifacts__/label_agreement.npz" in one
    assert "i/__artifacts__/decisions.parquet" in one
    differ = [name for name in one if one[name] != two[name]]
    assert differ == [], differ
