"""The local engine: runs a stage's per-shard code over the shards, in order, in-process.

Each shard streams: the stage yields record batches and they go straight into a Parquet
writer on a temporary file, so memory holds one batch, not one shard.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from dataselect.io.format import parquet_options
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard
from dataselect.progress import Reporter

if TYPE_CHECKING:
    from dataselect.stage import ShardStage

# Fault injection for the crash tests: SIGKILL this process after N shards were written.
CRASH_AFTER_ENV = "DATASELECT_TEST_CRASH_AFTER_SHARDS"
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def write_shard_file(
    stage: ShardStage, shard: InputShard, path: Path, progress: Callable[[int], None] | None = None
) -> int:
    """One shard through the stage's code into a Parquet file at ``path``; returns rows.
    Both engines call this, so a shard's bytes do not depend on where it ran."""
    rows = 0
    with pq.ParquetWriter(path, stage.schema, **parquet_options(stage.schema)) as writer:
        for batch in stage.process(shard):
            writer.write_batch(batch)
            rows += batch.num_rows
            if progress is not None:
                progress(batch.num_rows)
    return rows


def timed_shard_file(stage: ShardStage, shard: InputShard, path: Path) -> tuple[int, float]:
    """``write_shard_file`` and the seconds it took where it ran: a worker's own time, for
    the engines that run shards side by side (the publisher's wait is not the shard's)."""
    started = time.perf_counter()
    rows = write_shard_file(stage, shard, path)
    return rows, time.perf_counter() - started


def run_local(
    stage: ShardStage,
    dataset: InputDataset,
    output: StageOutput,
    reporter: Reporter,
    workers: int = 1,
) -> None:
    from dataselect.engine import resolve_workers

    todo = [s for s in dataset.shards if not output.is_done(s.index)]
    workers = resolve_workers(workers, stage, len(todo), sum(s.rows or 0 for s in todo))
    if workers > 1:
        threads = getattr(stage, "shards_in_threads", False)
        reporter.log(
            f"{len(todo)} shards in {workers} worker {'threads' if threads else 'processes'}"
        )
        return run_side_by_side(stage, dataset, output, reporter, workers, threads)
    written = 0
    for shard in dataset.shards:
        if output.is_done(shard.index):
            reporter.shard_done(shard.index, int(output.done[shard.index]["rows"]), 0, True)
            continue

        def write(tmp: Path, shard: InputShard = shard) -> int:
            return write_shard_file(stage, shard, tmp, reporter.advance)

        record = output.write_shard(shard.index, write, source=shard.source_record())
        reporter.shard_done(shard.index, int(record["rows"]), float(record["seconds"]))
        written += 1
        crash_point(written)


def crash_point(written: int) -> None:
    """The crash tests' fault injection: SIGKILL this process once ``written`` shards were
    published in this run, if ``CRASH_AFTER_ENV`` asks for it."""
    crash_after = int(os.environ.get(CRASH_AFTER_ENV, "0") or 0)
    if crash_after and written >= crash_after:
        os.kill(os.getpid(), signal.SIGKILL)


def run_side_by_side(
    stage: ShardStage,
    dataset: InputDataset,
    output: StageOutput,
    reporter: Reporter,
    workers: int,
    threads: bool = False,
) -> None:
    """Shards side by side in ``workers`` fresh processes (spawned: FAISS's and torch's
    threads do not survive a fork), or threads of this process for a stage whose per-shard
    work is pyarrow's reading and writing (it releases the GIL), each running
    ``write_shard_file``; this process publishes them in shard order, as the single-process
    loop does."""
    import multiprocessing
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

    from dataselect.io.atomic import temporary_path
    from dataselect.io.output import shard_name

    todo = []
    for shard in dataset.shards:
        if output.is_done(shard.index):
            reporter.shard_done(shard.index, int(output.done[shard.index]["rows"]), 0, True)
        else:
            todo.append(shard)
    paths = {s.index: temporary_path(output.folder / shard_name(s.index)) for s in todo}
    count = min(workers, max(len(todo), 1))
    pool: Executor = (
        ThreadPoolExecutor(count, thread_name_prefix="shard")
        if threads
        else ProcessPoolExecutor(
            count, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
        )
    )
    with pool:
        futures = {s.index: pool.submit(timed_shard_file, stage, s, paths[s.index]) for s in todo}
        try:
            for written, shard in enumerate(todo, start=1):
                future = futures[shard.index]
                record = output.write_shard(
                    shard.index, lambda _tmp, f=future: f.result(), source=shard.source_record()
                )
                reporter.advance(int(record["rows"]))
                reporter.shard_done(shard.index, int(record["rows"]), float(record["seconds"]))
                crash_point(written)  # other workers' shards may be half-written then
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            for path in paths.values():  # shards other workers were writing
                path.unlink(missing_ok=True)
            raise


def die_with_parent() -> None:
    """A worker process is killed with the run that started it (Linux): a SIGKILLed run
    would otherwise leave its workers finishing shard files after it, beside its rerun."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the next run sweeps what they leave
        pass
