"""The Ray engine: each shard of a stage is a Ray task running the same per-shard code as
the local engines (``timed_shard_file``); the driver publishes (``publish_in_order``).

The driver fits (k-means, scorers) and reduces (the sample stage) as on one machine; the
tasks write each shard to its hidden temporary name in OUTPUT, and the driver publishes it
(rename, checksum, marker) in shard order, so resume and rollback work as locally. On a
cluster, OUTPUT and the input must be on storage every node sees (NFS, a mounted bucket).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dataselect.engine.base import ShardJobs, ShardStage, ShardWork, timed_shard_file
from dataselect.errors import DataselectError
from dataselect.io.sources import InputShard


def _shard_task(stage: ShardStage, shard: InputShard, path: str) -> tuple[int, float]:
    return timed_shard_file(stage, shard, Path(path))


class RayEngine:
    """Shards as Ray tasks on the cluster at ``address`` (None: a local Ray instance,
    started for the stage and stopped after it)."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    @contextmanager
    def start(self, work: ShardWork) -> Iterator[ShardJobs]:
        try:
            import ray
        except ImportError as exc:
            raise DataselectError("--engine ray needs Ray: pip install 'dataselect[ray]'") from exc
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)  # fmt: skip
        try:
            task = ray.remote(_shard_task)
            stage_ref = ray.put(work.stage)
            refs = {
                s.index: task.remote(stage_ref, s, str(work.paths[s.index])) for s in work.shards
            }
            yield RayJobs(ray, refs)
        finally:
            if started_here:
                ray.shutdown()


class RayJobs:
    counts_rows = False

    def __init__(self, ray: Any, refs: dict[int, Any]) -> None:
        self.ray, self.refs = ray, refs

    def result(self, index: int) -> tuple[int, float]:
        """The task's rows and seconds; a task's own error (bad data, a bug) is raised as
        itself."""
        try:
            rows, seconds = self.ray.get(self.refs[index])
            return int(rows), float(seconds)
        except self.ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else None
            if cause is not None:
                raise cause from None
            raise

    def cancel(self) -> None:
        """Cancel the tasks not yet finished. (Only those: cancelling a task whose reply is
        arriving can crash Ray 2.x's driver on a RAY_CHECK, ray-project/ray#54798, and then
        the run's one-line error is never printed. Skipping the finished ones narrows that
        window to the tasks finishing at this very moment.)"""
        refs = list(self.refs.values())
        _, running = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in running:
            self.ray.cancel(ref, force=True)
        self.ray.wait(refs, num_returns=len(refs), timeout=30)
