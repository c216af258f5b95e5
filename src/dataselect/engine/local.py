"""The local engines: shards in this process, in threads, or in worker processes.

In this process each shard streams: the stage yields record batches and they go straight
into a Parquet writer on the shard's temporary file, so memory holds one batch, not one
shard. Side by side (``--workers N``), fresh processes are spawned (FAISS's and torch's
threads do not survive a fork), or, for a stage whose work is pyarrow's reading and writing
(it releases the GIL), threads of this process run the shards.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager

from dataselect.engine.base import ShardJobs, ShardWork, timed_shard_file

PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


class InProcessEngine:
    """Each shard in this process, when the publisher asks for it."""

    name = "local"

    @contextmanager
    def start(self, work: ShardWork) -> Iterator[ShardJobs]:
        yield InProcessJobs(work)


class InProcessJobs:
    counts_rows = True

    def __init__(self, work: ShardWork) -> None:
        self.work = work
        self.shards = {shard.index: shard for shard in work.shards}

    def result(self, index: int) -> tuple[int, float]:
        work = self.work
        return timed_shard_file(work.stage, self.shards[index], work.paths[index], work.progress)

    def cancel(self) -> None:
        return None  # nothing runs beside the publisher


class PoolEngine:
    """Shards side by side in ``workers`` threads or spawned processes."""

    name = "local"

    def __init__(self, workers: int, threads: bool) -> None:
        self.workers = workers
        self.threads = threads

    @contextmanager
    def start(self, work: ShardWork) -> Iterator[ShardJobs]:
        count = min(self.workers, max(len(work.shards), 1))
        pool: Executor = (
            ThreadPoolExecutor(count, thread_name_prefix="shard")
            if self.threads
            else ProcessPoolExecutor(
                count, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )
        )
        with pool:
            futures = {
                s.index: pool.submit(timed_shard_file, work.stage, s, work.paths[s.index])
                for s in work.shards
            }
            yield PoolJobs(pool, futures)


class PoolJobs:
    counts_rows = False

    def __init__(self, pool: Executor, futures: dict[int, Future[tuple[int, float]]]) -> None:
        self.pool, self.futures = pool, futures

    def result(self, index: int) -> tuple[int, float]:
        return self.futures[index].result()

    def cancel(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def die_with_parent() -> None:
    """A worker process is killed with the run that started it (Linux): a SIGKILLed run
    would otherwise leave its workers finishing shard files after it, beside its rerun."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the next run sweeps what they leave
        pass
