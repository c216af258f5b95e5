"""`--dry-run`: what a stage would do, and what it would cost, without writing anything.

The plan says, per stage, what happens to OUTPUT (run, resume, skip, or refused) and how many
shards and rows that means. The estimates:

- time from a small timed probe of the stage's own hot loop: the embedder on the first rows,
  a FAISS search of random vectors against k centroids (the k-means fit and the assignment
  are searches), reading one batch of the input, a scorer on the first rows;
- peak memory as this process's measured peak after the probe (interpreter, libraries, model)
  plus the buffers that grow with the data: the k-means sample (n_s x d float32, which FAISS
  holds about twice), the assignment's in-flight batches (workers + 2.5 of them), Parquet
  row groups being decoded (about 3 x their uncompressed size), and the sample stage's
  per-row state: 8 bytes a row (the id hashes of the duplicate check; a sixteenth of that
  past 1M rows, when they go to temporary files) for the one-shot strategies, which
  stream; about 3 x the id length + 250 bytes a row for iterative, bandit and token
  budgets, which hold every row. The factors were measured on this machine's runs
  (README, "dry-run");
- output size from the rows, the vector size and the ids' mean length.

For `dataselect run --dry-run` a stage whose input does not exist yet is estimated from the
shape its upstream stage will write (rows, shards, dimension, id length).
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
from dataselect.errors import DataError, UsageError
from dataselect.io.folder_state import FolderState
from dataselect.io.ids import batch_ids
from dataselect.io.readahead import read_threads
from dataselect.io.sources import InputDataset, InputShard, open_input
from dataselect.manifest import MANIFEST_NAME, Manifest, read_manifest

MB = 1e6
PROBE_ROWS = 512
SEARCH_PROBE_ROWS = 4096
READ_PROBE_ROWS = 1 << 17
SAMPLE_COPIES = 1.9  # the fit sample, and FAISS's own copy of most of it
IN_FLIGHT_EXTRA = 2.5  # assignment batches in flight beyond one per worker
FIT_OVERHEAD = 1.3  # k-means iterations beyond their searches: updates, k-means++ start
LIST_DECODE_COPIES = 14.0  # decoding a list (vector) column: levels, builders, allocator
FLAT_DECODE_COPIES = 3.0  # decoding a flat column: pages, arrays, batches
POOL_BYTES_PER_ID_BYTE = 3.0  # the sample stage's id column: read, sorted, combined
POOL_BYTES_PER_ROW = 250.0  # keys, cluster, distance, score, decisions, reasons
STREAM_BYTES_PER_ROW = 8.0  # a streamed selection keeps one id hash per row
CHOSEN_BYTES_PER_ID_BYTE = 6.0  # a selected id: candidates, decisions, the id set
CHOSEN_BYTES_PER_ROW = 200.0  # a selected row: sort keys, rank, reason, id set hashes
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
    return FolderState.read(output, manifest, overwrite, checksums=True)


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


def manifest_for(stage: str, params: dict[str, Any], dataset: InputDataset) -> Manifest:
    from dataselect import __version__

    return Manifest(
        stage=stage,
        version=__version__,
        params=params,
        input={"path": str(Path(dataset.path).resolve()), "fingerprint": dataset.fingerprint()},
        shards_total=len(dataset.shards),
    )


# -- probes --------------------------------------------------------------------------------
def search_seconds_per_row_centroid(dim: int, k: int) -> float:
    """Seconds per (row, centroid) of an exact FAISS search: the unit of k-means work."""
    import faiss

    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((k, dim)).astype(np.float32)
    queries = rng.standard_normal((SEARCH_PROBE_ROWS, dim)).astype(np.float32)
    index = faiss.IndexFlatIP(dim)
    index.add(centroids)
    index.search(queries[:256], 1)  # warm-up
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        index.search(queries, 1)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings)) / (SEARCH_PROBE_ROWS * k)


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


def reduction_seconds_per_row(
    strategy: str, id_bytes: float, rows: int, share: float, streams: bool
) -> float:
    """Seconds per row of the sample stage's own work besides reading: the strategy
    (streamed, or over the in-memory pool sorted by id), timed on up to 100,000 synthetic
    rows with the same budget ``share``. Iterative and bandit are timed as kmeans-random
    (their probe fits and pulls are not included)."""
    from dataselect.keyed import row_keys, row_keys_streams
    from dataselect.sampling.strategies import PER_CLUSTER_DRAW, Pool, allocate, select
    from dataselect.sampling.streaming import BoundedTop, sort_keys

    n = max(1000, min(rows, 100_000))
    budget = max(1, round(n * share))
    rng = np.random.default_rng(0)
    width = max(1, round(id_bytes))
    ids = pa.array([f"{i:0{width}d}"[-width:] + str(i) for i in rng.permutation(n)])
    k = max(1, int(np.sqrt(n)))
    cluster = rng.integers(0, k, n).astype(np.int32)
    distance = rng.random(n).astype(np.float32)
    score = rng.random(n)
    simple = strategy if strategy not in ("iterative", "bandit") else "kmeans-random"
    started = time.perf_counter()
    if streams:
        sizes = np.bincount(cluster, minlength=k)
        quota = allocate(sizes, budget, "equal") if simple in PER_CLUSTER_DRAW else [budget]
        top = np.ones(k)
        chosen = BoundedTop(np.asarray(quota), np.uint64 if simple == "random" else np.float64)
        for start in range(0, n, 1 << 16):
            batch = ids.slice(start, 1 << 16)
            part = slice(start, start + len(batch))
            _, keys = row_keys_streams(batch, 0, (1, 2))
            group, primary, secondary = sort_keys(
                simple, keys, cluster[part], distance[part], score[part], top, 1.0
            )
            chosen.add(group, primary, batch, secondary)
        chosen.result()
    else:
        table = pa.table({"id": ids, "cluster": cluster}).sort_by([("id", "ascending")])
        sorted_ids = table.column("id").combine_chunks()
        pool = Pool(row_keys(sorted_ids, 0, 2), table.column("cluster").to_numpy(), distance,
                    score)  # fmt: skip
        select(pool, simple, budget, "proportional", 1.0)
    return (time.perf_counter() - started) / n


# -- per-stage plans -----------------------------------------------------------------------
def plan_embed(
    input: str | Path, output: str | Path, config: Any, overwrite: bool | str = False
) -> tuple[Plan, DataShape]:
    from dataselect.embedding.stage import READ_ROWS, EmbedStage
    from dataselect.embedding.vectors import normalised_vectors
    from dataselect.io.sources import open_stage_input

    config.check()
    base = current_rss_mb()
    startup = time.process_time()  # starting Python and importing: once per command
    dataset = open_stage_input(input, shard_rows=config.shard_rows)
    stage = EmbedStage(dataset, config)
    shape = data_shape(dataset, stage.columns, stage.id_column)
    state = folder_state(output, manifest_for("embed", stage.params(), dataset), overwrite)
    action = state.describe()
    todo = rows_to_process(state, shape)
    shard, batch = first_batch(dataset, stage.columns, PROBE_ROWS)
    started = time.perf_counter()
    if stage.embedder is not None and stage.text is not None:
        texts = stage.text.texts(batch, shard, 0)
        stage.embedder.embed(texts[:8])  # warm-up (loads the model, which a run keeps)
        started = time.perf_counter()
        stage.embedder.embed(texts)
        base = max(base, high_water_mb())  # the model and its activations at this batch size
    else:
        column = config.vector_column
        normalised_vectors(batch.column(column).slice(0, 8), stage.dim, shard, 0, column)
        started = time.perf_counter()
        normalised_vectors(batch.column(column), stage.dim, shard, 0, column)
        base = max(base, current_rss_mb())  # the libraries the stage loaded
    per_row = (time.perf_counter() - started) / max(batch.num_rows, 1)
    per_row += read_seconds_per_row(dataset, stage.columns, stage.dim)
    per_row += write_seconds_per_row(stage.dim)
    vector_bytes = stage.dim * 4
    # the read batch decoded, and its vectors: computed, normalised, written
    memory = base * MB + shape.decode_bytes(READ_ROWS) + 3 * READ_ROWS * vector_bytes
    workers = planned_workers(stage.traits, shape, todo)
    seconds = startup + per_row * todo
    if workers > 1:  # each worker a process like this one; the parent only publishes
        memory = base * MB + workers * memory
        seconds = startup + WORKER_START_SECONDS + per_row * todo / workers
    out_shape = written_shape(shape, action, stage.dim, shape.id_bytes + 4, vector_bytes, READ_ROWS)
    plan = Plan(
        stage="embed",
        input=str(input),
        output=str(output),
        action=action,
        shards=shape.shards,
        rows=shape.rows,
        rows_to_process=todo,
        peak_memory_mb=memory / MB,
        seconds=seconds,
        output_mb=shape.rows * out_shape.bytes_per_row / MB,
        details={
            "embedder": stage.params()["embedder"],
            "dim": stage.dim,
            "probe_rows": batch.num_rows,
            "rows_per_second": round(1 / per_row, 1),
            "workers": workers,
        },
    )
    return plan, out_shape


def plan_cluster(
    input: str | Path,
    output: str | Path,
    config: Any,
    overwrite: bool | str = False,
    predicted: DataShape | None = None,
    count_startup: bool = True,
) -> tuple[Plan, DataShape]:
    """Cluster plan; ``predicted``: the input's shape when it does not exist yet."""
    import faiss

    from dataselect.clustering.kmeans import READ_ROWS
    from dataselect.clustering.stage import ClusterStage
    from dataselect.io.sources import open_stage_input

    config.check()
    base = current_rss_mb()  # the libraries are loaded; the probes below are not what a run keeps
    startup = time.process_time() if count_startup else 0.0
    dataset: InputDataset | None = None
    if predicted is None or predicted.exists:
        dataset = open_stage_input(input)
        stage = ClusterStage(dataset, config)
        shape = data_shape(dataset, ["id", config.vector_column], stage.id_column)
        shape.dim = stage.dim
        state = folder_state(output, manifest_for("cluster", stage.params(), dataset), overwrite)
        action = state.describe()
    else:
        shape, state = predicted, None
        action = f"run all {shape.shards} shards (after the stage before it)"
    dim = int(shape.dim or 0)
    notes = []
    if config.centroids:
        from dataselect.clustering.stage import load_centroids

        k = len(load_centroids(config.centroids, dim, config.metric))
        fits = 0
    elif config.k == "auto":
        grid = [g for g in config.k_grid if g <= shape.rows] or [min(config.k_grid)]
        k, fits = max(grid), len(grid)
        notes.append(f"--k auto fits every k of the grid; estimated as {fits} fits at k = {k}")
    else:
        k, fits = int(config.k), 1
        if k > shape.rows:
            raise UsageError(f"--k {k} is larger than the number of rows ({shape.rows:,})")
    sample_rows = min(shape.rows, k * config.max_points_per_centroid) if fits else 0
    todo = rows_to_process(state, shape)
    per_pair = search_seconds_per_row_centroid(dim, k)
    base = max(base, current_rss_mb())  # FAISS's threads and buffers, once started
    read = read_seconds_per_row(dataset, ["id", config.vector_column], dim)
    fit_seconds = FIT_OVERHEAD * fits * config.niter * sample_rows * k * per_pair if todo else 0.0
    seconds = fit_seconds + todo * (k * per_pair + 2 * read)
    workers = max(1, faiss.omp_get_max_threads())
    sample_bytes = sample_rows * dim * 4
    in_flight = (workers + IN_FLIGHT_EXTRA) * min(READ_ROWS, shape.rows) * dim * 4
    memory = (
        base * MB + SAMPLE_COPIES * sample_bytes + max(shape.decode_bytes(READ_ROWS), in_flight)
    )
    out_row = shape.id_bytes + 4 + 8
    out_shape = written_shape(shape, action, dim, out_row, group_rows=READ_ROWS)
    plan = Plan(
        stage="cluster",
        input=str(input),
        output=str(output),
        action=action,
        shards=shape.shards,
        rows=shape.rows,
        rows_to_process=todo,
        peak_memory_mb=memory / MB,
        seconds=startup + seconds,
        output_mb=(shape.rows * out_row + k * dim * 4) / MB,
        details={
            "k": k,
            "dim": dim,
            "fit_sample_rows": sample_rows,
            "fit_sample_mb": round(sample_bytes / MB, 1),
            "fit_seconds": round(fit_seconds, 1),
            "assignment_seconds": round(todo * k * per_pair, 1),
            "read_seconds": round(2 * todo * read, 1),
            "workers": workers,
            "process_mb": round(base, 1),
        },
        notes=notes,
    )
    return plan, out_shape


def plan_score(
    input: str | Path,
    output: str | Path,
    config: Any,
    overwrite: bool | str = False,
    predicted: DataShape | None = None,
    count_startup: bool = True,
) -> tuple[Plan, DataShape]:
    from dataselect.io.sources import open_stage_input
    from dataselect.scoring.stage import READ_ROWS, ScoreStage

    config.check()
    base = current_rss_mb()
    startup = time.process_time() if count_startup else 0.0
    notes: list[str] = []
    fitted = [s for s in config.scorers if not (s == "heuristic" or s.startswith("column:"))]
    per_row = 0.0
    if predicted is None or predicted.exists:
        dataset = open_stage_input(input, shard_rows=config.shard_rows)
        stage = ScoreStage(dataset, config)
        columns = list(dict.fromkeys(["id", *dataset.schema.names]))
        shape = data_shape(dataset, columns, stage.reader.id_column)
        try:  # the sample stage after it reads the embeddings for its metrics
            shape.dim = stage.reader.dim
        except DataError:
            shape.dim = None
        state = folder_state(output, manifest_for("score", stage.params(), dataset), overwrite)
        action = state.describe()
        unfitted = [
            s for s in stage.scorers if s.name == "heuristic" or s.name.startswith("column")
        ]

        def probe(limit: int) -> int:  # read and score the first rows of the input
            done = 0
            for rows in stage.reader.shard_rows(0, stage.fields, stage.raw_columns, 4096):
                for scorer in unfitted:
                    scorer.score(rows)
                done += len(rows)
                if done >= limit:
                    break
            return done

        probe(16)  # warm-up: first calls load code
        started = time.perf_counter()
        probed = probe(16_384)
        per_row = (time.perf_counter() - started) / max(probed, 1)
        base = max(base, current_rss_mb())  # the libraries the scorers loaded
        columns_out = len(stage.schema)
    else:
        shape, state = predicted, None
        action = f"run all {shape.shards} shards (after the stage before it)"
        columns_out = 3 + len(config.scorers)
    if fitted:
        notes.append(
            f"not timed: the fits of {', '.join(fitted)} (each on at most "
            f"--probe-rows {config.probe_rows:,} rows) and their per-row scoring"
        )
    todo = rows_to_process(state, shape)
    fit_rows = min(shape.rows, config.probe_rows) if fitted else 0
    vectors_read = any(
        not (n in ("heuristic", "dsir", "classifier") or n.startswith("column:"))
        for n in config.scorers
    )  # the probe scorers read the embeddings
    vector_bytes = (shape.dim or 0) * 4 if vectors_read else 0
    memory = (
        base * MB
        + shape.decode_bytes(READ_ROWS)
        + LIST_DECODE_COPIES * min(READ_ROWS, shape.rows) * vector_bytes  # embeddings read
        + FLAT_DECODE_COPIES * fit_rows * vector_bytes  # a probe's training rows
    )
    workers = planned_workers(ScoreStage.traits, shape, todo)
    seconds = startup + per_row * todo
    if workers > 1:  # the fits stay in this process; each worker holds the fitted scorers
        memory = base * MB + workers * memory
        seconds = startup + WORKER_START_SECONDS + per_row * todo / workers
    out_row = shape.id_bytes + 4 + 4 * columns_out
    out_shape = written_shape(shape, action, shape.dim, out_row, group_rows=READ_ROWS)
    plan = Plan(
        stage="score",
        input=str(input),
        output=str(output),
        action=action,
        shards=shape.shards,
        rows=shape.rows,
        rows_to_process=todo,
        peak_memory_mb=memory / MB,
        seconds=seconds,
        output_mb=shape.rows * out_row / MB,
        details={"scorers": list(config.scorers), "fit_rows": fit_rows, "workers": workers},
        notes=notes,
    )
    return plan, out_shape


def plan_sample(
    input: str | Path,
    output: str | Path,
    config: Any,
    overwrite: bool | str = False,
    predicted: DataShape | None = None,
    source: InputDataset | None = None,
    count_startup: bool = True,
) -> Plan:
    """Sample plan; the reduction over the per-row columns is not run, only timed on one shard."""
    from dataselect.io.sources import open_stage_input
    from dataselect.lineage import trace_lineage
    from dataselect.sampling.stage import (
        METRICS_SAMPLE_ROWS,
        ONE_SHOT,
        READ_ROWS,
        SampleStage,
        check_sample_input,
        parse_budget,
        strategy_params,
    )
    from dataselect.sampling.streaming import HashBuckets

    config.check()
    base = current_rss_mb()
    startup = time.process_time() if count_startup else 0.0
    notes: list[str] = []
    read = embed_read = 0.0
    if predicted is None or predicted.exists:
        dataset = open_stage_input(input)
        check_sample_input(dataset, config)
        shape = data_shape(dataset, ["id"], "id")
        lineage = trace_lineage(Path(dataset.path))
        source = lineage.source
        shape.dim = int(lineage.embed.params["dim"])
        embed_read = read_seconds_per_row(open_input(lineage.embed_folder), ["id", "embedding"], 0)
        wanted = [
            c
            for c in ("id", "cluster", "distance", config.score_column)
            if c and c in dataset.schema.names
        ]
        read = read_seconds_per_row(dataset, wanted, 0)
        budget = parse_budget(config.budget, shape.rows) if config.budget_tokens is None else None
        params = strategy_params(config) | {"budget_rows": budget}
        if budget is None and (Path(output) / MANIFEST_NAME).exists():
            # a token budget's row count is found by the run: take the finished run's
            params["budget_rows"] = read_manifest(output).params.get("budget_rows")
        manifest = manifest_for("sample", params, dataset)
        manifest.shards_total = len(source.shards)
        action = folder_state(output, manifest, overwrite).describe()
    else:
        shape = predicted
        budget = parse_budget(config.budget, shape.rows) if config.budget_tokens is None else None
        action = "run (after the stage before it)"
        read = read_seconds_per_row(None, [], 0)
        embed_read = read_seconds_per_row(None, [], int(shape.dim or 0))
    if source is None:
        raise UsageError(f"{input}: cannot find the source data behind it")
    source_columns = list(source.schema.names)
    source_shape = data_shape(source, source_columns, None)
    source_read = read_seconds_per_row(source, source_columns, 0)
    todo = 0 if action.startswith(("skip", "refused")) else shape.rows
    if budget is None:
        notes.append("--budget-tokens: the row count depends on the token counts")
    if config.strategy == "iterative" and config.feedback == "probe":
        notes.append("not timed: the probe fits of --feedback probe (5 per round)")
    vendi_rows = min(shape.rows, METRICS_SAMPLE_ROWS)
    dim = int(shape.dim or 0)
    streams = config.strategy in ONE_SHOT and config.budget_tokens is None
    reduce = (
        reduction_seconds_per_row(
            config.strategy,
            shape.id_bytes,
            shape.rows,
            (budget or shape.rows) / shape.rows,
            streams,
        )
        if todo
        else 0.0
    )
    per_row = POOL_BYTES_PER_ID_BYTE * shape.id_bytes + POOL_BYTES_PER_ROW
    if streams:  # the id hashes: in memory, or spilled and sorted a bucket at a time
        spilled = shape.rows > HashBuckets.MEMORY_ROWS
        per_row = STREAM_BYTES_PER_ROW / (HashBuckets.BUCKETS if spilled else 1)
    selected = budget if budget is not None else shape.rows
    memory = (
        base * MB
        + shape.rows * per_row
        + selected * (CHOSEN_BYTES_PER_ID_BYTE * shape.id_bytes + CHOSEN_BYTES_PER_ROW)
        + 2 * vendi_rows * dim * 4
    )
    write_out = todo * source_read
    # the source rows joined back by the write-out's threads (``--workers``), then the
    # embeddings read for the diversity metrics, a few parts side by side (``io.readahead``)
    workers = planned_workers(SampleStage.traits, source_shape, todo)
    readers = max(1, min(read_threads(), source_shape.shards))
    memory += max(
        workers * source_shape.decode_bytes(READ_ROWS),
        readers * LIST_DECODE_COPIES * min(READ_ROWS, shape.rows) * dim * 4,
    )
    write_out /= workers
    embed_read /= readers
    return Plan(
        stage="sample",
        input=str(input),
        output=str(output),
        action=action,
        shards=source_shape.shards,
        rows=shape.rows,
        rows_to_process=todo,
        peak_memory_mb=memory / MB,
        # the per-row columns, the reduction, the source rows joined back, and one pass
        # over the embeddings for the diversity metrics (selected rows and corpus sample)
        seconds=startup + todo * (read + reduce + embed_read) + write_out,
        output_mb=selected * (source_shape.bytes_per_row + shape.id_bytes + 60) / MB,
        details={
            "strategy": config.strategy,
            "budget_rows": budget,
            "read_seconds": round(todo * (read + source_read + embed_read), 1),
            "reduction_seconds": round(todo * reduce, 1),
            "workers": workers,
        },
        notes=notes,
    )


def plan_run(config: dict[str, Any]) -> list[Plan]:
    """Every stage of `dataselect run CONFIG`, each from its real input when that exists and
    is current, else from the shape the stage before it will write."""
    from dataselect.io.sources import open_stage_input
    from dataselect.pipeline import STAGES, stage_config
    from dataselect.sampling.stage import refined_rounds

    run_dir = Path(config["run_dir"])
    configs = {name: stage_config(name, config.get(name)) for name in STAGES}
    folders = {name: run_dir / name for name in STAGES}
    plans = []
    plan, shape = plan_embed(config["input"], folders["embed"], configs["embed"], "stale")
    plans.append(plan)
    source = open_stage_input(config["input"], shard_rows=configs["embed"].shard_rows)
    plan, shape = plan_cluster(
        folders["embed"],
        folders["cluster"],
        configs["cluster"],
        "stale",
        predicted=shape,
        count_startup=False,
    )
    plans.append(plan)
    sample_input = folders["cluster"]
    if config.get("score") is not None:
        plan, shape = plan_score(
            folders["cluster"],
            folders["score"],
            configs["score"],
            "stale",
            predicted=shape,
            count_startup=False,
        )
        plans.append(plan)
        sample_input = folders["score"]
    sample_config = configs["sample"]
    sample_config.feedback_digests = refined_rounds(sample_input, folders["sample"], sample_config)
    plans.append(
        plan_sample(
            sample_input,
            folders["sample"],
            configs["sample"],
            "stale",
            predicted=shape,
            source=source,
            count_startup=False,
        )
    )
    return plans


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
