"""Engines run a stage's per-shard code over the shards: in this process (local) or as Ray
tasks (ray). Both call the same code, so their outputs are byte-identical.

The engine is chosen around the stage calls, not by each stage::

    from dataselect.engine import use_engine
    with use_engine("ray", address="auto"):
        embed("data/", "runs/embed")
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dataselect.errors import UsageError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineChoice:
    name: str = "local"
    address: str | None = None  # ray: a cluster address; None starts a local Ray instance
    workers: int = 1  # local: processes running shards side by side (1: this process)


_current = EngineChoice()


def current_engine() -> EngineChoice:
    return _current


@contextmanager
def use_engine(
    name: str = "local", address: str | None = None, workers: int = 1
) -> Iterator[EngineChoice]:
    """Run the stages called inside on this engine."""
    global _current
    if name not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}")
    if address is not None and name != "ray":
        raise UsageError("--ray-address needs --engine ray")
    if workers < 1 or (workers > 1 and name != "local"):
        raise UsageError("--workers must be at least 1, and is for --engine local")
    previous, _current = _current, EngineChoice(name, address, workers)
    try:
        yield _current
    finally:
        _current = previous
