"""One writer per stage folder, readers share it: an advisory lock on the folder itself.

A run that writes OUTPUT holds an exclusive ``flock`` on the folder (its directory, opened
read-only), for as long as it writes; a stage reading an input stage folder holds a shared
one while it reads. The kernel drops a lock when its process dies, so a SIGKILLed run never
leaves a stale lock. The writer also leaves its pid and command in ``.dataselect-writer``,
so a refused second writer can say who holds the folder (a leftover of a killed run names a
dead process and is replaced by the next writer).

A run that finds the folder locked refuses at once (exit 2), or waits up to ``--wait``
seconds (``waiting``). Locks are per process and re-entrant: `refine` and `run` hold the
lock of a folder while the stage they call takes it again.

``flock`` is reliable on local disks. On NFS, Linux emulates it with byte-range locks, which
work when the NFS server supports locking (NFSv4, or v3 with lockd); without it, each node
only sees its own locks.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dataselect.errors import DataError, UsageError

HOLDER = ".dataselect-writer"  # the pid and command of the run writing the folder
POLL_SECONDS = 0.2


@dataclass
class _Held:
    fd: int
    exclusive: bool
    count: int


_held: dict[Path, _Held] = {}  # folders this process holds, by resolved path
_wait_seconds = 0.0  # how long to wait for a lock (``waiting``)


@contextmanager
def waiting(seconds: float) -> Iterator[None]:
    """Wait up to ``seconds`` for a locked folder instead of refusing at once (``--wait``;
    float("inf"): as long as it takes)."""
    global _wait_seconds
    if seconds < 0:
        raise UsageError("--wait must be 0 or more seconds")
    previous, _wait_seconds = _wait_seconds, seconds
    try:
        yield
    finally:
        _wait_seconds = previous


@contextmanager
def writing(folder: str | Path) -> Iterator[None]:
    """Hold ``folder`` (which must exist) exclusively: no other run writes or reads it."""
    with _locked(Path(folder), exclusive=True):
        yield


@contextmanager
def reading(folders: list[Path]) -> Iterator[None]:
    """Hold each existing folder of ``folders`` shared: no run replaces it while it is read."""
    if not folders:
        yield
        return
    head, *rest = folders
    if not head.is_dir():
        with reading(rest):
            yield
        return
    with _locked(head, exclusive=False), reading(rest):
        yield


@contextmanager
def _locked(folder: Path, exclusive: bool) -> Iterator[None]:
    key = folder.resolve()
    held = _held.get(key)
    if held is not None and (held.exclusive or not exclusive):
        held.count += 1  # this process holds it already (refine, run; OUTPUT read back)
        try:
            yield
        finally:
            held.count -= 1
        return
    if held is not None:
        raise UsageError(f"{folder}: read and written by the same run")
    fd = _acquire(folder, exclusive)
    _held[key] = _Held(fd, exclusive, 1)
    try:
        if exclusive:
            _write_holder(folder)
        yield
    finally:
        del _held[key]
        if exclusive:
            (folder / HOLDER).unlink(missing_ok=True)
        os.close(fd)  # releases the lock


def _acquire(folder: Path, exclusive: bool) -> int:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise DataError(f"{folder}: cannot open the folder ({exc.strerror})") from exc
    mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + _wait_seconds
    said = False
    while True:
        try:
            fcntl.flock(fd, mode)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise _busy(folder, exclusive) from None
            if not said:
                print(f"dataselect: waiting for {_who(folder)} to finish with {folder}",
                      file=sys.stderr, flush=True)  # fmt: skip
                said = True
            time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        except OSError as exc:
            os.close(fd)
            raise DataError(f"{folder}: cannot lock the folder ({exc.strerror})") from exc


def _busy(folder: Path, exclusive: bool) -> UsageError:
    what = "uses" if exclusive else "is writing"
    return UsageError(
        f"{folder}: another run {what} this folder ({_who(folder)}); rerun when it is done, "
        "or pass --wait SECONDS"
    )


def _who(folder: Path) -> str:
    """The writer named in the folder's holder file, when it is alive (else: a reader, who
    leaves no name; a killed writer's leftover names a dead process)."""
    try:
        holder = json.loads((folder / HOLDER).read_text())
        pid = int(holder["pid"])
        os.kill(pid, 0)
        return f"pid {pid}: {holder['command']}"
    except (OSError, ValueError, KeyError, TypeError):  # ProcessLookupError: a dead writer
        return "a run reading it"


def _write_holder(folder: Path) -> None:
    """Who holds the folder, for a refused run's message (replaced atomically: a killed
    writer's leftover may be there)."""
    holder = {"pid": os.getpid(), "command": " ".join(["dataselect", *sys.argv[1:]])[:300]}
    tmp = folder / f"{HOLDER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(holder))
    os.replace(tmp, folder / HOLDER)
