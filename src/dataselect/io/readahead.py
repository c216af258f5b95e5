"""Read shards side by side in threads, results in order.

A Parquet row group of one column decodes on one core; pyarrow releases the GIL while it
decodes, so passes that only read (the sample stage's) run a few shards at once in threads
and consume them in shard order. At most ``ahead`` results wait unconsumed, so memory holds
a few shards' worth, not the input.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from dataselect.engine import usable_cores

Item = TypeVar("Item")
Result = TypeVar("Result")


def read_threads() -> int:
    """Threads for a read pass: one per usable core, at least 2 (reading waits on disk)."""
    return max(2, usable_cores())


def ordered_map(
    read: Callable[[Item], Result],
    items: Iterable[Item],
    threads: int | None = None,
    ahead: int | None = None,
) -> Iterator[Result]:
    """``read(item)`` for each item, run in ``threads`` threads, yielded in item order with
    at most ``ahead`` (default: ``threads``) results read ahead of the one yielded."""
    threads = threads or read_threads()
    ahead = max(1, ahead or threads)
    pending: deque[Future[Result]] = deque()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read") as pool:
        try:
            for item in items:
                pending.append(pool.submit(read, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # an error, or the caller stopped early: drop what was not started
            for future in pending:
                future.cancel()
