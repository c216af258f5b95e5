"""What engines share: the contract of a stage's shard work, and one publisher.

An engine only decides where shard work runs (this process, threads, worker processes, Ray
tasks). Each runs the same per-shard code, ``write_shard_file``, into the shard's hidden
temporary name in OUTPUT; ``publish_in_order`` is the one loop that skips finished shards,
publishes each shard in shard order (rename, checksum, marker), and on any failure cancels
the engine's pending work and removes the shards it was writing. So a shard's bytes, resume
and rollback do not depend on the engine, and crash injection covers every engine.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.io.format import parquet_options
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard
from dataselect.progress import Reporter

# Fault injection for the crash tests: SIGKILL this process after N shards were published;
# for the overlap tests: SIGSTOP it there (a paused run, continued by the test with SIGCONT).
CRASH_AFTER_ENV = "DATASELECT_TEST_CRASH_AFTER_SHARDS"
PAUSE_AFTER_ENV = "DATASELECT_TEST_PAUSE_AFTER_SHARDS"


@dataclass(frozen=True)
class SchedulingTraits:
    """How a stage's shard work may be spread, declared by the stage for the engines."""

    # the per-shard work already keeps every core busy (torch, FAISS's search): under
    # --workers auto it runs in one process, as several would only split the same cores
    uses_every_core: bool = False
    # side by side in threads rather than processes: the work is pyarrow reading and
    # writing, which releases the GIL, and starting processes would cost more
    shards_in_threads: bool = False


class ShardStage(Protocol):
    """A stage is code over one shard (and a setup and a reduction around the shards)."""

    name: str
    schema: pa.Schema
    artifacts: tuple[str, ...]
    traits: SchedulingTraits

    def params(self) -> dict[str, Any]:
        """Everything that decides the output bytes (compared on resume)."""
        ...

    def setup(self, output: StageOutput) -> None:
        """Work before the shards (e.g. fit centroids), once per run."""
        ...

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        """Yield the output batches of one shard, in input row order."""
        ...

    def finish(self, output: StageOutput) -> dict[str, Any]:
        """A reduction after every shard is written; returns facts for the manifest."""
        ...


def write_shard_file(
    stage: ShardStage, shard: InputShard, path: Path, progress: Callable[[int], None] | None = None
) -> int:
    """One shard through the stage's code into a Parquet file at ``path``; returns rows.
    Every engine calls this, so a shard's bytes do not depend on where it ran."""
    rows = 0
    with pq.ParquetWriter(path, stage.schema, **parquet_options(stage.schema)) as writer:
        for batch in stage.process(shard):
            writer.write_batch(batch)
            rows += batch.num_rows
            if progress is not None:
                progress(batch.num_rows)
    return rows


def timed_shard_file(
    stage: ShardStage, shard: InputShard, path: Path, progress: Callable[[int], None] | None = None
) -> tuple[int, float]:
    """``write_shard_file`` and the seconds it took where it ran: a worker's own time (the
    publisher's wait for it is not the shard's)."""
    started = time.perf_counter()
    rows = write_shard_file(stage, shard, path, progress)
    return rows, time.perf_counter() - started


class ShardJobs(Protocol):
    """Shard work under way on an engine."""

    # result() reports rows to the progress callback as they are written (else the
    # publisher reports a shard's rows once it is published)
    counts_rows: bool

    def result(self, index: int) -> tuple[int, float]:
        """Wait for (or do) shard ``index``: its rows and its own seconds; its error is
        raised as itself."""
        ...

    def cancel(self) -> None:
        """Stop the work not finished, and wait until nothing writes any more."""
        ...


@dataclass(frozen=True)
class ShardWork:
    """The shards of a stage to write, each into its temporary path."""

    stage: ShardStage
    shards: list[InputShard]
    paths: dict[int, Path]  # by shard index
    progress: Callable[[int], None]  # rows written, for an engine that counts them as it goes


class Engine(Protocol):
    name: str

    def start(self, work: ShardWork) -> AbstractContextManager[ShardJobs]:
        """Start ``work``; the context releases the engine's resources (pools, a Ray
        instance it started)."""
        ...


def publish_in_order(
    stage: ShardStage,
    dataset: InputDataset,
    output: StageOutput,
    reporter: Reporter,
    engine: Engine,
) -> None:
    """Every shard of ``dataset`` not already done, run on ``engine`` and published in shard
    order; on failure the engine's pending work is cancelled and the shards it was writing
    are removed (the published ones stay for a resume, or the stage rolls them back)."""
    todo = []
    for shard in dataset.shards:
        if output.is_done(shard.index):
            reporter.shard_done(shard.index, int(output.done[shard.index]["rows"]), 0, True)
        else:
            todo.append(shard)
    if not todo:
        return
    paths = {shard.index: output.temporary_shard_path(shard.index) for shard in todo}
    with engine.start(ShardWork(stage, todo, paths, reporter.advance)) as jobs:
        try:
            for written, shard in enumerate(todo, start=1):
                record = output.write_shard(
                    shard.index, partial(jobs.result, shard.index), source=shard.source_record()
                )
                if not jobs.counts_rows:
                    reporter.advance(int(record["rows"]))
                size = shard.path.stat().st_size if shard.rows is None else 0  # JSONL, CSV
                reporter.shard_done(shard.index, int(record["rows"]), float(record["seconds"]),
                                    size=size)  # fmt: skip
                crash_point(written)  # other shards may be half-written then
        except BaseException:
            jobs.cancel()
            for path in paths.values():
                path.unlink(missing_ok=True)
            raise


def crash_point(written: int) -> None:
    """The tests' fault injection: SIGKILL this process once ``written`` shards were
    published in this run, if ``CRASH_AFTER_ENV`` asks for it; SIGSTOP it once, when
    exactly that many were, if ``PAUSE_AFTER_ENV`` does."""
    crash_after = int(os.environ.get(CRASH_AFTER_ENV, "0") or 0)
    if crash_after and written >= crash_after:
        os.kill(os.getpid(), signal.SIGKILL)
    pause_after = int(os.environ.get(PAUSE_AFTER_ENV, "0") or 0)
    if pause_after and written == pause_after:
        os.kill(os.getpid(), signal.SIGSTOP)
