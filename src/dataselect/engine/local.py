"""The local engine: runs a stage's per-shard code over the shards, in order, in-process.

Each shard streams: the stage yields record batches and they go straight into a Parquet
writer on a temporary file, so memory holds one batch, not one shard.
"""

from __future__ import annotations

import os
import signal
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


def run_local(
    stage: ShardStage, dataset: InputDataset, output: StageOutput, reporter: Reporter
) -> None:
    crash_after = int(os.environ.get(CRASH_AFTER_ENV, "0") or 0)
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
        if crash_after and written >= crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
