"""Helpers shared by the benchmark scripts (run as `python scripts/bench/NAME.py`)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def embeddings_by_id(folder: Path) -> dict:
    """id -> embedding of an embed folder's parts."""
    table = pq.read_table(sorted(str(p) for p in folder.glob("part-*.parquet")))
    x = table.column("embedding").combine_chunks().flatten().to_numpy()
    return dict(zip(table.column("id").to_pylist(), x.reshape(table.num_rows, -1), strict=True))
