"""Crash-safe file replacement: write a hidden temporary file, fsync, rename, fsync the folder.

Readers never see a half-written file: either the old one or the new one exists under the
final name. Temporary names start with '.' and end in '.tmp', so globs such as *.parquet skip
them and a rerun can sweep them away.
"""

from __future__ import annotations

import os
import re
from fnmatch import fnmatch
from pathlib import Path

TMP_SUFFIX = ".tmp"
TEMPORARY = re.compile(r"\.(.+)\.\d+" + re.escape(TMP_SUFFIX))  # .NAME.PID.tmp -> NAME


def temporary_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> None:
    """Make a finished temporary file visible under its final name."""
    fsync_file(tmp)
    os.replace(tmp, final)
    fsync_dir(final.parent)


def write_bytes_atomic(final: Path, data: bytes) -> None:
    tmp = temporary_path(final)
    try:
        tmp.write_bytes(data)
        commit(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def sweep_temporaries(folder: Path, names: list[str]) -> None:
    """Remove the temporary files crashed runs left for files named like ``names`` (glob
    patterns; call it only holding the folder's lock: then no live run is writing them), and
    nothing else, so a user's own hidden files stay."""
    for path in folder.glob(f".*{TMP_SUFFIX}"):
        ours = TEMPORARY.fullmatch(path.name)
        if ours and path.is_file() and any(fnmatch(ours.group(1), name) for name in names):
            path.unlink(missing_ok=True)
