"""`--dry-run`: what a stage would do, and what it would cost, without writing anything.

Each stage owns its cost model beside its code (``embedding.estimate``,
``clustering.estimate``, ``scoring.estimate``, ``sampling.estimate``; each scorer and
strategy its part of it), and ``pipeline`` walks the stages for `dataselect run --dry-run`.
This module keeps what they share:

- the plan (``Plan``) and its lines (``format_plans``);
- what running would do to OUTPUT, from the stage's own reading of it (``FolderState``):
  run, resume, skip, replace or refused, and the rows still to process;
- the input's shape (``DataShape``: rows, shards, per-row column sizes from the Parquet
  footers), or, for `dataselect run --dry-run`, the shape the stage before will write;
- probes timed on the real input or synthetic batches: reading, writing;
- peak memory as this process's measured peak after the probe (interpreter, libraries,
  model) plus the buffers that grow with the data; Parquet row groups being decoded cost
  about 3 x their uncompressed size (14 x for a list column);
- ``measure_command`` and ``estimate_command``, how the estimates are checked.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.engine.base import SchedulingTraits
from dataselect.errors import DataError
from dataselect.io.folder_state import FolderState
from dataselect.io.ids import batch_ids
from dataselect.io.sources import InputDataset, InputShard
from dataselect.manifest import Manifest

MB = 1e6
PROBE_ROWS = 512
READ_PROBE_ROWS = 1 << 17
LIST_DECODE_COPIES = 14.0  # decoding a list (vector) column: levels, builders, allocator
FLAT_DECODE_COPIES = 3.0  # decoding a flat column: pages, arrays, batches
WORKER_START_SECONDS = 1.5  # a spawned worker: Python, the imports, the stage unpickled


@dataclass
class DataShape:
    """What the estimates need to know of a stage's input (real, or predicted by `run`)."""

    rows: int
    shards: int
    dim: int | None = None
    id_bytes: float = 16.0  # mean id length
    row_group_rows: int = 0  # rows of the largest row group
    list_bytes_per_row: float = 0.0  # uncompressed bytes of the list columns read
    flat_bytes_per_row: float = 0.0  # uncompressed bytes of the other columns read
    bytes_per_row: float = 0.0  # on disk, all columns
    exists: bool = True

    def decode_bytes(self, batch_rows: int) -> float:
        """Memory of decoding one read batch (a reader decodes at most a row group)."""
        rows = min(batch_rows, self.row_group_rows or batch_rows)
        return rows * (
            LIST_DECODE_COPIES * self.list_bytes_per_row
            + FLAT_DECODE_COPIES * self.flat_bytes_per_row
        )


@dataclass
class Plan:
    stage: str
    input: str
    output: str
    action: str
    shards: int
    rows: int
    rows_to_process: int
    peak_memory_mb: float
    seconds: float
    output_mb: float
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("peak_memory_mb", "seconds", "output_mb"):
            out[key] = round(out[key], 1)
        return out


@dataclass(frozen=True)
class PlanRequest:
    """What a stage's estimate is asked: its folders, --overwrite, and, under `dataselect run
    --dry-run`, what is known of an input the stage before has not written yet."""

    input: str | Path
    output: str | Path
    overwrite: bool | str = False
    predicted: DataShape | None = None  # the input's shape, when the stage before writes it
    first: bool = True  # the command's first stage: it counts Python's start-up
    source: InputDataset | None = None  # the source data behind a predicted input

    @property
    def input_exists(self) -> bool:
        return self.predicted is None or self.predicted.exists

    def startup_seconds(self) -> float:
        """Starting Python and importing: counted once per command."""
        return time.process_time() if self.first else 0.0

    def plan(
        self, stage: str, action: str, shards: int, rows: int, todo: int, **estimates: Any
    ) -> Plan:
        """The plan of this request, with the estimates of ``Plan``'s other fields."""
        return Plan(stage=stage, input=str(self.input), output=str(self.output), action=action,
                    shards=shards, rows=rows, rows_to_process=todo, **estimates)  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak resident memory so far. On Linux it includes the memory of the
    process it was forked from, so a baseline uses ``current_rss_mb``."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB on Linux
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB


def high_water_mb() -> float:
    """This process's peak resident memory since it started its program (VmHWM on Linux,
    which, unlike ru_maxrss, does not count the process it was forked from)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / MB
    except (OSError, ValueError, IndexError):
        pass
    return peak_rss_mb()


def current_rss_mb() -> float:
    """This process's resident memory now (Linux; elsewhere the peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
    return pages * resource.getpagesize() / MB


_LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "dataselect", *sys.argv[1:]])
page = os.sysconf("SC_PAGE_SIZE")

def tree_rss(root):
    parent, rss = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(name)], rss[int(name)] = int(fields[1]), int(fields[21]) * page
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return total

tree_peak = 0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    tree_peak = max(tree_peak, tree_rss(pid))
    time.sleep(0.05)
peak = max(usage.ru_maxrss, tree_peak // 1024)
print(peak, time.perf_counter() - started, os.waitstatus_to_exitcode(status))
"""


def measure_command(*args: object) -> tuple[float, float]:
    """Run `dataselect ARGS` in a child and return its peak resident memory (MB) and wall
    seconds: how the estimates are checked (tests, scripts/bench/dry_run.py). The child is
    forked from a small launcher, because Linux counts the forking process's memory in a
    child's peak (a large caller would otherwise inflate it). The peak is the larger of the
    child's own (wait4) and the sum over it and its worker processes, sampled every 50 ms
    (``--workers``: each worker is a process of its own)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *map(str, args)], capture_output=True, text=True
    )
    peak, seconds, code = done.stdout.split()[-3:]
    if int(code) != 0:
        raise RuntimeError(f"dataselect {' '.join(map(str, args))}: {done.stderr.strip()}")
    return int(peak) * 1024 / MB, float(seconds)


def estimate_command(*args: object) -> dict[str, Any]:
    """The first stage's plan of `dataselect ARGS --dry-run --json`, run in a child process
    (the estimate's baseline is that process's memory, as in a real run)."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "dataselect", *map(str, args), "--dry-run", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)["stages"][0]


# -- shapes and actions --------------------------------------------------------------------
def data_shape(dataset: InputDataset, columns: list[str], id_column: str | None) -> DataShape:
    """Rows, shards and per-row column sizes from the Parquet footers; id length from one
    batch. JSONL is sized as a flat column of its bytes."""
    wanted = set(columns)
    list_columns = {
        f.name
        for f in dataset.schema
        if pa.types.is_list(f.type)
        or pa.types.is_fixed_size_list(f.type)
        or pa.types.is_large_list(f.type)
    }
    largest, list_bytes, flat_bytes, on_disk = 0, 0, 0, 0
    rows = 0
    for shard in dataset.shards:
        if shard.format != "parquet":  # JSONL does not know its row count: count its lines
            size = shard.path.stat().st_size if shard.path.exists() else 0
            rows_here = shard.rows if shard.rows is not None else count_lines(shard.path)
            rows += rows_here
            on_disk += size
            flat_bytes += size
            largest = max(largest, rows_here)
            continue
        meta = pq.ParquetFile(shard.path).metadata
        groups = shard.row_groups if shard.row_groups is not None else range(meta.num_row_groups)
        for g in groups:
            group = meta.row_group(g)
            rows += group.num_rows
            largest = max(largest, group.num_rows)
            on_disk += group.total_byte_size
            for j in range(group.num_columns):
                name = group.column(j).path_in_schema.split(".")[0]
                if name in wanted:
                    size = group.column(j).total_uncompressed_size
                    if name in list_columns:
                        list_bytes += size
                    else:
                        flat_bytes += size
    return DataShape(
        rows=rows,
        shards=len(dataset.shards),
        id_bytes=mean_id_bytes(dataset, id_column),
        row_group_rows=largest,
        list_bytes_per_row=list_bytes / rows if rows else 0.0,
        flat_bytes_per_row=flat_bytes / rows if rows else 0.0,
        bytes_per_row=on_disk / rows if rows else 0.0,
    )


def count_lines(path: Path) -> int:
    """Non-empty lines of a JSONL file, counted in blocks of bytes."""
    lines, last = 0, b"\n"
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            lines += block.count(b"\n") - block.count(b"\n\n")
            last = block[-1:]
    return lines + (last != b"\n")


def written_shape(
    shape: DataShape,
    action: str,
    dim: int | None,
    flat_bytes: float,
    list_bytes: float = 0.0,
    group_rows: int = 8192,
) -> DataShape:
    """The shape a per-row stage writes from ``shape``: the same rows and shards, a row
    group per written batch of ``group_rows``, ``flat_bytes`` + ``list_bytes`` a row. It
    exists (the next stage can read it) when the stage would be skipped."""
    return DataShape(
        rows=shape.rows,
        shards=shape.shards,
        dim=dim,
        id_bytes=shape.id_bytes,
        row_group_rows=group_rows,
        list_bytes_per_row=list_bytes,
        flat_bytes_per_row=flat_bytes,
        bytes_per_row=flat_bytes + list_bytes,
        exists=action.startswith("skip"),
    )


def mean_id_bytes(dataset: InputDataset, id_column: str | None) -> float:
    if not dataset.shards:
        return 16.0
    shard = dataset.shards[0]
    columns = [id_column] if id_column else [dataset.schema.names[0]]
    for batch in shard.iter_batches(columns, batch_rows=1024):
        ids = batch_ids(batch, shard, 0, id_column)
        if pa.types.is_integer(ids.type):
            return 8.0
        return float(np.mean([len(str(v)) for v in ids.to_pylist()])) if len(ids) else 16.0
    return 16.0


def folder_state(output: str | Path, manifest: Manifest, overwrite: bool | str) -> FolderState:
    """What running would do to OUTPUT: the stage's own reading of it (``FolderState``)."""
    return FolderState.read(output, manifest, overwrite, verify="checksum")


def rows_to_process(state: FolderState | None, shape: DataShape) -> int:
    """Rows the run would process: none when skipped or refused, else those of the shards
    not done (``state`` None: a stage whose input does not exist yet runs all)."""
    if state is None:
        return shape.rows
    if state.action in ("skip", "refuse"):
        return 0
    return max(0, shape.rows - state.rows_done())


def planned_workers(traits: SchedulingTraits, shape: DataShape, todo: int) -> int:
    """The worker processes the run would use (``--workers``, auto resolved as the local
    engine resolves it; the shards to do are counted in proportion to the rows)."""
    from dataselect.engine import current_engine, resolve_workers

    choice = current_engine()
    if choice.name != "local" or not todo:
        return 1
    shards = max(1, round(shape.shards * todo / max(shape.rows, 1)))
    return resolve_workers(choice.workers, traits, shards, todo)


# -- probes --------------------------------------------------------------------------------
def read_seconds_per_row(dataset: InputDataset | None, columns: list[str], dim: int) -> float:
    """Seconds to read and decode one row of ``columns``: timed on the input's first rows
    (enough to span a whole row group of up to ``READ_PROBE_ROWS``: a reader decodes a row
    group's pages before its first batch, so timing one small batch would overstate the
    rate), or, when the input does not exist yet, on a synthetic Parquet batch in memory."""
    if dataset is not None and dataset.shards:
        shard = dataset.shards[0]
        started, rows = time.perf_counter(), 0
        for batch in shard.iter_batches(columns, batch_rows=16_384):
            rows += batch.num_rows
            if rows >= READ_PROBE_ROWS:
                break
        return (time.perf_counter() - started) / max(rows, 1)
    rows = 16_384
    columns_: dict[str, pa.Array] = {"id": pa.array([f"row-{i:010d}" for i in range(rows)])}
    if dim:
        vectors = np.zeros(rows * dim, dtype=np.float32)
        columns_["embedding"] = pa.FixedSizeListArray.from_arrays(vectors, dim)
    else:  # the per-row columns of a cluster or score folder
        columns_["cluster"] = pa.array(np.zeros(rows, dtype=np.int32))
        columns_["distance"] = pa.array(np.zeros(rows, dtype=np.float32))
    table = pa.table(columns_)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="none")
    data = buffer.getvalue()
    started = time.perf_counter()
    pq.read_table(pa.BufferReader(data))
    return (time.perf_counter() - started) / rows


def first_batch(
    dataset: InputDataset, columns: list[str], rows: int
) -> tuple[InputShard, pa.RecordBatch]:
    """The first non-empty batch of the input (the probe's rows)."""
    for shard in dataset.shards:
        for batch in shard.iter_batches(columns, batch_rows=rows):
            if batch.num_rows:
                return shard, batch
    raise DataError(f"{dataset.path}: the input has no rows")


def write_seconds_per_row(dim: int) -> float:
    """Seconds to write (and checksum) one output row of id + ``dim`` float32, timed on a
    synthetic batch written to memory."""
    import hashlib

    rows = 16_384
    table = pa.table(
        {
            "id": pa.array([f"row-{i:010d}" for i in range(rows)]),
            "embedding": pa.FixedSizeListArray.from_arrays(
                np.zeros(rows * dim, dtype=np.float32), dim
            ),
        }
    )
    from dataselect.io.format import parquet_options

    def write(part: pa.Table) -> None:
        buffer = pa.BufferOutputStream()
        pq.write_table(part, buffer, **parquet_options(part.schema))
        hashlib.sha256(buffer.getvalue()).digest()

    write(table.slice(0, 16))  # warm-up: first calls load code
    started = time.perf_counter()
    write(table)
    return (time.perf_counter() - started) / rows


def format_plans(plans: list[Plan]) -> str:
    """The plan as lines for a terminal or a log."""
    lines = ["dry run: nothing is written"]
    for p in plans:
        lines += [
            f"{p.stage}: {p.input} -> {p.output}",
            f"  plan:     {p.action}; {p.shards:,} shards, {p.rows:,} rows "
            f"({p.rows_to_process:,} to process)",
            f"  estimate: peak memory {p.peak_memory_mb:,.0f} MB, time {_duration(p.seconds)}, "
            f"output {p.output_mb:,.1f} MB",
            "  details:  " + ", ".join(f"{k}={v}" for k, v in p.details.items()),
        ]
        lines += [f"  note:     {note}" for note in p.notes]
    if len(plans) > 1:
        total = sum(p.seconds for p in plans)
        peak = max(p.peak_memory_mb for p in plans)
        lines.append(f"total: time {_duration(total)}, peak memory {peak:,.0f} MB")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:,.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:,.1f} min"
    return f"{seconds / 3600:,.1f} h"
