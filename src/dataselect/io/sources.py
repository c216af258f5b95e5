"""Input discovery: turn a path (folder, file, glob) into an ordered list of shards.

A shard is the unit of work of every per-row stage: input shard i becomes output shard i.
Parquet files are cut along row groups into shards of about ``shard_rows`` rows; a JSONL file
or a Hugging Face ``datasets`` Arrow file is one shard. Shards are read in record batches, so
memory is bounded by the batch (and, for Parquet, one row group), not by the shard.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect import progress
from dataselect.errors import DataError, UsageError
from dataselect.io import checksums
from dataselect.io.text_formats import csv_batches, csv_schema, json_records, text_format
from dataselect.io.vector_pages import PlainVectors
from dataselect.manifest import MANIFEST_NAME, Manifest

DEFAULT_SHARD_ROWS = 100_000


@dataclass(frozen=True)
class InputShard:
    """One unit of work: a whole file, or a run of row groups of one Parquet file."""

    index: int
    path: Path
    relpath: str
    format: str  # "parquet" | "jsonl" | "csv" | "arrow"
    first_row: int = 0
    rows: int | None = None
    row_groups: tuple[int, ...] | None = None

    def describe(self) -> str:
        if self.format == "parquet" and self.row_groups is not None and self.first_row:
            return f"{self.relpath} (row groups {self.row_groups[0]}-{self.row_groups[-1]})"
        return self.relpath

    def source_record(self) -> dict[str, object]:
        """How this shard is found again in its source (kept in the output manifest)."""
        record: dict[str, object] = {"file": self.relpath, "first_row": self.first_row}
        if self.row_groups is not None:
            record["row_groups"] = list(self.row_groups)
        if self.rows is not None:
            record["rows"] = self.rows
        return record

    def iter_batches(
        self, columns: Sequence[str], batch_rows: int = 8192, threads: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """Yield record batches holding ``columns`` (in that order), wrapping read errors.

        ``threads`` decodes a Parquet row group's columns on pyarrow's thread pool: for
        passes that only read (the sample stage's); stages whose own work already uses every
        core (FAISS, torch) decode in their thread.

        A stage folder's shard is checked against its recorded checksum on a helper thread
        while the stage runs (``io/checksums.py``); the stage waits for the verdict before
        its output is complete."""
        checksums.reading(self.path)
        try:
            if self.format == "parquet":
                yield from self._parquet_batches(columns, batch_rows, threads)
            elif self.format == "arrow":
                yield from self._arrow_batches(columns, batch_rows)
            elif self.format == "csv":
                yield from csv_batches(self.path, columns, batch_rows, progress.bytes_read)
            else:
                yield from _jsonl_batches(self.path, columns, batch_rows)
        except DataError:
            raise
        except (OSError, pa.ArrowException) as exc:
            checksums.check_read_error(self.path)  # a damaged shard is named as such
            raise DataError(f"cannot read {self.path}: {_one_line(exc)}") from exc

    def plain_vectors(self, column: str, dim: int) -> PlainVectors | None:
        """The shard's ``column`` for reading straight from its pages (``io/vector_pages``),
        or None where it is not stored in that plain layout (read it by ``iter_batches``).
        The caller closes the reader."""
        if self.format != "parquet":
            return None
        checksums.reading(self.path)
        try:
            return PlainVectors.open(self.path, column, dim, self.row_groups)
        except (OSError, pa.ArrowException) as exc:  # (damaged metadata: either, by pyarrow)
            checksums.check_read_error(self.path)
            raise DataError(f"cannot read {self.path}: {_one_line(exc)}") from exc

    def _parquet_batches(
        self, columns: Sequence[str], batch_rows: int, threads: bool
    ) -> Iterator[pa.RecordBatch]:
        """One row group at a time, so memory holds one row group, however long the shard."""
        with pq.ParquetFile(self.path) as reader:
            groups = self.row_groups
            if groups is None:
                groups = tuple(range(reader.metadata.num_row_groups))
            for group in groups:
                yield from reader.iter_batches(
                    batch_size=batch_rows,
                    row_groups=[group],
                    columns=list(columns),
                    use_threads=threads,
                )

    def _arrow_batches(self, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
        with pa.memory_map(str(self.path)) as source:
            reader = _open_arrow(source)
            for batch in reader:
                batch = batch.select(list(columns))
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)


@dataclass
class InputDataset:
    """What a stage reads: its shards, their common schema, and the manifest if any."""

    path: Path
    format: str
    shards: list[InputShard]
    schema: pa.Schema
    manifest: Manifest | None = None
    files: list[Path] = field(default_factory=list)

    @property
    def rows(self) -> int | None:
        counts = [s.rows for s in self.shards]
        return None if any(c is None for c in counts) else sum(c or 0 for c in counts)

    def require_columns(self, names: Sequence[str], what: str = "column") -> None:
        for name in names:
            if name not in self.schema.names:
                have = ", ".join(self.schema.names) or "none"
                raise DataError(f"{self.path}: no {what} '{name}' (columns: {have})")

    def fingerprint(self) -> dict[str, object]:
        """Identify the input by content, so a changed input is never resumed.

        A dataselect stage folder is identified by its manifest's shard checksums (each
        shard is checked against its own as it is read); other files by path, size and the
        SHA-256 and XXH3-128 of all their bytes (one pass, once per process, about 1 GB/s).
        """
        if self.manifest is not None:
            digest = hashlib.sha256()
            for shard in self.manifest.shards:
                digest.update(f"{shard['file']}:{shard['sha256']}\n".encode())
            return {"stage": self.manifest.stage, "shards_sha256": digest.hexdigest()}
        checksums.start_hashing(self.files)
        files = []
        for path in self.files:
            files.append(
                {
                    "file": _relpath(path, self.path),
                    "size": path.stat().st_size,
                    **checksums.cached_digests(path),  # sha256, xxh3_128
                }
            )
        return {"files": files}


def check_source(dataset: InputDataset, recorded: object, what: str) -> None:
    """Check that ``dataset`` is the input a stage recorded (fingerprint ``recorded``),
    ``what`` saying which stage, for a stage that follows a folder back to its source data.
    Names and sizes are compared now; each file's checksum is registered and verified
    beside the stage's work (``io/checksums.py``) rather than read first. DataError when
    they differ."""
    changed = DataError(f"{dataset.path}: the source data changed since {what}")
    files = recorded.get("files") if isinstance(recorded, dict) else None
    if dataset.manifest is not None or not isinstance(files, list):
        if dataset.fingerprint() != recorded:
            raise changed
        return
    entries = [entry for entry in files if isinstance(entry, dict)]
    paths = {_relpath(path, dataset.path): path for path in dataset.files}
    if len(entries) != len(files) or sorted(paths) != sorted(str(e.get("file")) for e in entries):
        raise changed
    for entry in entries:
        path = paths[str(entry["file"])]
        if path.stat().st_size != entry.get("size") or not isinstance(entry.get("sha256"), str):
            raise changed
        checksums.expect(path, entry, f"{path}: the source data changed since {what} (its "
                         "checksum differs)")  # fmt: skip


STDIN = "-"
# Refused rather than half-supported: stages after embed read the source again (score for
# text and labels, sample to write the chosen rows), and resume checks its checksums.
STDIN_REFUSAL = (
    "INPUT '-': reading stdin is not supported: later stages read the source again (the "
    "sample stage writes the chosen rows from it) and a resumed run checks it; save it "
    "first, e.g. `... > data.jsonl`, and give that file"
)


def open_input(path: str | Path, shard_rows: int = DEFAULT_SHARD_ROWS) -> InputDataset:
    """Open a Parquet folder/file/glob, JSONL/JSON/CSV/TSV file(s) (also compressed), a
    `datasets` folder or a stage folder."""
    if shard_rows < 1:
        raise UsageError("--shard-rows must be at least 1")
    if str(path) == STDIN:
        raise UsageError(STDIN_REFUSAL)
    try:
        return _open_input(path, shard_rows)
    except OSError as exc:  # a folder or file this user may not read, a vanished file
        where = exc.filename or path
        raise DataError(f"{where}: cannot read ({exc.strerror or exc})") from exc


def _open_input(path: str | Path, shard_rows: int) -> InputDataset:
    text = str(path)
    root = Path(text)
    if not root.exists() and any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise DataError(f"{text}: the pattern matches no files")
        base = Path(_glob_base(text))
        return _open_files(base, files, _format_of(files, text), shard_rows)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder")
    if root.is_file():
        return _open_files(root, [root], _format_of([root], text), shard_rows)
    if (root / MANIFEST_NAME).exists():
        return _open_stage_folder(root)
    if (root / "dataset_dict.json").exists():
        splits = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise UsageError(
            f"{root} is a datasets DatasetDict: name one split folder, e.g. {root / splits[0]}"
            if splits
            else f"{root} is an empty datasets DatasetDict"
        )
    if (root / "state.json").exists():
        return _open_hf_folder(root)
    files = sorted(p for p in root.rglob("*.parquet") if _visible(p, root))
    if not files:  # text files of one format (JSONL first)
        found = sorted(p for p in root.rglob("*") if text_format(p) and _visible(p, root))
        kind = "jsonl" if any(text_format(p) == "jsonl" for p in found) else "csv"
        files = [p for p in found if text_format(p) == kind]
    files = _outside_stage_folders(files, root)
    if not files:
        skipped = _skipped(root)
        raise DataError(f"{root}: no Parquet, JSONL or CSV files in this folder"
                        + (f" (skipped: {skipped})" if skipped else ""))  # fmt: skip
    return _open_files(root, files, _format_of(files, text), shard_rows)


def open_stage_input(path: str | Path, shard_rows: int = DEFAULT_SHARD_ROWS) -> InputDataset:
    """``open_input`` for a stage: an input without rows is an error."""
    dataset = open_input(path, shard_rows=shard_rows)
    if dataset.rows == 0:
        raise DataError(f"{path}: the input has no rows")
    return dataset


def _open_files(root: Path, files: list[Path], fmt: str, shard_rows: int) -> InputDataset:
    if fmt == "parquet":
        return _open_parquet(root, files, shard_rows)
    if fmt == "arrow":
        return _open_arrow_files(root, files)
    shards = [
        InputShard(index=i, path=f, relpath=_relpath(f, root), format=fmt)
        for i, f in enumerate(files)
    ]
    schema = _jsonl_schema(root, files) if fmt == "jsonl" else _csv_schema(files)
    return InputDataset(root, fmt, shards, schema, files=files)


def _csv_schema(files: list[Path]) -> pa.Schema:
    schema = csv_schema(files[0])
    for path in files[1:]:
        other = csv_schema(path)
        if not other.equals(schema):
            raise DataError(
                f"{path}: schema differs from {files[0]}: {_schema_diff(schema, other)}"
            )
    return schema


def _skipped(root: Path) -> str:
    """Up to three visible files of a folder that no reader here takes, for the error."""
    names = [p.name for p in sorted(root.rglob("*")) if p.is_file() and _visible(p, root)]
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _open_parquet(root: Path, files: list[Path], shard_rows: int) -> InputDataset:
    shards: list[InputShard] = []
    schema: pa.Schema | None = None
    first_file = files[0]
    for path in files:
        meta = _parquet_metadata(path)
        file_schema = meta.schema.to_arrow_schema().remove_metadata()
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise DataError(
                f"{path}: schema differs from {first_file}: {_schema_diff(schema, file_schema)}"
            )
        relpath = _relpath(path, root)
        if meta.num_row_groups == 0:
            shards.append(InputShard(len(shards), path, relpath, "parquet", 0, 0, row_groups=()))
            continue
        groups: list[int] = []
        first_row = rows = offset = 0
        for rg in range(meta.num_row_groups):
            if groups and rows >= shard_rows:
                shards.append(
                    InputShard(
                        len(shards), path, relpath, "parquet", first_row, rows, tuple(groups)
                    )
                )
                groups, first_row, rows = [], offset, 0
            groups.append(rg)
            n = meta.row_group(rg).num_rows
            rows += n
            offset += n
        shards.append(
            InputShard(len(shards), path, relpath, "parquet", first_row, rows, tuple(groups))
        )
    assert schema is not None
    return InputDataset(root, "parquet", shards, schema, files=files)


def _open_stage_folder(root: Path) -> InputDataset:
    """A finished stage folder as input: its shards as the manifest lists them, each there
    (``FolderState``, the stage's own reading of a folder), each there with its recorded
    size; each shard's checksum is checked as it is read (``io/checksums.py``)."""
    from dataselect.io.folder_state import FolderState

    state = FolderState.read(root, verify="size")
    manifest = state.manifest
    assert manifest is not None
    if not manifest.complete:
        raise DataError(
            f"{root}: the {manifest.stage} stage has not finished ({len(state.claimed)} shards "
            "done): rerun that stage first"
        )
    if state.problems:
        raise DataError(f"{root}: {state.problems[0]} (rerun the {manifest.stage} stage)")
    files = [root / str(s["file"]) for s in manifest.shards]
    dataset = _open_parquet(root, files, shard_rows=1 << 62) if files else None
    if dataset is None or len(dataset.shards) != len(files):
        raise DataError(f"{root}: stage folder has no shards")
    for record in manifest.shards:  # checked as they are read (io/checksums.py)
        path = root / str(record["file"])
        checksums.expect(path, record, checksums.shard_mismatch(path, root / MANIFEST_NAME))
    dataset.manifest = manifest
    dataset.format = "stage"
    return dataset


def _open_hf_folder(root: Path) -> InputDataset:
    try:
        state = json.loads((root / "state.json").read_text())
        names = [entry["filename"] for entry in state["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{root / 'state.json'}: not a datasets save_to_disk state file") from exc
    if state.get("_indices_data_files"):
        raise DataError(f"{root}: dataset has an indices mapping; save it with flatten_indices()")
    files = [root / name for name in names]
    dataset = _open_arrow_files(root, files)
    dataset.format = "datasets"
    return dataset


def _open_arrow_files(root: Path, files: list[Path]) -> InputDataset:
    shards: list[InputShard] = []
    schema: pa.Schema | None = None
    for i, path in enumerate(files):
        try:
            with pa.memory_map(str(path)) as source:
                reader = _open_arrow(source)
                file_schema = reader.schema.remove_metadata()
                rows = sum(batch.num_rows for batch in reader)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{path}: not a readable Arrow stream: {_one_line(exc)}") from exc
        if schema is None:
            schema = file_schema
        elif not file_schema.equals(schema):
            raise DataError(
                f"{path}: schema differs from {files[0]}: {_schema_diff(schema, file_schema)}"
            )
        shards.append(InputShard(i, path, _relpath(path, root), "arrow", 0, rows))
    assert schema is not None
    return InputDataset(root, "arrow", shards, schema, files=files)


def _open_arrow(source: pa.NativeFile) -> pa.RecordBatchStreamReader:
    """`datasets` writes the IPC stream format; accept the file format too."""
    try:
        return pa.ipc.open_stream(source)
    except pa.ArrowInvalid:
        source.seek(0)
        file_reader = pa.ipc.open_file(source)
        return pa.RecordBatchReader.from_batches(
            file_reader.schema,
            (file_reader.get_batch(i) for i in range(file_reader.num_record_batches)),
        )


def _parquet_metadata(path: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: corrupt or truncated Parquet file ({_one_line(exc)})") from exc


def _jsonl_schema(root: Path, files: list[Path]) -> pa.Schema:
    """Column names (and types) from the first record of the first non-empty file."""
    for path in files:
        for _, record in json_records(path, first_only=True):
            fields = [pa.field(k, _json_type(path, k, v)) for k, v in record.items()]
            return pa.schema(fields)
    raise DataError(f"{root}: the JSONL input has no records")  # the path as given


def _json_type(path: Path, name: str, value: object) -> pa.DataType:
    try:
        return pa.array([value]).type
    except OverflowError as exc:
        raise _too_big(path, name) from exc
    except (pa.ArrowException, TypeError, ValueError):
        return pa.null()


def _too_big(path: Path, name: str) -> DataError:
    return DataError(f"{path}: column '{name}' has an integer beyond 64 bits (store such "
                     "values as strings)")  # fmt: skip


def _jsonl_batches(path: Path, columns: Sequence[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    pending: list[dict] = []
    for _, record in json_records(path, on_bytes=progress.bytes_read):
        pending.append(record)
        if len(pending) >= batch_rows:
            yield _records_to_batch(path, pending, columns)
            pending = []
    if pending:
        yield _records_to_batch(path, pending, columns)


def _records_to_batch(path: Path, records: list[dict], columns: Sequence[str]) -> pa.RecordBatch:
    if not columns:  # rows without columns still count (a pass that derives ids)
        return pa.record_batch([pa.nulls(len(records))], names=["_"]).select([])
    arrays = []
    for name in columns:
        values = [r.get(name) for r in records]
        try:
            arrays.append(pa.array(values))
        except OverflowError as exc:
            raise _too_big(path, name) from exc
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DataError(f"{path}: column '{name}' has mixed or unsupported types") from exc
    return pa.RecordBatch.from_arrays(arrays, names=list(columns))


def _format_of(files: list[Path], given: str) -> str:
    formats = {_file_format(f) for f in files}
    if len(formats) == 1 and None not in formats:
        return str(formats.pop())
    suffixes = sorted({"".join(f.suffixes[-2:]) for f in files})
    raise UsageError(
        f"{given}: cannot tell one format from the suffixes ({', '.join(suffixes)}); use "
        ".parquet, .jsonl, .json, .csv, .tsv (optionally .gz, .zst, .bz2) or .arrow"
    )


def _file_format(path: Path) -> str | None:
    if path.suffix in (".parquet", ".arrow"):
        return path.suffix[1:]
    return text_format(path)


def _schema_diff(a: pa.Schema, b: pa.Schema) -> str:
    for f in a:
        if f.name not in b.names:
            return f"column '{f.name}' is missing"
        if not b.field(f.name).type.equals(f.type):
            return f"column '{f.name}' is {b.field(f.name).type}, expected {f.type}"
    extra = [n for n in b.names if n not in a.names]
    return f"extra column '{extra[0]}'" if extra else "column order differs"


def _relpath(path: Path, root: Path) -> str:
    if root.is_file():
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _glob_base(pattern: str) -> str:
    parts = Path(pattern).parts
    base: list[str] = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        base.append(part)
    return str(Path(*base)) if base else "."


def _outside_stage_folders(files: list[Path], root: Path) -> list[Path]:
    """``files`` less those in a stage folder under ``root`` (an OUTPUT inside the raw
    INPUT folder is not input: without this, every rerun would read its own output)."""
    is_stage: dict[Path, bool] = {}

    def in_stage_folder(path: Path) -> bool:
        for folder in path.relative_to(root).parents:
            here = root / folder
            if here not in is_stage:
                is_stage[here] = (here / MANIFEST_NAME).exists()
            if is_stage[here]:
                return True
        return False

    return [path for path in files if not in_stage_folder(path)]


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
