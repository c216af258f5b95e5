"""Vectors read straight from their Parquet pages, for the layout stages write them in.

A vector column is stored as ``fixed_size_list<float32>[d]``, uncompressed, PLAIN, without a
dictionary (``io/format.py``). pyarrow decodes such a column by expanding a repetition and
a definition level for every float and rebuilding the list from them, though a fixed-size
list without nulls has d floats per row by definition: with that decode the cluster
stage's assignment ran about 1.4x slower (``scripts/bench/cluster.py``, its row "vectors
decoded by pyarrow"). Here the float bytes of each data page are located from the page
headers and read as they lie, with one ``preadv`` per page straight into the batch's array:
cheaper than copying them out of a mapped file, which pays for mapping every page on first
touch (``scripts/bench/assign_parts.py``).

Only a layout proven plain is read this way; anything else (a codec, a dictionary or other
encoding, nulls, another type) is reported as ``None`` and the caller reads with pyarrow.
Proof, per file: the column's Arrow type is fixed_size_list<float32>[d] with one leaf, its
chunks are uncompressed with no dictionary page, every page is a data page (v1 or v2) with
PLAIN values, and every page holds exactly 4 bytes per level (so no level is a null), for
d x rows values per row group.
"""

from __future__ import annotations

import mmap
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import DataError

# parquet.thrift enums
DATA_PAGE, DATA_PAGE_V2 = 0, 3
PLAIN, RLE = 0, 3
WIDTH = {3: 1, 7: 8}  # Thrift compact types of fixed width: byte, double
MAX_DEPTH = 8  # page headers nest two structs deep (statistics inside a data page header)


class NotPlain(Exception):
    """The column is not stored in the plain layout this reader handles."""


class ThriftCompact:
    """The few Thrift compact-protocol reads a Parquet page header needs."""

    def __init__(self, data: memoryview, position: int) -> None:
        self.data = data
        self.position = position

    def byte(self) -> int:
        value = self.data[self.position]
        self.position += 1
        return value

    def varint(self) -> int:
        result = shift = 0
        while True:
            byte = self.byte()
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return result

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def struct(self, depth: int = 0) -> dict[int, object]:
        """A struct as {field id: value}: integers, booleans and nested structs are read;
        other fields (binary, lists, maps, doubles) are skipped."""
        if depth > MAX_DEPTH:
            raise NotPlain("page header nested too deep")
        fields: dict[int, object] = {}
        last = 0
        while True:
            header = self.byte()
            if header == 0:
                return fields
            kind, delta = header & 0x0F, header >> 4
            last = last + delta if delta else self.zigzag()
            if kind in (1, 2):
                fields[last] = kind == 1
            elif kind in (3, 4, 5, 6):
                fields[last] = self.byte() if kind == 3 else self.zigzag()
            elif kind == 12:
                fields[last] = self.struct(depth + 1)
            else:
                self.skip(kind, depth)

    def skip(self, kind: int, depth: int, element: bool = False) -> None:
        """Step over a value of ``kind`` (``element``: inside a list, set or map, where a
        boolean takes a byte). A damaged header ends in NotPlain or IndexError, never in a
        long loop: a run of fixed-width elements is stepped over at once."""
        if kind in (1, 2):
            self.position += 1 if element else 0
        elif kind in WIDTH:
            self.position += WIDTH[kind]
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 8:
            self.position += self.varint()
        elif kind in (9, 10):
            header = self.byte()
            count, inner = header >> 4, header & 0x0F
            if count == 15:
                count = self.varint()
            if inner in (1, 2) or inner in WIDTH:
                self.position += count * WIDTH.get(inner, 1)
            else:
                for _ in range(count):
                    self.skip(inner, depth + 1, element=True)
        elif kind == 11:
            count = self.varint()
            if count:
                types = self.byte()
                for _ in range(count):
                    self.skip(types >> 4, depth + 1, element=True)
                    self.skip(types & 0x0F, depth + 1, element=True)
        elif kind == 12:
            self.struct(depth + 1)
        else:
            raise NotPlain(f"unknown Thrift type {kind} in a page header")
        if self.position > len(self.data):
            raise NotPlain("a page header runs past the file")


def _leaf_index(reader: pq.ParquetFile, column: str) -> int:
    paths = [reader.schema.column(i).path for i in range(len(reader.schema))]
    leaves = [i for i, path in enumerate(paths) if path.startswith(column + ".")]
    if len(leaves) != 1:
        raise NotPlain(f"column '{column}' has {len(leaves)} leaves")
    return leaves[0]


class PlainVectors:
    """Random access by row to one shard's vectors, read from the file's pages.

    ``row_groups``: the row groups that make the shard (all when None); rows are numbered
    from 0 within them, as the shard's batches are."""

    def __init__(
        self, path: Path, column: str, dim: int, row_groups: Sequence[int] | None = None
    ) -> None:
        self.dim = dim
        self.path = path
        if sys.byteorder != "little":  # the pages hold little-endian floats, read as they lie
            raise NotPlain("a big-endian machine")
        with pq.ParquetFile(path) as reader:
            kind = reader.schema_arrow.field(column).type
            if not (pa.types.is_fixed_size_list(kind) and kind.list_size == dim
                    and kind.value_type == pa.float32()):  # fmt: skip
                raise NotPlain(f"column '{column}' is {kind}")
            leaf = _leaf_index(reader, column)
            levels = (reader.schema.column(leaf).max_repetition_level > 0,
                      reader.schema.column(leaf).max_definition_level > 0)  # fmt: skip
            metadata = reader.metadata
            groups = range(metadata.num_row_groups) if row_groups is None else row_groups
            chunks = [
                (metadata.row_group(g).num_rows, metadata.row_group(g).column(leaf)) for g in groups
            ]
        self._file = open(path, "rb")
        try:
            starts: list[int] = [0]  # first value of each page, counted over the shard
            offsets: list[int] = []  # byte offset of each page's first value in the file
            # the headers are walked in a map of the file (only their pages are touched)
            with (mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
                  memoryview(mapped) as view):  # fmt: skip
                for rows, chunk in chunks:
                    if chunk.compression != "UNCOMPRESSED" or chunk.has_dictionary_page:
                        raise NotPlain(f"column chunk is {chunk.compression}, dictionary "
                                       f"{chunk.has_dictionary_page}")  # fmt: skip
                    values = _pages(view, chunk.data_page_offset, chunk.total_compressed_size,
                                    levels, starts, offsets)  # fmt: skip
                    if values != rows * dim:
                        raise NotPlain(f"a row group holds {values} values for {rows} rows")
        except BaseException:
            self.close()
            raise
        self.rows = starts[-1] // dim
        self._starts = np.array(starts, dtype=np.int64)
        self._offsets = np.array(offsets, dtype=np.int64)

    @classmethod
    def open(
        cls, path: Path, column: str, dim: int, row_groups: Sequence[int] | None = None
    ) -> PlainVectors | None:
        """The reader, or None where the column is not in the plain layout."""
        try:
            return cls(path, column, dim, row_groups)
        except (NotPlain, KeyError, IndexError, ValueError, TypeError):
            return None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` (exclusive) as a new (n, d) float32 array."""
        if self._file.closed:
            raise ValueError("read from a closed PlainVectors")
        if not 0 <= start <= stop <= self.rows:
            raise IndexError(f"rows {start}:{stop} of {self.rows}")
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        first, last = start * self.dim, stop * self.dim
        page = int(np.searchsorted(self._starts, first, side="right")) - 1
        at = first
        with out.reshape(-1).data.cast("B") as target:
            while at < last:
                end = min(last, int(self._starts[page + 1]))
                offset = int(self._offsets[page]) + 4 * (at - int(self._starts[page]))
                self._read_into(target[4 * (at - first) : 4 * (end - first)], offset)
                at = end
                page += 1
        return out

    def _read_into(self, target: memoryview, offset: int) -> None:
        """``len(target)`` bytes of the file from ``offset``; a file cut shorter since it
        was opened is an error, never rows of zeros."""
        done = 0
        while done < len(target):
            count = os.preadv(self._file.fileno(), [target[done:]], offset + done)
            if count == 0:
                raise DataError(f"{self.path}: the file ends before its vectors do (it was "
                                "changed while being read)")  # fmt: skip
            done += count

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> PlainVectors:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pages(view: memoryview, start: int, length: int, levels: tuple[bool, bool],
           starts: list[int], offsets: list[int]) -> int:  # fmt: skip
    """Walk one column chunk's pages, appending each page's value range and byte offset;
    returns the chunk's value count. ``levels``: whether the column has repetition and
    definition levels (a v1 page then holds them, each with a 4-byte length, before its
    values). Raises NotPlain at the first page of another kind."""
    position, end, values = start, start + length, 0
    while position < end:
        reader = ThriftCompact(view, position)
        header = reader.struct()
        body = reader.position
        size = header.get(3)
        if not isinstance(size, int) or size < 0 or body + size > end:
            raise NotPlain("a page header without a size, or past its chunk")
        kind = header.get(1)
        if kind == DATA_PAGE:
            page = header.get(5)
            if not isinstance(page, dict) or page.get(2) != PLAIN:
                raise NotPlain("a v1 data page not PLAIN")
            count = int(page.get(1, -1))
            first = body
            for present, encoding in zip(levels, (page.get(4), page.get(3)), strict=True):
                if not present:
                    continue
                if encoding != RLE:
                    raise NotPlain("levels not RLE")
                first += 4 + int.from_bytes(view[first : first + 4], "little")
        elif kind == DATA_PAGE_V2:
            page = header.get(8)
            if not isinstance(page, dict) or page.get(4) != PLAIN or page.get(2) != 0:
                raise NotPlain("a v2 data page not PLAIN, or with nulls")
            count = int(page.get(1, -1))
            first = body + int(page.get(5, 0)) + int(page.get(6, 0))
        else:
            raise NotPlain(f"a page of type {kind}")
        if body + size - first != 4 * count or count < 0:  # 4 bytes per level: no nulls
            raise NotPlain("a page whose values are not one float per level")
        starts.append(starts[-1] + count)
        offsets.append(first)
        values += count
        position = body + size
    return values
