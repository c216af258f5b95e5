"""The cluster stage: keyed fit sample, FAISS k-means, assignment, artifacts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_process, shard_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.clustering.kmeans import Assigner, keyed_sample
from dataselect.clustering.stage import ClusterConfig, cluster
from dataselect.engine.base import CRASH_AFTER_ENV
from dataselect.errors import DataError, UsageError
from dataselect.io.sources import open_input


def blobs(n: int, centers: int, dim: int = 16, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, dim))
    points = means[np.arange(n) % centers] + spread * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def write_vectors(
    folder: Path, vectors: np.ndarray, shards: int, order_seed: int | None = None
) -> Path:
    """Vectors with ids v000000.. in `shards` files; optionally rows shuffled first."""
    folder.mkdir(parents=True)
    ids = np.array([f"v{i:06d}" for i in range(len(vectors))])
    order = np.arange(len(vectors))
    if order_seed is not None:
        order = np.random.default_rng(order_seed).permutation(len(vectors))
    for s, part in enumerate(np.array_split(order, shards)):
        table = pa.table(
            {
                "id": ids[part],
                "embedding": pa.FixedSizeListArray.from_arrays(
                    vectors[part].reshape(-1), vectors.shape[1]
                ),
            }
        )
        pq.write_table(table, folder / f"part-{s:05d}.parquet")
    return folder


def read_parts(folder: Path) -> pa.Table:
    return pq.read_table(sorted(str(p) for p in folder.glob("part-*.parquet")))


def by_id(folder: Path) -> dict[str, tuple[int, float]]:
    table = read_parts(folder)
    return {
        i: (c, d)
        for i, c, d in zip(
            table.column("id").to_pylist(),
            table.column("cluster").to_pylist(),
            table.column("distance").to_pylist(),
            strict=True,
        )
    }


def test_assignment_equals_brute_force_nearest_centroid() -> None:
    rng = np.random.default_rng(1)
    x = blobs(500, 7, seed=2)
    centroids = rng.standard_normal((7, 16)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    labels, distance = Assigner(centroids, "cosine").assign(x)
    sims = x @ centroids.T
    np.testing.assert_array_equal(labels, sims.argmax(axis=1))
    np.testing.assert_allclose(distance, 1 - sims.max(axis=1), atol=1e-5)
    labels, distance = Assigner(centroids, "l2").assign(x)
    squared = ((x[:, None, :] - centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, squared.argmin(axis=1))
    np.testing.assert_allclose(distance, squared.min(axis=1), atol=1e-5)


def test_stage_outputs_and_artifacts(tmp_path: Path) -> None:
    x = blobs(600, 6)
    source = write_vectors(tmp_path / "vec", x, shards=3)
    result = cluster(source, tmp_path / "out", ClusterConfig(k=6), quiet=True)
    out = tmp_path / "out"
    centroids = np.load(out / "__artifacts__/centroids.npy")
    assert centroids.shape == (6, 16)
    table = read_parts(out)
    assert table.column_names == ["id", "cluster", "distance", "vector_hash"]
    assert table.schema.field("cluster").type == pa.int32()
    # every row is at its nearest centroid, and the blobs are recovered
    labels = np.array(table.column("cluster").to_pylist())
    np.testing.assert_array_equal(labels, (x @ centroids.T).argmax(axis=1))
    truth = np.arange(600) % 6
    assert all(len(set(labels[truth == c])) == 1 for c in range(6))
    stats = pq.read_table(out / "__artifacts__/clusters.parquet")
    assert stats.column("size").to_pylist() == np.bincount(labels, minlength=6).tolist()
    assert result.manifest.outputs["skew"]["empty"] == 0
    assert result.manifest.outputs["sample_rows"] == 600


def test_fit_sample_does_not_depend_on_sharding_or_order(tmp_path: Path) -> None:
    x = blobs(3000, 5, seed=4)
    a = open_input(write_vectors(tmp_path / "a", x, shards=1))
    b = open_input(write_vectors(tmp_path / "b", x, shards=7, order_seed=3))
    sample_a = keyed_sample(a, "embedding", 16, "id", 400, seed=0)
    sample_b = keyed_sample(b, "embedding", 16, "id", 400, seed=0)
    np.testing.assert_array_equal(sample_a, sample_b)
    assert not np.array_equal(sample_a, keyed_sample(a, "embedding", 16, "id", 400, seed=1))


def test_fit_sample_in_key_order_with_and_without_key_collisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample is the rows of the smallest keys, in key order (ties by id), whether each
    row is written straight to its place (unique keys) or gathered after (a collision)."""
    from dataselect.clustering import kmeans
    from dataselect.keyed import row_keys

    x = blobs(1000, 5, seed=2)
    data = open_input(write_vectors(tmp_path / "a", x, shards=3, order_seed=1))
    ids = pa.concat_arrays([pq.read_table(s.path).column("id").combine_chunks()
                            for s in data.shards])  # fmt: skip
    vectors = {i: v for s in data.shards for i, v in zip(
        pq.read_table(s.path).column("id").to_pylist(),
        np.stack(pq.read_table(s.path).column("embedding").to_numpy(zero_copy_only=False)),
        strict=True)}  # fmt: skip
    for coarse in (False, True):
        if coarse:  # keys of 4 bits: many rows share one
            monkeypatch.setattr(kmeans, "row_keys", lambda i, s, t: row_keys(i, s, t) >> 60)
        keys = kmeans.row_keys(ids, 0, kmeans.SAMPLE_STREAM)
        order = np.lexsort((ids.to_numpy(zero_copy_only=False), keys))[:300]
        expected = np.stack([vectors[i] for i in ids.take(pa.array(order)).to_pylist()])
        trusted = keyed_sample(data, "embedding", 16, "id", 300, seed=0, trusted=True)
        np.testing.assert_array_equal(trusted, expected)  # as stored
        checked = keyed_sample(data, "embedding", 16, "id", 300, seed=0)  # renormalised
        np.testing.assert_allclose(checked, expected, atol=1e-6)


@settings(max_examples=5, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000))
def test_resharding_gives_the_same_clusters(shards: int, order_seed: int) -> None:
    import tempfile

    x = blobs(800, 4, seed=5, spread=0.3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reference = write_vectors(root / "ref", x, shards=2)
        other = write_vectors(root / "other", x, shards=shards, order_seed=order_seed)
        config = ClusterConfig(k=5, max_points_per_centroid=50)
        cluster(reference, root / "out-ref", config, quiet=True)
        cluster(other, root / "out-other", config, quiet=True)
        np.testing.assert_array_equal(
            np.load(root / "out-ref/__artifacts__/centroids.npy"),
            np.load(root / "out-other/__artifacts__/centroids.npy"),
        )
        assert by_id(root / "out-ref") == by_id(root / "out-other")


def test_existing_centroids_assign_new_data(tmp_path: Path) -> None:
    x = blobs(600, 6)
    cluster(
        write_vectors(tmp_path / "a", x, shards=2), tmp_path / "fit", ClusterConfig(k=6), quiet=True
    )
    fresh = write_vectors(tmp_path / "new", blobs(60, 6, seed=0)[::-1].copy(), shards=1)
    config = ClusterConfig(centroids=str(tmp_path / "fit" / "__artifacts__/centroids.npy"))
    result = cluster(fresh, tmp_path / "assigned", config, quiet=True)
    assert result.manifest.outputs["fitted"] is False
    np.testing.assert_array_equal(
        np.load(tmp_path / "assigned" / "__artifacts__/centroids.npy"),
        np.load(tmp_path / "fit" / "__artifacts__/centroids.npy"),
    )
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((3, 8), dtype=np.float32))
    with pytest.raises(DataError, match="centroids have dimension 8, the vectors have 16"):
        cluster(fresh, tmp_path / "bad", ClusterConfig(centroids=str(wrong)), quiet=True)
    assert not (tmp_path / "bad").exists()


def test_k_auto_finds_the_blobs(tmp_path: Path) -> None:
    source = write_vectors(tmp_path / "v", blobs(1500, 5, spread=0.03), shards=2)
    config = ClusterConfig(k="auto", k_grid=(2, 3, 5, 8, 13))
    result = cluster(source, tmp_path / "out", config, quiet=True)
    assert result.manifest.outputs["k"] == 5
    assert set(result.manifest.outputs["silhouette"]) == {"2", "3", "5", "8", "13"}


def test_k_larger_than_rows_is_a_usage_error(cli, tmp_path: Path) -> None:
    source = write_vectors(tmp_path / "v", blobs(20, 2), shards=1)
    result = cli("cluster", source, tmp_path / "out", "--k", "50")
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == "dataselect: error: --k 50 is larger than the number of rows (20)"
    )
    assert not (tmp_path / "out").exists()
    assert cli("cluster", source, tmp_path / "out", "--k", "many").exit_code == 2
    with pytest.raises(UsageError):
        ClusterConfig(metric="manhattan").check()


def test_crash_then_rerun_gives_identical_folder(tmp_path: Path) -> None:
    source = write_vectors(tmp_path / "v", blobs(900, 3), shards=3)
    args = ["cluster", source, None, "--k", "3"]
    reference, out = tmp_path / "ref", tmp_path / "out"
    args[2] = reference
    assert run_process(*args).returncode == 0
    args[2] = out
    assert run_process(*args, env={CRASH_AFTER_ENV: "1"}).returncode != 0
    assert json.loads((out / "_manifest.json").read_text())["complete"] is False
    assert (out / "__artifacts__/centroids.npy").exists() and not (
        out / "__artifacts__/clusters.parquet"
    ).exists()
    assert run_process(*args).returncode == 0
    assert shard_bytes(out) == shard_bytes(reference)
    for name in ("__artifacts__/centroids.npy", "__artifacts__/clusters.parquet"):
        assert (out / name).read_bytes() == (reference / name).read_bytes()


def test_rowwise_dot_does_not_depend_on_the_batch() -> None:
    from dataselect.embedding.vectors import rowwise_dot

    x = np.random.default_rng(0).standard_normal((4000, 384)).astype(np.float32)
    whole = rowwise_dot(x, x)
    for start, stop in ((1, 700), (333, 3999), (1234, 1235)):
        odd = np.empty((stop - start + 1, 384), dtype=np.float32)[1:]  # another alignment
        odd[:] = x[start:stop]
        np.testing.assert_array_equal(rowwise_dot(odd, odd), whole[start:stop])
    np.testing.assert_allclose(whole, np.einsum("ij,ij->i", x, x), rtol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_assigned_distances_do_not_depend_on_the_batch(metric: str) -> None:
    """The GEMM's last bits depend on a row's batch; the recomputed distance must not."""
    rng = np.random.default_rng(4)
    x = blobs(3000, 40, dim=384, seed=5, spread=0.5)
    centroids = x[rng.choice(len(x), 40, replace=False)] + 0.01
    assigner = Assigner(centroids.astype(np.float32), metric)
    labels, whole = assigner.assign(x)
    for start, stop in ((1, 700), (333, 2999), (1234, 1235)):
        odd = np.empty((stop - start + 1, 384), dtype=np.float32)[1:]  # another alignment
        odd[:] = x[start:stop]
        part_labels, part = assigner.assign(odd)
        np.testing.assert_array_equal(part_labels, labels[start:stop])
        np.testing.assert_array_equal(part, whole[start:stop])


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(0, 60), min_size=1, max_size=12), piece=st.integers(1, 25))
def test_the_assignment_stream_is_each_batch_assigned_in_order(
    sizes: list[int], piece: int
) -> None:
    """Batches of any size (none too), searched in pieces of any size on the worker
    threads, come back in order, each as ``assign`` gives it whole, with the per-row
    function's values (the stage's vector hashes) of the same rows."""
    from dataselect.clustering import kmeans

    x = blobs(sum(sizes), 6, dim=16, seed=len(sizes), spread=0.5).astype(np.float32)
    assigner = Assigner(blobs(6, 6, dim=16, seed=9, spread=0.5).astype(np.float32), "cosine")
    bounds = np.cumsum([0, *sizes])
    batches = [
        (pa.array(np.arange(a, b)), x[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kmeans, "SEARCH_PIECE", piece)
        out = list(assigner.assign_stream(iter(batches), per_row=lambda v: v[:, 0].copy()))
    assert len(out) == len(batches)
    for (ids, vectors), (got_ids, labels, distance, first) in zip(batches, out, strict=True):
        assert got_ids.equals(ids)
        want_labels, want_distance = assigner.assign(vectors)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(distance, want_distance)
        np.testing.assert_array_equal(first, vectors[:, 0])


def test_only_the_cluster_column_is_dictionary_encoded(tmp_path: Path) -> None:
    """ids, distances and hashes are distinct values (``UNIQUE`` in the stage's schema): no
    dictionary for them, which the writer filled per column chunk only to fall back to
    plain; cluster ids repeat and keep theirs. Standard readers read the same rows."""
    source = write_vectors(tmp_path / "v", blobs(3000, 8), shards=1)
    cluster(source, tmp_path / "out", ClusterConfig(k=8, niter=3), quiet=True)
    (shard,) = sorted((tmp_path / "out").glob("part-*.parquet"))
    metadata = pq.ParquetFile(shard).metadata
    encodings = {
        metadata.schema.column(i).name: metadata.row_group(0).column(i).encodings
        for i in range(metadata.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["cluster"]
    for name in ("id", "distance", "vector_hash"):
        assert "RLE_DICTIONARY" not in encodings[name], name
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 3000 and table.column("vector_hash").type == pa.uint64()
    assert table.column("id").to_pylist() == pq.read_table(source).column("id").to_pylist()
