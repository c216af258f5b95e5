"""Engines run a stage's per-shard code over the shards: in this process, threads or worker
processes (local), or as Ray tasks (ray). All call the same code and publish through the same
``publish_in_order``, so their outputs are byte-identical.

The engine is chosen around the stage calls, not by each stage::

    from dataselect.engine import use_engine
    with use_engine("ray", address="auto"):
        embed("data/", "runs/embed")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dataselect.engine.base import Engine, SchedulingTraits
from dataselect.errors import UsageError

ENGINES = ("local", "ray")
AUTO = 0  # workers: as many processes as pay off (see ``resolve_workers``)
AUTO_MIN_ROWS = 200_000  # below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class EngineChoice:
    name: str = "local"
    address: str | None = None  # ray: a cluster address; None starts a local Ray instance
    workers: int = 1  # local: processes running shards side by side (1: this process; 0: auto)


def parse_workers(value: int | str) -> int:
    """``--workers``: a process count, or "auto" (``AUTO``)."""
    if str(value).strip().lower() == "auto":
        return AUTO
    try:
        workers = int(value)
    except ValueError:
        raise UsageError(f"--workers must be a number or 'auto', not {value!r}") from None
    if workers < 1:
        raise UsageError("--workers must be at least 1 (or 'auto')")
    return workers


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int, traits: SchedulingTraits, shards: int, rows: int) -> int:
    """The processes (or threads) to run ``shards`` shards (``rows`` rows) of a stage in.

    auto: one per usable core (at most one per shard), except when the stage's per-shard
    code already keeps every core busy (MiniLM's torch, FAISS's assignment: several
    processes would only split the same cores and each load the model) or the work is too
    small to pay for starting processes (under ``AUTO_MIN_ROWS`` rows, or one shard).
    """
    if workers != AUTO:
        return workers
    if traits.uses_every_core or shards < 2 or rows < AUTO_MIN_ROWS:
        return 1
    return max(1, min(usable_cores(), shards))


def engine_for(
    choice: EngineChoice, traits: SchedulingTraits, shards: int, rows: int
) -> tuple[Engine, str | None]:
    """The engine that runs ``shards`` shards (``rows`` rows) of a stage with ``traits``,
    and a log line saying how, when it runs them side by side."""
    from dataselect.engine.local import InProcessEngine, PoolEngine

    if choice.name == "ray":
        from dataselect.engine.ray import RayEngine

        return RayEngine(choice.address), None
    workers = resolve_workers(choice.workers, traits, shards, rows)
    if workers <= 1:
        return InProcessEngine(), None
    kind = "threads" if traits.shards_in_threads else "processes"
    return PoolEngine(
        workers, traits.shards_in_threads
    ), f"{shards} shards in {workers} worker {kind}"


_current = EngineChoice()


def current_engine() -> EngineChoice:
    return _current


@contextmanager
def use_engine(
    name: str = "local", address: str | None = None, workers: int | str = 1
) -> Iterator[EngineChoice]:
    """Run the stages called inside on this engine (``workers``: a count or "auto")."""
    global _current
    if name not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}")
    if address is not None and name != "ray":
        raise UsageError("--ray-address needs --engine ray")
    workers = parse_workers(workers)
    if workers > 1 and name != "local":
        raise UsageError("--workers is for --engine local")
    previous, _current = _current, EngineChoice(name, address, workers)
    try:
        yield _current
    finally:
        _current = previous
