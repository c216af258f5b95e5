"""Precomputed vectors (--vector-column): validate and L2-normalise them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.errors import DataError
from dataselect.io.sources import InputDataset, InputShard


def check_vector_column(dataset: InputDataset, column: str) -> int | None:
    """Check the column's type; return its dimension when the type fixes it."""
    dataset.require_columns([column], what="vector column")
    kind = dataset.schema.field(column).type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ) or not (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type)):
        raise DataError(f"{dataset.path}: column '{column}' is {kind}, not a list of numbers")
    return kind.list_size if pa.types.is_fixed_size_list(kind) else None


def first_vector_dim(dataset: InputDataset, column: str) -> int:
    """The length of the first vector in the input (for list columns of unknown size)."""
    for shard in dataset.shards:
        for batch in shard.iter_batches([column], batch_rows=16):
            values = batch.column(column).drop_null()
            if len(values):
                return len(values[0])
    raise DataError(f"{dataset.path}: column '{column}' holds no vectors")


def normalised_vectors(
    values: pa.Array,
    dim: int,
    shard: InputShard,
    offset: int,
    column: str,
    positions: np.ndarray | None = None,
) -> np.ndarray:
    """float32 unit vectors from a list column; errors name the row at fault.

    ``positions`` maps each value to its row in the batch when only some rows were taken.
    """

    def where(i: int) -> str:
        row = int(positions[i]) if positions is not None else i
        return f"{shard.path}: column '{column}' at row {shard.first_row + offset + row}"

    if values.null_count:
        raise DataError(f"{where(_first(pc.is_null(values)))}: null vector")
    lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != dim)
    if len(bad):
        raise DataError(
            f"{where(int(bad[0]))}: vector of dimension {lengths[bad[0]]}, expected {dim}"
        )
    flat = pc.list_flatten(values)
    if flat.null_count:
        row = int(np.searchsorted(np.cumsum(lengths), _first(pc.is_null(flat)), side="right"))
        raise DataError(f"{where(row)}: null inside a vector")
    matrix = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    matrix = matrix.reshape(len(values), dim)
    with np.errstate(over="ignore", under="ignore"):  # both are found and redone below
        squares = rowwise_dot(matrix, matrix)
    if not np.isfinite(squares).all():  # NaN or inf inside, or float32 squares overflowed
        finite = np.isfinite(matrix).all(axis=1)
        if not finite.all():
            raise DataError(f"{where(int(np.flatnonzero(~finite)[0]))}: NaN or infinite value")
    # rows whose float32 squares overflowed or underflowed (values near 1e±19 and beyond):
    # their norms in float64, which holds them
    wide = ~np.isfinite(squares) | (squares < np.finfo(np.float32).tiny)
    if wide.any():
        rows = matrix[wide].astype(np.float64)
        squares[wide] = rowwise_dot(rows, rows)
    norms = np.sqrt(squares)
    if (norms == 0).any():
        raise DataError(f"{where(int(np.flatnonzero(norms == 0)[0]))}: zero vector")
    f32 = np.finfo(np.float32)
    outside = (norms > f32.max) | (norms < f32.tiny)  # not a float32: divide in float64
    unit = matrix / np.where(outside, 1.0, norms).astype(np.float32)[:, None]
    if outside.any():
        unit[outside] = (matrix[outside].astype(np.float64) / norms[outside, None]).astype(
            np.float32
        )
    return unit


ROWWISE_CHUNK = 256


def rowwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row dot products, each contiguous row reduced on its own (float64 result).

    einsum and BLAS choose SIMD paths by memory alignment and batch shape, so the same row
    can get other last bits in another batch. Here the float32 products of each row are
    reduced by numpy's pairwise sum (float64 products when given float64), whose order
    depends only on the row length: outputs stay byte-identical however rows are sharded
    (tested).
    """
    dtype = np.float64 if a.dtype == np.float64 else np.float32
    a_ = np.ascontiguousarray(a, dtype=dtype)
    b_ = a_ if b is a else np.ascontiguousarray(b, dtype=dtype)
    out = np.empty(len(a_), dtype=np.float64)
    for start in range(0, len(a_), ROWWISE_CHUNK):  # products of a chunk stay in cache
        rows = slice(start, start + ROWWISE_CHUNK)
        out[rows] = (a_[rows] * b_[rows]).sum(axis=1)
    return out


def _first(mask: pa.Array) -> int:
    return int(pc.index(mask, True).as_py())
