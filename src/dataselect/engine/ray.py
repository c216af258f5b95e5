"""The Ray engine: each shard of a stage is a Ray task running the same per-shard code as
the local engine (``write_shard_file``); the driver keeps the folder's bookkeeping.

The driver fits (k-means, scorers) and reduces (the sample stage) as on one machine; the
workers write each shard to its hidden temporary name in OUTPUT, and the driver publishes
it (rename, checksum, marker) in shard order, so resume and rollback work as locally. On a
cluster, OUTPUT and the input must be on storage every node sees (NFS, a mounted bucket).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataselect.engine.local import timed_shard_file
from dataselect.errors import DataselectError
from dataselect.io.atomic import temporary_path
from dataselect.io.output import StageOutput, shard_name
from dataselect.io.sources import InputDataset, InputShard
from dataselect.progress import Reporter

if TYPE_CHECKING:
    from dataselect.stage import ShardStage


def _shard_task(stage: ShardStage, shard: InputShard, path: str) -> tuple[int, float]:
    return timed_shard_file(stage, shard, Path(path))


def run_ray(
    stage: ShardStage,
    dataset: InputDataset,
    output: StageOutput,
    reporter: Reporter,
    address: str | None = None,
) -> None:
    try:
        import ray
    except ImportError as exc:
        raise DataselectError("--engine ray needs Ray: pip install 'dataselect[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
        )
    try:
        task = ray.remote(_shard_task)
        stage_ref = ray.put(stage)
        pending: dict[int, tuple[InputShard, Any]] = {}
        paths: list[Path] = []
        for shard in dataset.shards:
            if output.is_done(shard.index):
                reporter.shard_done(shard.index, int(output.done[shard.index]["rows"]), 0, True)
                continue
            tmp = temporary_path(output.folder / shard_name(shard.index))
            paths.append(tmp)
            pending[shard.index] = (shard, task.remote(stage_ref, shard, str(tmp)))
        try:
            for index in sorted(pending):  # published in shard order, like the local engine
                shard, ref = pending[index]
                record = output.write_shard(
                    index, lambda _tmp, ref=ref: _result(ray, ref), source=shard.source_record()
                )
                reporter.advance(int(record["rows"]))
                reporter.shard_done(index, int(record["rows"]), float(record["seconds"]))
        except BaseException:
            for _, ref in pending.values():
                ray.cancel(ref, force=True)
            ray.wait([ref for _, ref in pending.values()], num_returns=len(pending), timeout=30)
            for path in paths:  # shards other tasks were writing
                path.unlink(missing_ok=True)
            raise
    finally:
        if started_here:
            ray.shutdown()


def _result(ray: Any, ref: Any) -> tuple[int, float]:
    """The task's rows and seconds; a task's own error (bad data, a bug) is re-raised as
    itself."""
    try:
        rows, seconds = ray.get(ref)
        return int(rows), float(seconds)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        if cause is not None:
            raise cause from None
        raise
