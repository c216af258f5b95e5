"""Row identity: every row carries a unique `id` (string or int64) through every stage.

With no id column the id is derived from where the row lives: "<file>:<row>", with <file>
relative to the input root and <row> the 0-based row number in that file (not in the shard,
so re-cutting files into shards keeps ids stable).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from dataselect.errors import DataError
from dataselect.io.sources import InputDataset, InputShard

DEFAULT_ID_COLUMN = "id"


def resolve_id_column(dataset: InputDataset, id_column: str | None) -> str | None:
    """The id column to read, or None when ids are derived. An `id` column is used if present."""
    if id_column is not None:
        dataset.require_columns([id_column], what="id column")
        _check_id_type(dataset, id_column)
        return id_column
    if DEFAULT_ID_COLUMN in dataset.schema.names:
        _check_id_type(dataset, DEFAULT_ID_COLUMN)
        return DEFAULT_ID_COLUMN
    return None


def id_type(dataset: InputDataset, id_column: str | None) -> pa.DataType:
    if id_column is None:
        return pa.string()
    kind = dataset.schema.field(id_column).type
    return pa.int64() if pa.types.is_integer(kind) else pa.string()


def _check_id_type(dataset: InputDataset, column: str) -> None:
    kind = dataset.schema.field(column).type
    ok = (
        pa.types.is_integer(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_null(kind)  # JSONL whose first record has a null id: checked per row
    )
    if not ok:
        raise DataError(
            f"{dataset.path}: id column '{column}' is {kind}; ids must be text or integers"
        )


def batch_ids(
    batch: pa.RecordBatch, shard: InputShard, offset: int, id_column: str | None
) -> pa.Array:
    """The ids of one batch whose first row is row ``offset`` of ``shard``."""
    if id_column is None:
        return derived_ids(shard, range(offset, offset + batch.num_rows))
    ids = batch.column(id_column)
    if ids.null_count:
        row = shard.first_row + offset + _first_null(ids)
        raise DataError(f"{shard.path}: null id in column '{id_column}' at row {row}")
    kind = ids.type
    if pa.types.is_integer(kind):
        if pa.types.is_uint64(kind) and len(ids) and pc.max(ids).as_py() > 2**63 - 1:
            raise DataError(f"{shard.path}: id column '{id_column}' overflows int64")
        return ids.cast(pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return ids.cast(pa.string())
    raise DataError(f"{shard.path}: id column '{id_column}' holds {kind}, not text or integers")


def derived_ids(shard: InputShard, rows: Iterable[int]) -> pa.Array:
    """The derived ids of rows ``rows`` (0-based within ``shard``) of a source without ids."""
    start = shard.first_row
    return pa.array([f"{shard.relpath}:{start + int(row)}" for row in rows], type=pa.string())


def check_unique(ids: pa.Array, shard: InputShard) -> None:
    """Ids must be unique; checked per shard (the sample stage checks across shards)."""
    if len(ids) == 0:
        return
    counts = pc.value_counts(ids)
    repeated = pc.filter(counts, pc.greater(counts.field("counts"), 1))
    if len(repeated):
        first = repeated[0]["values"].as_py()
        raise DataError(
            f"{shard.describe()}: duplicate id {first!r} ({len(repeated)} ids occur more than once)"
        )


def _first_null(array: pa.Array) -> int:
    return int(pc.index(pc.is_null(array), True).as_py())
