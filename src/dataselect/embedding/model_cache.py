"""Models built on first use (the ONNX export of MiniLM, its int8 quantisation), cached.

One folder per build: its name carries a digest of what the model was built from (model
package, library versions, settings), so a change of any of them builds anew. A build
runs in a private folder beside the cache's entries and is published by one rename, after
its files' SHA-256 are written in ``_model.json``: a process killed while building leaves
only a private folder (never loaded; swept later), and processes that build at once each
publish whole or find the other's. Every load checks the files against ``_model.json``; a
damaged entry is moved aside and built again.

Where: ``--model-cache``, else ``$DATASELECT_MODEL_CACHE``, else the user's cache folder
(platformdirs: ``~/.cache/dataselect/models`` on Linux).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataselect.errors import DataselectError
from dataselect.io.atomic import fsync_dir, fsync_file
from dataselect.io.checksums import file_sha256

CACHE_ENV = "DATASELECT_MODEL_CACHE"
RECORD = "_model.json"
STALE_BUILD_SECONDS = 24 * 3600  # a private build folder this old was left by a killed run


class DamagedModel(DataselectError):
    """A cached model's files do not match their record."""


@dataclass(frozen=True)
class CachedModel:
    folder: Path
    files: dict[str, str]  # name -> SHA-256

    def path(self, name: str) -> Path:
        return self.folder / name

    def sha256(self, name: str) -> str:
        return self.files[name]


def cache_root(override: str | Path | None = None) -> Path:
    """The cache folder: ``override``, else ``$DATASELECT_MODEL_CACHE``, else the user's."""
    if override:
        return Path(override)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    import platformdirs

    return Path(platformdirs.user_cache_dir("dataselect")) / "models"


def cached_model(
    root: Path,
    name: str,
    key: dict[str, Any],
    build: Callable[[Path], None],
    log: Callable[[str], None] | None = None,
) -> CachedModel:
    """The model ``name`` made from ``key``: the verified cached copy, else ``build(folder)``
    writes its files into a private folder that is then published."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    entry = root / f"{name}-{digest}"
    if entry.exists():
        try:
            return verified(entry)
        except DamagedModel as exc:
            if log is not None:
                log(f"{exc}; building it again")
            _move_aside(entry)
    try:
        root.mkdir(parents=True, exist_ok=True)
        _sweep_stale_builds(root)
        work = Path(tempfile.mkdtemp(prefix=f".build-{name}-", dir=root))
    except OSError as exc:
        raise DataselectError(f"{root}: cannot write the model cache ({exc.strerror or exc}); "
                              "give another with --model-cache") from exc  # fmt: skip
    try:
        started = time.perf_counter()
        if log is not None:
            log(f"building {entry} (first use; kept for the next runs)")
        build(work)
        files = {p.name: file_sha256(p) for p in sorted(work.iterdir()) if p.is_file()}
        record = {"key": key, "files": files}
        (work / RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        work.chmod(0o755)  # (mkdtemp's folder is the builder's alone) shared by every process
        for path in work.iterdir():
            path.chmod(0o644)
        _fsync_folder(work)
        try:
            os.rename(work, entry)  # atomic; fails when another process published first
        except OSError:
            if not entry.exists():
                raise
        if log is not None:
            log(f"built {entry} in {time.perf_counter() - started:,.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return verified(entry)


def verified(entry: Path) -> CachedModel:
    """The cached model in ``entry``, its files checked against their recorded SHA-256."""
    try:
        record = json.loads((entry / RECORD).read_text())
        files = dict(record["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DamagedModel(f"{entry}: the cached model has no valid {RECORD}") from exc
    for file, expected in files.items():
        path = entry / file
        if not path.is_file() or file_sha256(path) != expected:
            raise DamagedModel(f"{path}: the cached model file is damaged (SHA-256 differs)")
    return CachedModel(entry, files)


def _fsync_folder(folder: Path) -> None:
    """Every file of ``folder`` and the folder itself on disk before it is published."""
    for path in folder.iterdir():
        if path.is_file():
            fsync_file(path)
    fsync_dir(folder)


def _move_aside(entry: Path) -> None:
    """A damaged entry leaves the way for a new build (removed; renamed first, so no other
    process loads it meanwhile)."""
    aside = entry.with_name(f".damaged-{entry.name}-{os.getpid()}-{time.time_ns()}")
    try:
        os.rename(entry, aside)
    except OSError:
        return  # another process moved it first
    shutil.rmtree(aside, ignore_errors=True)


def _sweep_stale_builds(root: Path) -> None:
    now = time.time()
    for path in root.glob(".build-*"):
        try:
            if now - path.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
