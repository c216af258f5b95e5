"""How stage shards are encoded in Parquet.

Vector columns (lists of floats) are stored uncompressed, without dictionary pages or
statistics: unit-norm float embeddings shrink by under 10% under zstd, yet every later read
of a compressed column is slower, and the cluster stage reads its input twice
(`python scripts/bench/parquet_codecs.py`). Every other column is zstd-compressed.

A column of distinct values (ids, hashes, distances) is marked ``UNIQUE`` in its stage's
schema and written without a dictionary: the writer would fill one for each column chunk
until it outgrew its page and fell back to plain: more than half the cluster stage's write
time (``scripts/bench/assign_parts.py``).

Parquet addresses per-column options by leaf path ("embedding.list.element"); a top-level
name of a nested column is silently ignored, so the options are keyed by leaf paths here.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_CODEC = "zstd"
UNIQUE = {b"dataselect.values": b"unique"}  # field metadata: a column of distinct values


def is_vector_type(kind: pa.DataType) -> bool:
    """A list (fixed-size or not) of floating-point values."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return pa.types.is_floating(kind.value_type)
    return False


@lru_cache(maxsize=64)
def leaf_paths(schema: pa.Schema) -> list[tuple[str, str]]:
    """(top-level field name, Parquet leaf path) of every leaf column, in file order."""
    sink = pa.BufferOutputStream()
    pq.ParquetWriter(sink, schema).close()
    parquet_schema = pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema
    names = sorted(schema.names, key=len, reverse=True)  # longest first: names may hold dots
    out = []
    for i in range(len(parquet_schema)):
        path = parquet_schema.column(i).path
        top = next(n for n in names if path == n or path.startswith(n + "."))
        out.append((top, path))
    return out


def is_unique(field: pa.Field) -> bool:
    return bool(field.metadata) and UNIQUE.items() <= field.metadata.items()


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Keyword arguments for pq.ParquetWriter / pq.write_table for a table of this schema."""
    vectors = {field.name for field in schema if is_vector_type(field.type)}
    unique = {field.name for field in schema if is_unique(field)}
    if not vectors and not unique:
        return {"compression": DEFAULT_CODEC, "write_statistics": True}
    leaves = leaf_paths(schema)
    others = [path for top, path in leaves if top not in vectors]
    return {
        "compression": {path: "none" if top in vectors else DEFAULT_CODEC for top, path in leaves},
        "use_dictionary": [path for top, path in leaves if top not in vectors | unique],
        "write_statistics": others,
    }
