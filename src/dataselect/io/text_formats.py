"""The text inputs people have besides Parquet: JSONL (plain or compressed), JSON arrays,
CSV and TSV. Each file is one shard; pyarrow decompresses (gzip, zstd, bz2) and parses CSV
in a streaming way, so memory is bounded by a batch (a JSON array is the exception: it is
loaded whole, as JSON has no way to stream one)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from dataselect.errors import DataError

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}


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
def open_bytes(path: Path) -> Iterator[io.BufferedReader]:
    """``path`` as a binary stream, decompressed when its suffix says so."""
    if path.suffix not in COMPRESSIONS:
        with open(path, "rb") as handle:
            yield handle
        return
    with pa.input_stream(str(path), compression=COMPRESSIONS[path.suffix]) as stream:
        yield io.BufferedReader(_Raw(stream), 1 << 20)


def json_records(path: Path, first_only: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, record) of a JSONL file, or (position, record) of a file holding one
    JSON array; errors name the file and line."""
    try:
        with open_bytes(path) as handle:
            if handle.peek(64)[:64].lstrip().startswith(b"["):
                yield from _array_records(path, handle.read(), first_only)
                return
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                yield line_no, _record(path, f"line {line_no}", raw)
                if first_only:
                    return
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


def _csv_reader(path: Path, batch_rows: int) -> pacsv.CSVStreamingReader:
    delimiter = CSV_DELIMITERS[plain_suffix(path)]
    source = pa.input_stream(str(path), compression=COMPRESSIONS.get(path.suffix))
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


def csv_batches(path: Path, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of ``columns`` of a CSV or TSV file, streamed."""
    with _csv_reader(path, batch_rows) as reader:
        for batch in reader:
            for start in range(0, batch.num_rows, batch_rows):
                yield batch.slice(start, batch_rows).select(list(columns))
