"""Vectors copied from their Parquet pages (io/vector_pages.py) are pyarrow's floats, the
reader declines every layout it does not prove plain, and the cluster stage writes the same
bytes whichever way it reads."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shard_bytes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataselect.clustering.stage import ClusterConfig, cluster
from dataselect.embedding.stage import EmbedConfig, embed
from dataselect.errors import DataError
from dataselect.io import vector_pages
from dataselect.io.format import parquet_options
from dataselect.io.vector_pages import PlainVectors

TMP = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def vector_table(vectors: np.ndarray, kind: pa.DataType | None = None) -> pa.Table:
    column = pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), vectors.shape[1])
    if kind is not None:
        column = column.cast(kind)
    return pa.table({"id": pa.array(np.arange(len(vectors))), "embedding": column})


def write(path: Path, table: pa.Table, **options: object) -> Path:
    pq.write_table(table, path, **{**parquet_options(table.schema), **options})
    return path


def decoded(path: Path, row_groups: list[int] | None = None) -> np.ndarray:
    reader = pq.ParquetFile(path)
    groups = range(reader.metadata.num_row_groups) if row_groups is None else row_groups
    table = reader.read_row_groups(list(groups), columns=["embedding"])
    dim = table.schema.field("embedding").type.list_size
    return table.column(0).combine_chunks().flatten().to_numpy().reshape(-1, dim)


@TMP
@given(
    rows=st.integers(1, 400),
    dim=st.integers(1, 40),
    group_rows=st.integers(1, 500),
    page_bytes=st.sampled_from([64, 1000, 1 << 20]),  # small pages: rows straddle pages
    version=st.sampled_from(["1.0", "2.0"]),
    data=st.data(),
)
def test_rows_are_pyarrows_floats(
    tmp_path: Path, rows: int, dim: int, group_rows: int,
    page_bytes: int, version: str, data: st.DataObject,
) -> None:  # fmt: skip
    vectors = np.random.default_rng(rows * dim).standard_normal((rows, dim)).astype(np.float32)
    path = write(tmp_path / f"v{rows}-{dim}-{group_rows}-{page_bytes}-{version}.parquet",
                 vector_table(vectors), row_group_size=group_rows, data_page_size=page_bytes,
                 data_page_version=version)  # fmt: skip
    groups = pq.ParquetFile(path).metadata.num_row_groups
    chosen = data.draw(st.none() | st.lists(st.integers(0, groups - 1), min_size=1, unique=True)
                       .map(sorted))  # fmt: skip
    expected = decoded(path, chosen)
    with PlainVectors(path, "embedding", dim, chosen) as plain:
        assert plain.rows == len(expected)
        assert np.array_equal(plain.read(0, plain.rows), expected)
        start = data.draw(st.integers(0, plain.rows))
        stop = data.draw(st.integers(start, plain.rows))
        part = plain.read(start, stop)
        assert part.shape == (stop - start, dim) and part.dtype == np.float32
        assert np.array_equal(part, expected[start:stop])
        with pytest.raises(IndexError):
            plain.read(0, plain.rows + 1)


def test_layouts_not_proven_plain_are_declined(tmp_path: Path) -> None:
    """Each of these is read by pyarrow instead (None), however it was written."""
    vectors = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    table = vector_table(vectors)
    cases = {
        "zstd": write(tmp_path / "zstd.parquet", table, compression="zstd"),
        "dictionary": write(
            tmp_path / "dict.parquet", vector_table(np.round(vectors)), use_dictionary=True
        ),  # fmt: skip
        "float64": write(
            tmp_path / "f64.parquet", vector_table(vectors, pa.list_(pa.float64(), 8))
        ),  # fmt: skip
        "variable list": write(
            tmp_path / "list.parquet", vector_table(vectors, pa.list_(pa.float32()))
        ),  # fmt: skip
    }
    null_row = pa.FixedSizeListArray.from_arrays(
        pa.array(vectors.reshape(-1)), 8, mask=pa.array([i == 7 for i in range(50)])
    )
    cases["a null row"] = write(tmp_path / "nullrow.parquet", pa.table({"embedding": null_row}))
    values = pa.array(vectors.reshape(-1), mask=np.arange(400) == 13)  # one null float
    cases["a null float"] = write(
        tmp_path / "nullfloat.parquet",
        pa.table({"embedding": pa.FixedSizeListArray.from_arrays(values, 8)}),
    )
    for name, path in cases.items():
        assert PlainVectors.open(path, "embedding", 8) is None, name
    plain = write(tmp_path / "plain.parquet", table)
    assert PlainVectors.open(plain, "embedding", 7) is None  # another dimension
    assert PlainVectors.open(plain, "id", 8) is None  # not a vector column
    assert PlainVectors.open(plain, "nope", 8) is None
    reader = PlainVectors.open(plain, "embedding", 8)
    assert reader is not None
    reader.close()


def test_a_file_cut_short_while_open_is_a_data_error(tmp_path: Path) -> None:
    """The values are read from the file when asked for: a file truncated since it was
    opened is one DataError naming it, never rows of zeros or of stale bytes."""
    vectors = np.random.default_rng(2).standard_normal((300, 16)).astype(np.float32)
    path = write(tmp_path / "cut.parquet", vector_table(vectors), data_page_size=1000)
    with PlainVectors(path, "embedding", 16) as plain:
        assert np.array_equal(plain.read(0, 300), vectors)
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size // 2)
        assert np.array_equal(plain.read(0, 10), vectors[:10])  # before the cut: read
        with pytest.raises(DataError, match="cut.parquet: the file ends before its vectors"):
            plain.read(0, 300)
    with pytest.raises(ValueError, match="closed"):
        plain.read(0, 1)


def damage_base() -> bytes:
    """A small file of many pages and row groups, as bytes."""
    vectors = np.random.default_rng(1).standard_normal((40, 6)).astype(np.float32)
    table = vector_table(vectors)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table.schema), data_page_size=200,
                   row_group_size=16)  # fmt: skip
    return sink.getvalue().to_pybytes()


DAMAGE_BASE = damage_base()


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, 10**6), value=st.integers(0, 255))
@example(position=176884, value=65)  # footer damage pyarrow answers with ArrowNotImplementedError
def test_a_damaged_file_never_hangs_or_crashes(position: int, value: int) -> None:
    """Any byte changed anywhere: declined, or read (the damage lies in the floats, which the
    stage's checksum check refuses), or pyarrow's error for damaged file metadata (OSError
    or an ArrowException, as when pyarrow reads the shard: the stage names it). Never a
    long loop, a crash or another exception."""
    data = bytearray(DAMAGE_BASE)
    data[position % len(data)] = value
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.parquet"
        path.write_bytes(bytes(data))
        try:
            reader = PlainVectors.open(path, "embedding", 6)
        except (OSError, pa.ArrowException):
            with pytest.raises((OSError, pa.ArrowException)):
                pq.read_metadata(path)
            return
        if reader is not None:
            with reader:
                assert reader.read(0, reader.rows).shape == (reader.rows, 6)


def test_the_cluster_stage_writes_the_same_bytes_either_way(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(3)
    raw = tmp_path / "raw"
    raw.mkdir()
    for shard in range(3):
        vectors = rng.standard_normal((700, 24)).astype(np.float32)
        write(raw / f"part-{shard}.parquet", vector_table(vectors), row_group_size=150)
    embedded = tmp_path / "embedded"
    embed(raw, embedded, EmbedConfig(vector_column="embedding", id_column="id"), quiet=True)
    config = ClusterConfig(k=12, niter=5, max_points_per_centroid=64)  # a sample of 768 rows

    reads: list[int] = []
    original = PlainVectors.read
    monkeypatch.setattr(PlainVectors, "read", lambda self, a, b: reads.append(b - a)
                        or original(self, a, b))  # fmt: skip
    cluster(embedded, tmp_path / "pages", config, quiet=True)
    assert sum(reads) > 2100  # the fit sample's pass and the assignment's read pages

    monkeypatch.setattr(vector_pages.PlainVectors, "open", classmethod(lambda *a: None))
    cluster(embedded, tmp_path / "pyarrow", config, quiet=True)
    assert shard_bytes(tmp_path / "pages") == shard_bytes(tmp_path / "pyarrow")
    for name in ("centroids.npy", "clusters.parquet"):
        pages = (tmp_path / "pages" / "__artifacts__" / name).read_bytes()
        assert pages == (tmp_path / "pyarrow" / "__artifacts__" / name).read_bytes()
