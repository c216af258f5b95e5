"""The vectors of chosen rows, read back from the embed folder by position."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataselect.errors import DataError
from dataselect.io.readahead import ordered_map
from dataselect.io.sources import InputShard, open_input

READ_ROWS = 1 << 14  # the read batch of the write-out (source rows) and the vector passes


def rows_at(
    batches: Iterable[pa.RecordBatch], rows: np.ndarray
) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """The rows at the sorted positions ``rows`` of a shard read batch by batch: for each
    batch holding some, (first, last, those rows) with ``rows[first:last]`` their positions."""
    offset = 0
    for batch in batches:
        first, last = (int(i) for i in np.searchsorted(rows, [offset, offset + batch.num_rows]))
        if last > first:
            yield first, last, batch.take(pa.array(rows[first:last] - offset))
        offset += batch.num_rows


def embeddings_of(
    embed_folder: Path, wanted: list[pa.Table], dim: int, into: np.ndarray | None = None
) -> list[np.ndarray]:
    """The vectors of each table of rows (id, shard, row), in its order, from one pass over
    the embed folder, taken by position (input shard i is embed shard i, row for row) and
    checked by id; written into ``into`` (e.g. a memory-mapped file) when given."""
    every = pa.concat_tables([w.select(["id", "shard", "row"]) for w in wanted])
    shard, row = every.column("shard").to_numpy(), every.column("row").to_numpy()
    order = np.lexsort((row, shard))
    shard, row = shard[order], row[order]
    ids = every.column("id").combine_chunks().take(pa.array(order))
    vectors = np.zeros((len(order), dim), dtype=np.float32) if into is None else into
    found = 0
    parts = open_input(embed_folder).shards
    bounds = np.searchsorted(shard, np.arange(len(parts) + 1))  # part i: bounds[i]..[i + 1]
    spans = zip(parts, bounds[:-1], bounds[1:], strict=True)
    jobs = [(part, int(lo), int(hi)) for part, lo, hi in spans if hi > lo]

    def pick(job: tuple[InputShard, int, int]) -> list[tuple[int, int, pa.RecordBatch]]:
        """The job's rows of one embed part: read side by side with the other parts."""
        part, lo, hi = job
        return list(rows_at(part.iter_batches(["id", "embedding"], READ_ROWS), row[lo:hi]))

    for (part, lo, _), picks in zip(jobs, ordered_map(pick, jobs), strict=True):
        for first, last, picked in picks:
            if not picked.column("id").equals(ids.slice(lo + first, last - first)):
                raise DataError(f"{part.describe()}: its rows no longer match the "
                                "selection's input (rerun the stages after it)")  # fmt: skip
            vectors[order[lo + first : lo + last]] = vectors_of(picked, dim)
            found += last - first
    if found != len(order):
        raise DataError(f"{embed_folder}: {len(order) - found:,} selected or sampled rows are "
                        "not in the embed folder")  # fmt: skip
    bounds = np.cumsum([0] + [w.num_rows for w in wanted])
    return [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def vectors_of(batch: pa.RecordBatch, dim: int) -> np.ndarray:
    return batch.column("embedding").flatten().to_numpy().reshape(-1, dim)
