"""The real CLI, in a separate process, on the real corpora in ../shared/datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import DATASETS, needs_datasets, run_process, shard_bytes
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

pytestmark = [needs_datasets(), pytest.mark.slow]


def load_embeddings(folder: Path) -> tuple[list, np.ndarray]:
    table = pq.read_table(folder)
    return table.column("id").to_pylist(), np.array(table.column("embedding").to_pylist())


def labels_by_id(path: Path) -> dict[str, str]:
    table = pq.read_table(path, columns=["id", "label"])
    return dict(zip(table.column("id").to_pylist(), table.column("label").to_pylist(), strict=True))


def test_banking77_hashing_embeddings_carry_the_labels(tmp_path: Path) -> None:
    runs = {}
    for split in ("train", "test"):
        source = DATASETS / f"banking77.{split}.parquet"
        out = tmp_path / split
        done = run_process("embed", source, out, "--embedder", "hashing", "--json")
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert summary["rows"] == pq.read_metadata(source).num_rows and summary["dim"] == 384
        assert "shard 0 done" in done.stderr  # plain log lines when not on a terminal
        ids, vectors = load_embeddings(out)
        assert ids == pq.read_table(source, columns=["id"]).column("id").to_pylist()
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        labels = labels_by_id(source)
        runs[split] = (vectors, [labels[i] for i in ids])
    probe = LogisticRegression(max_iter=1000, C=10).fit(*runs["train"])
    accuracy = probe.score(*runs["test"])
    print(f"banking77 linear probe on hashing embeddings: accuracy {accuracy:.3f}")
    assert accuracy > 0.8, accuracy  # measured 0.87; MiniLM gives 0.93


def test_banking77_minilm_through_the_cli(tmp_path: Path) -> None:
    source = DATASETS / "banking77.test.parquet"
    out = tmp_path / "minilm"
    done = run_process("embed", source, out, "--embedder", "minilm", "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    ids, vectors = load_embeddings(out)
    labels = labels_by_id(source)
    y = [labels[i] for i in ids]
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(vectors[::2], y[::2])
    accuracy = knn.score(vectors[1::2], y[1::2])
    assert accuracy > 0.75, accuracy
    rerun = run_process("embed", source, out, "--embedder", "minilm", "--device", "cpu", "--json")
    assert json.loads(rerun.stdout)["shards_skipped"] == 1


def test_t0_instructions_with_a_prompt_completion_template(tmp_path: Path) -> None:
    source = DATASETS / "t0_instructions.all.parquet"
    args = ["embed", source, None, "-e", "hashing", "--template", "{prompt}\\n{completion}", "-q"]
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        args[2] = out
        done = run_process(*args)
        assert done.returncode == 0, done.stderr
    assert shard_bytes(first) == shard_bytes(second)
    manifest = json.loads((first / "_manifest.json").read_text())
    assert manifest["rows"] == 55185
    assert manifest["params"]["template"] == "{prompt}\n{completion}"


def test_banking77_clusters_follow_the_intents(tmp_path: Path) -> None:
    from sklearn.metrics import adjusted_mutual_info_score

    source = DATASETS / "banking77.train.parquet"
    assert run_process("embed", source, tmp_path / "embed", "-e", "hashing", "-q").returncode == 0
    done = run_process("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", "77", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["k"] == 77 and summary["rows"] == 10003 and summary["skew"]["empty"] == 0
    parts = sorted(str(p) for p in (tmp_path / "cluster").glob("part-*.parquet"))
    clusters = pq.read_table(parts)
    labels = labels_by_id(source)
    truth = [labels[i] for i in clusters.column("id").to_pylist()]
    score = adjusted_mutual_info_score(truth, clusters.column("cluster").to_pylist())
    print(f"banking77 hashing k=77: adjusted mutual information with the intents {score:.3f}")
    assert score > 0.45, score  # measured 0.53; random clusters give 0
    sizes = (
        pq.read_table(tmp_path / "cluster" / "__artifacts__/clusters.parquet")
        .column("size")
        .to_pylist()
    )
    assert sum(sizes) == 10003


def test_banking77_pipeline_selects_through_the_cli(tmp_path: Path) -> None:
    source = DATASETS / "banking77.train.parquet"
    steps = [
        ("embed", source, tmp_path / "embed", "-e", "hashing"),
        ("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", "200"),
        ("sample", tmp_path / "cluster", tmp_path / "sel", "-s", "kmeans-closest", "-b", "2%"),
    ]
    for step in steps:
        done = run_process(*step, "-q")
        assert done.returncode == 0, done.stderr
    rows = pq.read_table(sorted(str(p) for p in (tmp_path / "sel").glob("part-*.parquet")))
    assert rows.num_rows == 200 and rows.column_names == ["id", "text", "label"]
    report = json.loads((tmp_path / "sel" / "_selection.json").read_text())
    assert report["cluster_coverage"] == 1.0 and len(report["counts_per_cluster"]) == 200
    assert report["vendi_selected"]["q1"] > 1 and report["vendi_corpus_rows"] == 10003
    labels = labels_by_id(source)
    assert all(
        labels[i] == y
        for i, y in zip(
            rows.column("id").to_pylist(), rows.column("label").to_pylist(), strict=True
        )
    )
