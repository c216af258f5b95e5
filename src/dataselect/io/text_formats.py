"""The text inputs people have besides Parquet: JSONL (plain or compressed), JSON arrays,
CSV and TSV. Each file is one shard; pyarrow decompresses (gzip, zstd, bz2) and parses CSV
in a streaming way, so memory is bounded by a batch (a JSON array is the exception: it is
loaded whole, as JSON has no way to stream one).

Their row count is not known before they are read: readers report the bytes of the file
read so far (``on_bytes``, compressed bytes for a compressed file), so progress can be
shown against the files' sizes."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from dataselect.errors import DataError

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
REPORT_LINES = 1024  # a JSONL reader reports the bytes read every this many lines

OnBytes = Callable[[int], None]  # told the bytes of a file read since it was last told


def plain_suffix(path: Path) -> str:
    """The suffix that names the format: ``.jsonl`` for ``data.jsonl.gz``."""
    if path.suffix in COMPRESSIONS and len(path.suffixes) > 1:
        return path.suffixes[-2]
    return path.suffix


def text_format(path: Path) -> str | None:
    """ "jsonl" or "csv" for a file this module reads, else None."""
    suffix = plain_suffix(path)
    if suffix in JSON_SUFFIXES:
        return "jsonl"
    if suffix in CSV_DELIMITERS:
        return "csv"
    return None


class _Raw(io.RawIOBase):
    """A pyarrow input stream as a Python raw stream (for line iteration)."""

    def __init__(self, stream: pa.NativeFile) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def open_bytes(path: Path) -> Iterator[tuple[io.BufferedReader, Callable[[], int]]]:
    """``path`` as a binary stream, decompressed when its suffix says so, and a function
    that says how many bytes of the file were read so far."""
    if path.suffix not in COMPRESSIONS:
        with open(path, "rb") as handle:
            yield handle, handle.tell
        return
    with (
        pa.OSFile(str(path)) as raw,
        pa.input_stream(raw, compression=COMPRESSIONS[path.suffix]) as stream,
    ):
        yield io.BufferedReader(_Raw(stream), 1 << 20), raw.tell


class _Counter:
    """Tells ``on_bytes`` the bytes read since it was last told, from a position."""

    def __init__(self, position: Callable[[], int], on_bytes: OnBytes | None) -> None:
        self.position, self.on_bytes, self.told = position, on_bytes, 0

    def report(self) -> None:
        if self.on_bytes is not None:
            now = self.position()
            self.on_bytes(now - self.told)
            self.told = now


def json_records(
    path: Path, first_only: bool = False, on_bytes: OnBytes | None = None
) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSONL file, or (position, record) of a file holding one
    JSON array; errors name the file and line. ``on_bytes`` is told the bytes read as the
    file is read."""
    try:
        with open_bytes(path) as (handle, position):
            counter = _Counter(position, on_bytes)
            if handle.peek(64)[:64].lstrip().startswith(b"["):
                data = handle.read()
                counter.report()
                yield from _array_records(path, data, first_only)
                return
            for line_no, raw in enumerate(handle, start=1):
                if line_no % REPORT_LINES == 0:
                    counter.report()
                if not raw.strip():
                    continue
                yield line_no, _record(path, f"line {line_no}", raw)
                if first_only:
                    return
            counter.report()
    except pa.ArrowException as exc:
        raise DataError(f"{path}: cannot decompress ({str(exc).splitlines()[0]})") from exc


def _array_records(path: Path, data: bytes, first_only: bool) -> Iterator[tuple[int, dict]]:
    records = _decode(path, "the JSON array", data)
    if not isinstance(records, list):
        raise DataError(f"{path}: a JSON file must hold one record per line or one array")
    for position, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DataError(f"{path} record {position}: a record must be an object")
        yield position, record
        if first_only:
            return


def _record(path: Path, where: str, raw: bytes) -> dict:
    record = _decode(path, where, raw)
    if not isinstance(record, dict):
        raise DataError(f"{path} {where}: a JSONL record must be an object")
    return record


def _decode(path: Path, where: str, raw: bytes) -> object:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} {where}: invalid UTF-8 ({exc.reason})") from exc
    try:
        return json.loads(line)
    except ValueError as exc:
        raise DataError(f"{path} {where}: invalid JSON ({exc})") from exc
    except RecursionError as exc:
        raise DataError(f"{path} {where}: JSON nested too deeply") from exc


def _csv_reader(
    path: Path, batch_rows: int, raw: pa.NativeFile | None = None
) -> pacsv.CSVStreamingReader:
    delimiter = CSV_DELIMITERS[plain_suffix(path)]
    source = pa.input_stream(str(path) if raw is None else raw,
                             compression=COMPRESSIONS.get(path.suffix))  # fmt: skip
    return pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(block_size=max(1 << 16, batch_rows * 256)),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
    )


def csv_schema(path: Path) -> pa.Schema:
    """The columns of a CSV or TSV file, typed as pyarrow infers them from its first block."""
    try:
        with _csv_reader(path, 1 << 14) as reader:
            return reader.schema
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable CSV file ({str(exc).splitlines()[0]})") from exc


def csv_batches(
    path: Path, columns: Sequence[str], batch_rows: int, on_bytes: OnBytes | None = None
) -> Iterator[pa.RecordBatch]:
    """Batches of ``columns`` of a CSV or TSV file, streamed; ``on_bytes`` is told the
    bytes read as the file is read."""
    with pa.OSFile(str(path)) as raw, _csv_reader(path, batch_rows, raw) as reader:
        counter = _Counter(raw.tell, on_bytes)
        for batch in reader:
            counter.report()
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows).select(list(columns))
        counter.report()
