"""The vectors of chosen rows, read back from the embed folder by position."""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

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


def embeddings_of(embed_folder: Path, wanted: list[pa.Table], dim: int) -> list[np.ndarray]:
    """The vectors of each table of rows (id, shard, row), in its order, from one pass over
    the embed folder (its parts read side by side)."""
    every = pa.concat_tables([w.select(["id", "shard", "row"]) for w in wanted])
    order = file_order(every)
    vectors = np.zeros((len(order), dim), dtype=np.float32)
    for lo, hi, block in vector_blocks(embed_folder, every, order, dim, read_ahead=True):
        vectors[order[lo:hi]] = block
    bounds = np.cumsum([0] + [w.num_rows for w in wanted])
    return [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def file_order(rows: pa.Table) -> np.ndarray:
    """The rows (id, shard, row) sorted as the embed folder holds them: by shard, then row."""
    return np.lexsort((rows.column("row").to_numpy(), rows.column("shard").to_numpy()))


def vector_blocks(
    embed_folder: Path, rows: pa.Table, order: np.ndarray, dim: int, read_ahead: bool
) -> Iterator[tuple[int, int, np.ndarray]]:
    """The vectors of ``rows`` (id, shard, row) in ``file_order``, a read batch at a time:
    (lo, hi, the vectors of rows order[lo:hi]), taken by position (input shard i is embed
    shard i, row for row) and checked by id. ``read_ahead``: parts read side by side (each
    part's picked rows held at once), else one read batch held at a time."""
    shard = rows.column("shard").to_numpy()[order]
    row = rows.column("row").to_numpy()[order]
    ids = rows.column("id").combine_chunks().take(pa.array(order))
    parts = open_input(embed_folder).shards
    bounds = np.searchsorted(shard, np.arange(len(parts) + 1))  # part i: bounds[i]..[i + 1]
    spans = zip(parts, bounds[:-1], bounds[1:], strict=True)
    jobs = [(part, int(lo), int(hi)) for part, lo, hi in spans if hi > lo]

    def pick(job: tuple[InputShard, int, int]) -> Iterator[tuple[int, int, pa.RecordBatch]]:
        part, lo, hi = job
        return rows_at(part.iter_batches(["id", "embedding"], READ_ROWS), row[lo:hi])

    picks = ordered_map(lambda job: list(pick(job)), jobs) if read_ahead else map(pick, jobs)
    found = 0
    for (part, lo, _), picked_rows in zip(jobs, picks, strict=True):
        for first, last, picked in picked_rows:
            if not picked.column("id").equals(ids.slice(lo + first, last - first)):
                raise DataError(f"{part.describe()}: its rows no longer match the "
                                "selection's input (rerun the stages after it)")  # fmt: skip
            yield lo + first, lo + last, vectors_of(picked, dim)
            found += last - first
    if found != len(order):
        raise DataError(f"{embed_folder}: {len(order) - found:,} rows of the selection's "
                        "input are not in the embed folder")  # fmt: skip


class SpilledVectors:
    """Vectors written to a temporary file in the embed folder's order and read back a
    group of rows at a time: the file is mapped read-only and its pages are let go after
    every read, so resident memory holds one group, not the file (a mapping written to
    holds every page it touched)."""

    def __init__(self, folder: str | Path, embed_folder: Path, rows: pa.Table, dim: int) -> None:
        self.dim = dim
        path = Path(folder) / "vectors.f32"
        with path.open("wb") as sink:
            self.place = spill_vectors(embed_folder, rows, dim, sink)
        self._file = path.open("rb")
        size = path.stat().st_size
        self._map = mmap.mmap(self._file.fileno(), size, access=mmap.ACCESS_READ) if size else None

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of ``rows`` (positions in the table given), as a new array."""
        if self._map is None:
            return np.zeros((len(rows), self.dim), dtype=np.float32)
        every = np.frombuffer(self._map, dtype=np.float32).reshape(-1, self.dim)
        picked = every[self.place[rows]]  # a copy: fancy indexing
        del every
        self._map.madvise(mmap.MADV_DONTNEED)
        return picked

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        self._file.close()


def spill_vectors(embed_folder: Path, rows: pa.Table, dim: int, sink: BinaryIO) -> np.ndarray:
    """Writes the vectors of ``rows`` (id, shard, row) to ``sink`` as float32 in the embed
    folder's order, one read batch held at a time; returns each row's place in the file."""
    order = file_order(rows)
    for _, _, block in vector_blocks(embed_folder, rows, order, dim, read_ahead=False):
        sink.write(np.ascontiguousarray(block, dtype=np.float32).data)
    place = np.empty(len(order), dtype=np.int64)
    place[order] = np.arange(len(order))
    return place


def vectors_of(batch: pa.RecordBatch, dim: int) -> np.ndarray:
    return batch.column("embedding").flatten().to_numpy().reshape(-1, dim)
