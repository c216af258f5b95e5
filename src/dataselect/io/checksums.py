"""Checksums of files, computed once per process, and the check of what a stage reads.

Every shard a stage writes is recorded with two checksums of its bytes: SHA-256, its
identity (the input fingerprint of the next stage, ``inspect --verify``), and XXH3-128, to
check it when it is read. Reading is what a stage spends its time on, and SHA-256 runs at
about 1 GB/s on a core where XXH3 runs at over 10 GB/s: checking an input by SHA-256 cost
8-25% of a read-bound stage (``scripts/bench/verify_cost.py``); XXH3 catches any accidental
change (a flipped byte, a truncation, a rewrite), which is what this check is for.

A stage trusts the shards of an input stage folder only if they match their recorded
checksums. Opening the folder registers them (``expect``); when the stage starts work they
are hashed in order on a helper thread, beside the stage's own reading and fitting; and the
stage waits for the verdict (``verify_expected``) before it declares its output complete. A
mismatch is one DataError naming the shard, and the stage's rollback removes whatever it
wrote, so nothing made from unverified bytes is ever complete. Each file is hashed once per
process, however many passes read it (the cluster stage reads its input three times), and
by the process that opened it, whichever engine reads the shards. Raw input files are
fingerprinted (both checksums, in one pass) through the same cache.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from dataselect.errors import DataError

SHA256, XXH3 = "sha256", "xxh3_128"  # the names of the checksums in records
ALGORITHMS: dict[str, Callable[[], Any]] = {SHA256: hashlib.sha256, XXH3: xxhash.xxh3_128}
_Key = tuple[int, int, int, int]  # device, inode, size, mtime (ns): the file's current version
_Job = tuple[_Key, tuple[str, ...]]  # a file version and the checksums wanted of it

_lock = threading.Lock()
_known: dict[_Job, dict[str, str]] = {}
_pending: dict[_Job, Future[dict[str, str]]] = {}
_executor: ThreadPoolExecutor | None = None


def file_digests(path: Path, algorithms: tuple[str, ...] = (SHA256, XXH3)) -> dict[str, str]:
    """The checksums of ``path`` (name -> hex digest), read now. The file is mapped, not
    read into buffers: copying the bytes cost twice as long as XXH3 over them."""
    digests = {name: ALGORITHMS[name]() for name in algorithms}
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size:  # (an empty file cannot be mapped)
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                for digest in digests.values():
                    digest.update(view)
    return {name: digest.hexdigest() for name, digest in digests.items()}


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``, read now."""
    return file_digests(path, (SHA256,))[SHA256]


def _key(path: Path) -> _Key:
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _hasher() -> ThreadPoolExecutor:
    """One helper thread: it takes a core's share from the stage at most, and the files
    are hashed in the order they are read."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataselect-hash")
    return _executor


def _remember(job: _Job, path: Path) -> dict[str, str]:
    digests = file_digests(path, job[1])
    with _lock:
        _known[job] = digests
        _pending.pop(job, None)
    return digests


def digests_later(
    path: Path, algorithms: tuple[str, ...] = (SHA256, XXH3)
) -> Future[dict[str, str]]:
    """The checksums of ``path`` (this version of it), hashed on the helper thread unless
    this process has hashed it already; concurrent requests share one hashing."""
    job = (_key(path), algorithms)
    with _lock:
        if job in _known:
            done: Future[dict[str, str]] = Future()
            done.set_result(_known[job])
            return done
        if job not in _pending:
            _pending[job] = _hasher().submit(_remember, job, path)
        return _pending[job]


def cached_digests(path: Path, algorithms: tuple[str, ...] = (SHA256, XXH3)) -> dict[str, str]:
    """The checksums of ``path``, hashed at most once per process per version of the file."""
    try:
        return digests_later(path, algorithms).result()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def start_hashing(paths: list[Path], algorithms: tuple[str, ...] = (SHA256, XXH3)) -> None:
    """Queue ``paths`` for hashing now (``cached_digests`` then waits for each); unreadable
    ones are left for ``cached_digests`` to report."""
    for path in paths:
        try:
            digests_later(path, algorithms)
        except OSError:
            pass


def checksum_of(record: dict[str, Any]) -> tuple[str, str]:
    """The checksum to check a recorded file by: XXH3 when recorded (fast), else SHA-256
    (records written before XXH3 was)."""
    if isinstance(record.get(XXH3), str):
        return XXH3, str(record[XXH3])
    return SHA256, str(record[SHA256])


@dataclass
class _Register:
    """The files one reading (a stage, `eval`, the report) must verify: path -> (checksum
    name, recorded value, the error if it differs), and those already queued."""

    expected: dict[Path, tuple[str, str, str]] = field(default_factory=dict)
    started: set[Path] = field(default_factory=set)


_scopes = threading.local()  # per thread: the stack of open registers


def _register() -> _Register | None:
    stack = getattr(_scopes, "stack", None)
    return stack[-1] if stack else None


@contextmanager
def checking() -> Iterator[None]:
    """A reading whose input stage folders are verified: files registered while it is open
    (``expect``) are its own; they are forgotten when it ends, however it ends."""
    stack = getattr(_scopes, "stack", None)
    if stack is None:
        stack = _scopes.stack = []
    stack.append(_Register())
    try:
        yield
    finally:
        stack.pop()


def expect(path: Path, record: dict[str, Any], mismatch: str) -> None:
    """Register that ``path`` must match the checksum in ``record`` (``mismatch``: the error
    when it does not), in the open ``checking`` scope (none open: not checked). A stage
    opening an input stage folder registers its shards; one following a folder back to its
    source data registers the files the embed stage read."""
    register = _register()
    if register is not None:
        algorithm, value = checksum_of(record)
        register.expected[path] = (algorithm, value, mismatch)


def shard_mismatch(path: Path, manifest: Path) -> str:
    return (f"{path}: does not match the checksum in {manifest} (changed or damaged since it "
            "was written): rerun the stage that made it")  # fmt: skip


def start_expected() -> None:
    """Start hashing every registered file, in order, on the helper thread: a stage calls it
    when it starts reading, so the verdicts are ready by the time it finishes."""
    register = _register()
    if register is None:
        return
    todo = [path for path in register.expected if path not in register.started]
    register.started.update(todo)
    for path in todo:
        start_hashing([path], (register.expected[path][0],))


def reading(path: Path) -> None:
    """``path`` is being read: if it is registered, start hashing the registered files.
    (Worker threads and processes have no register: the stage started them already.)"""
    register = _register()
    if register is not None and path in register.expected and path not in register.started:
        start_expected()


def verify_expected() -> None:
    """Wait for the verdict on every registered file and raise the first mismatch (one
    line naming the file); verified files leave the register. A stage calls it before its
    output is complete."""
    register = _register()
    if register is None:
        return
    for path in list(register.expected):
        _verdict(register, path)
        register.expected.pop(path, None)
        register.started.discard(path)


def discard_expected() -> None:
    """Forget the registered files (a stage that had nothing to do read none of them)."""
    register = _register()
    if register is not None:
        register.expected.clear()
        register.started.clear()


def check_read_error(path: Path) -> None:
    """After a failed read of ``path``: if it is a registered file that fails its check,
    say so (a damaged shard is named as such, not as a decoding error)."""
    register = _register()
    if register is not None and path in register.expected:
        _verdict(register, path)


def _verdict(register: _Register, path: Path) -> None:
    algorithm, value, mismatch = register.expected[path]
    if cached_digests(path, (algorithm,))[algorithm] != value:
        raise DataError(mismatch)
