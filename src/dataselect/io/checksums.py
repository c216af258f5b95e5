"""SHA-256 of files, computed once per process, and checked while a shard is read.

A stage reads an input stage folder's shards and trusts their bytes only if they match the
checksum its manifest records. Hashing is done on a helper thread while the shard's batches
are decoded (hashlib releases the GIL), so the check costs CPU but little wall time, and each
file is hashed once per process however many passes read it (the cluster stage reads its
input three times). Raw input files are fingerprinted by their full SHA-256 the same way.
"""

from __future__ import annotations

import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from dataselect.errors import DataError

_BLOCK = 1 << 22
_Key = tuple[int, int, int, int]  # device, inode, size, mtime (ns): the file's current version

_lock = threading.Lock()
_known: dict[_Key, str] = {}
_pending: dict[_Key, Future[str]] = {}
_executor: ThreadPoolExecutor | None = None


def file_sha256(path: Path) -> str:
    """The SHA-256 of ``path``, read now."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _key(path: Path) -> _Key:
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _hasher() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1),
                                       thread_name_prefix="dataselect-sha256")  # fmt: skip
    return _executor


def _remember(key: _Key, path: Path) -> str:
    digest = file_sha256(path)
    with _lock:
        _known[key] = digest
        _pending.pop(key, None)
    return digest


def sha256_later(path: Path) -> Future[str]:
    """The SHA-256 of ``path`` (this version of it), hashed on a helper thread unless this
    process has hashed it already; concurrent requests share one hashing."""
    key = _key(path)
    with _lock:
        if key in _known:
            done: Future[str] = Future()
            done.set_result(_known[key])
            return done
        if key not in _pending:
            _pending[key] = _hasher().submit(_remember, key, path)
        return _pending[key]


def start_hashing(paths: list[Path]) -> None:
    """Start hashing ``paths`` now (``cached_sha256`` then waits for each); unreadable ones
    are left for ``cached_sha256`` to report."""
    for path in paths:
        try:
            sha256_later(path)
        except OSError:
            pass


def cached_sha256(path: Path) -> str:
    """The SHA-256 of ``path``, hashed at most once per process per version of the file."""
    try:
        return sha256_later(path).result()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc


class ReadCheck:
    """The check of one file against its recorded checksum, started when its reading starts
    and finished when the reading ends: a mismatch is one DataError naming the file."""

    def __init__(self, path: Path, expected: str, what: str) -> None:
        self.path, self.expected, self.what = path, expected, what
        self.digest = sha256_later(path)

    def finish(self) -> None:
        try:
            digest = self.digest.result()
        except OSError as exc:
            raise DataError(f"{self.path}: cannot read ({exc.strerror or exc})") from exc
        if digest != self.expected:
            raise DataError(
                f"{self.path}: does not match the checksum in {self.what} (changed or damaged "
                "since it was written): rerun the stage that made it"
            )
