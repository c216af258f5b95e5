"""``dataselect export``: a selection as files a trainer loads as they are: JSONL (optionally
gzip or zstd), Parquet, or a ``datasets`` ``save_to_disk`` folder that keeps the source's
features (ClassLabel names, nested types) when the source was a ``datasets`` folder.

The rows are the selection's, in its order (part by part), cut into N files of nearly equal
size (none empty). The output is written into a hidden folder beside OUTPUT and renamed into
place when complete, so OUTPUT is never half-written; a hidden record in it
(``.dataselect-export.json``: the selection's checksums and the options) makes a rerun with
the same inputs a no-op and a changed one a refusal unless --overwrite.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import DataError, UsageError
from dataselect.io.atomic import fsync_dir
from dataselect.io.format import parquet_options
from dataselect.io.sources import InputDataset, open_input
from dataselect.lineage import trace_lineage
from dataselect.manifest import MANIFEST_NAME
from dataselect.stage import reading_inputs

FORMATS = ("jsonl", "parquet", "hf")
COMPRESSIONS = {"none": "", "gzip": ".gz", "zstd": ".zst"}
RECORD = ".dataselect-export.json"  # hidden: every reader skips it
WORK_PREFIX = ".export-"


def export(
    selection: str | Path,
    output: str | Path,
    format: str = "jsonl",
    shards: int = 1,
    columns: tuple[str, ...] = (),
    compression: str = "none",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the rows of ``selection`` (a sample folder, or any stage folder) to ``output``."""
    if format not in FORMATS:
        raise UsageError(f"--format {format!r}: choose from {', '.join(FORMATS)}")
    if compression not in COMPRESSIONS:
        raise UsageError(f"--compression {compression!r}: choose from {', '.join(COMPRESSIONS)}")
    if compression != "none" and format != "jsonl":
        raise UsageError("--compression applies to --format jsonl")
    if shards < 1:
        raise UsageError(f"--shards {shards}: at least 1")
    folder, target = Path(selection), Path(output)
    if not (folder / MANIFEST_NAME).exists():
        raise UsageError(f"{folder}: not a stage folder (give a sample folder)")
    with reading_inputs(folder):  # locked and checked against its manifest while read
        dataset = open_input(folder)
        table = _rows(dataset, columns)
        identity = {
            "selection": str(folder.resolve()),
            "shards_sha256": dataset.fingerprint().get("shards_sha256"),
            "format": format, "shards": shards, "columns": list(columns),
            "compression": compression,
        }  # fmt: skip
        if _already_done(target, identity, overwrite):
            return _summary(target, identity, table.num_rows, skipped=True)
        if table.num_rows == 0:
            raise DataError(f"{folder}: the selection has no rows")
        work = target.parent / f"{WORK_PREFIX}{target.name}.{os.getpid()}"
        _sweep(target)
        work.mkdir(parents=True)
        try:
            parts = min(shards, table.num_rows)
            if format == "hf":
                _write_hf(table, work, parts, _source_features(folder, table))
            else:
                _write_files(table, work, parts, format, compression)
            (work / RECORD).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
            _publish(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return _summary(target, identity, table.num_rows, skipped=False)


def _rows(dataset: InputDataset, columns: tuple[str, ...]) -> pa.Table:
    names = list(columns) or dataset.schema.names
    dataset.require_columns(names, what="column")
    batches = [b for shard in dataset.shards for b in shard.iter_batches(names)]
    if not batches:
        return dataset.schema.empty_table().select(names)
    return pa.Table.from_batches(batches).combine_chunks()


def _already_done(target: Path, identity: dict[str, Any], overwrite: bool) -> bool:
    """True when ``target`` holds this very export; refuses what must not be replaced."""
    if not target.exists():
        return False
    if not target.is_dir():
        raise UsageError(f"{target}: exists and is not a folder")
    record = target / RECORD
    if not record.exists():
        if any(target.iterdir()) and not overwrite:
            raise UsageError(f"{target}: exists and is not an export; choose another folder "
                             "or pass --overwrite")  # fmt: skip
        return False
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = None
    if previous == identity and not overwrite:
        return True
    if not overwrite:
        raise UsageError(f"{target}: holds an export of other rows or options; pass "
                         "--overwrite to replace it")  # fmt: skip
    return False


def _sweep(target: Path) -> None:
    """Remove work folders of exports to ``target`` that crashed."""
    for leftover in target.parent.glob(f"{WORK_PREFIX}{target.name}.*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _publish(work: Path, target: Path) -> None:
    """Move the finished export into place: the old one aside, the new one in, the old gone."""
    aside = None
    if target.exists():
        aside = target.parent / f"{WORK_PREFIX}{target.name}.old.{os.getpid()}"
        os.replace(target, aside)
    os.replace(work, target)
    fsync_dir(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _slices(rows: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (start, length) of nearly equal length covering ``rows`` rows."""
    base, extra = divmod(rows, parts)
    out, start = [], 0
    for part in range(parts):
        length = base + (1 if part < extra else 0)
        out.append((start, length))
        start += length
    return out


def _write_files(table: pa.Table, work: Path, parts: int, format: str, compression: str) -> None:
    for number, (start, length) in enumerate(_slices(table.num_rows, parts)):
        chunk = table.slice(start, length)
        name = f"part-{number:05d}-of-{parts:05d}"
        if format == "parquet":
            pq.write_table(chunk, work / f"{name}.parquet", **parquet_options(chunk.schema))
            continue
        path = work / f"{name}.jsonl{COMPRESSIONS[compression]}"
        with pa.OSFile(str(path), "wb") as raw:
            stream = raw if compression == "none" else pa.CompressedOutputStream(raw, compression)
            try:
                for batch in chunk.to_batches(max_chunksize=4096):
                    lines = (json.dumps(row, ensure_ascii=False, default=_jsonable)
                             for row in batch.to_pylist())  # fmt: skip
                    stream.write(("\n".join(lines) + "\n").encode())
            finally:
                if stream is not raw:
                    stream.close()


def _jsonable(value: object) -> object:
    """JSON for what json cannot write itself (bytes, dates, decimals)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _source_features(selection: Path, table: pa.Table) -> Any:
    """The ``datasets`` features of the exported columns: the source's own where the source
    was a ``datasets`` folder (ClassLabel names, nested types), else inferred from Arrow."""
    import datasets

    features = datasets.Features.from_arrow_schema(table.schema)
    try:
        source = trace_lineage(selection).source
    except DataError:
        return features
    if source.format != "datasets":
        return features
    try:
        info = json.loads((Path(source.path) / "dataset_info.json").read_text())
        own = datasets.Features.from_dict(info["features"])
    except (OSError, ValueError, KeyError, TypeError):
        return features
    return datasets.Features({name: own.get(name, kind) for name, kind in features.items()})


def _write_hf(table: pa.Table, work: Path, parts: int, features: Any) -> None:
    import datasets

    datasets.disable_progress_bars()  # our own summary line says what was written
    datasets.Dataset(table).cast(features).save_to_disk(str(work), num_shards=parts)


def _summary(target: Path, identity: dict[str, Any], rows: int, skipped: bool) -> dict[str, Any]:
    files = sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
    return {"output": str(target), "rows": rows, "format": identity["format"],
            "files": files, "already_done": skipped}  # fmt: skip
