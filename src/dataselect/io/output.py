"""A stage's output folder: resume, refuse foreign data, atomic shards, manifest last.

Layout while running (``FolderState`` reads it)::

    OUTPUT/_manifest.json          complete: false, the run's identity (written first)
    OUTPUT/_shards/part-00003.json one marker per finished shard (rows, sha256, seconds)
    OUTPUT/part-00003.parquet      finished shards (renamed into place, then marked)
    OUTPUT/__artifacts__/centroids.npy an artifact (JSON ones: OUTPUT/_NAME.json)
    OUTPUT/_shards/artifact-centroids.npy.json   one marker per artifact (bytes, sha256)

When every shard is done the manifest is rewritten with all shard and artifact records and
complete: true, and the markers are removed. A shard or artifact counts as done only when
its marker exists and the file's size and SHA-256 match it, so a crash at any moment is
resumable, and a resumed run never reuses a swapped or truncated fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dataselect.errors import DataError, UsageError
from dataselect.io.atomic import (
    commit,
    fsync_dir,
    sweep_temporaries,
    temporary_path,
    write_bytes_atomic,
)
from dataselect.io.checksums import file_digests
from dataselect.io.folder_state import (
    ARTIFACT_DIR,
    MARKER_DIR,
    FolderState,
    artifact_file,
    artifact_marker_name,
    marker_name,
    shard_name,
)
from dataselect.io.lock import writing
from dataselect.manifest import MANIFEST_NAME, Manifest

ASIDE_PREFIX = ".replaced-"  # an output being replaced (--overwrite), until the new one is done


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StageOutput:
    """Owns one output folder for one run of one stage: decides with ``FolderState`` what to
    keep, then writes shards, artifacts and the manifest."""

    def __init__(
        self,
        folder: str | Path,
        manifest: Manifest,
        num_shards: int,
        overwrite: bool | str = False,
        artifacts: tuple[str, ...] = (),
    ) -> None:
        self.folder = Path(folder)
        self.manifest = manifest
        self.manifest.shards_total = num_shards
        self.num_shards = num_shards
        # True: replace whatever is there. "stale": replace only this stage's output made
        # with other settings or input (how `dataselect run` refreshes a changed stage).
        self.overwrite = overwrite
        self.artifacts = artifacts
        self.done: dict[int, dict[str, Any]] = {}
        self.artifacts_done: dict[str, dict[str, Any]] = {}  # verified or written by this run
        self._written: list[Path] = []
        self._created_folder = False
        self._wrote_manifest = False
        self._set_aside: Path | None = None
        self._lock = ExitStack()  # the folder's writer lock, held until finalize or rollback
        self.already_complete = False
        self.replaced = ""  # a replaced output: what differed ("" when the same or none)

    # -- setup -------------------------------------------------------------------------
    def prepare(self) -> dict[int, dict[str, Any]]:
        """Lock the folder, check it, sweep leftovers, and return the shards already done.
        A refusal leaves the folder as it was (and removes it if this run made it)."""
        try:
            self._prepare()
        except OSError as exc:
            self.rollback()
            raise DataError(f"{self.folder}: cannot write here ({exc.strerror or exc})") from exc
        except BaseException:
            self.rollback()
            raise
        return self.done

    def _prepare(self) -> None:
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"{self.folder}: exists and is not a folder")
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            self._created_folder = True
        self._lock.enter_context(writing(self.folder))  # one writer at a time (io/lock.py)
        state = FolderState.read(self.folder, self.manifest, self.overwrite, verify="checksum")
        if state.action == "refuse":
            raise state.refusal()
        files = [artifact_file(name) for name in self.artifacts]
        sweep_temporaries(self.folder, ["part-?????.parquet", MANIFEST_NAME, *files])
        sweep_temporaries(self.folder / ARTIFACT_DIR, ["*"])
        sweep_temporaries(self.folder / MARKER_DIR, ["part-?????.json", artifact_marker_name("*")])
        self.done = dict(state.done)
        self.artifacts_done = dict(state.artifacts)
        if self.overwrite is True or state.action == "replace":
            self._set_aside_own_files()
            if state.action == "replace" and state.manifest is not None:
                self.replaced = state.message or "--overwrite"
        self._run_started = time.perf_counter()
        existing = state.manifest
        resuming = state.action in ("resume", "skip")
        self.manifest.started = existing.started if resuming and existing else now_iso()
        if state.action == "skip":
            assert existing is not None
            self.already_complete = True
            self.manifest = existing
            self._drop_finished_leftovers()  # a run killed after its manifest, before these
            return
        in_progress = Manifest(**{**self.manifest.__dict__, "shards": [], "complete": False})
        in_progress.write(self.folder)
        self._wrote_manifest = not resuming
        for record in self.done.values():  # shards kept from a complete run need markers now
            self._write_marker(record)
        for name, record in self.artifacts_done.items():
            self._write_marker(record, artifact_marker_name(name))

    def _set_aside_own_files(self) -> None:
        """Move the output being replaced into a hidden folder: a failed run puts it back
        (earlier valid output untouched), a finished one deletes it."""
        top_level = {artifact_file(name) for name in self.artifacts} | set(self.artifacts)
        names = [MANIFEST_NAME, MARKER_DIR, ARTIFACT_DIR, *sorted(top_level)]  # bare: before 0.2
        own = [*self.folder.glob("part-*.parquet")]
        own += [self.folder / name for name in names if "/" not in name]
        own = [path for path in own if path.exists()]
        if not own:
            return
        aside = self.folder / f"{ASIDE_PREFIX}{os.getpid()}"
        aside.mkdir()
        self._set_aside = aside
        manifest = self.folder / MANIFEST_NAME
        if manifest in own:  # first, so a crash never leaves old parts under a new manifest
            os.replace(manifest, aside / MANIFEST_NAME)
        for path in own:
            if path != manifest:
                os.replace(path, aside / path.name)
        fsync_dir(self.folder)

    def _restore_set_aside(self) -> None:
        if self._set_aside is None:
            return
        for path in sorted(self._set_aside.iterdir(), key=lambda p: p.name == MANIFEST_NAME):
            target = self.folder / path.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(path, target)  # the manifest last
        self._set_aside.rmdir()
        self._set_aside = None
        fsync_dir(self.folder)

    # -- shards ------------------------------------------------------------------------
    def is_done(self, index: int) -> bool:
        return index in self.done

    def temporary_shard_path(self, index: int) -> Path:
        """Where shard ``index`` is written before it is published (hidden, swept on rerun)."""
        return temporary_path(self.folder / shard_name(index))

    def write_shard(
        self,
        index: int,
        produce: Callable[[], tuple[int, float]],
        source: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run ``produce()``, which writes the shard at ``temporary_shard_path(index)`` and
        returns its rows and seconds, then publish the file and its marker atomically."""
        final = self.folder / shard_name(index)
        tmp = self.temporary_shard_path(index)
        try:
            rows, seconds = produce()
            commit(tmp, final)
            self._written.append(final)
            record = {
                "index": index,
                "file": final.name,
                "rows": rows,
                "bytes": final.stat().st_size,
                **file_digests(final),  # sha256 (identity), xxh3_128 (checked when read)
                "seconds": round(seconds, 3),
            }
            if source is not None:
                record["source"] = source
            self._written.append(self._write_marker(record))
        except OSError as exc:
            raise DataError(f"{final}: cannot write ({exc.strerror or exc})") from exc
        finally:
            if tmp.exists():
                tmp.unlink()
        self.done[index] = record
        return record

    def write_artifact(self, name: str, data: bytes) -> Path:
        """Write a stage-level file (centroids, tables) atomically, then its marker (size,
        SHA-256), before the manifest."""
        file = artifact_file(name)
        path = self.folder / file
        record = {"file": file, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        try:
            if not path.parent.exists():
                path.parent.mkdir()
                self._written.append(path.parent)  # made by this run: removed on rollback
            write_bytes_atomic(path, data)
            self._written.append(path)
            self._written.append(self._write_marker(record, artifact_marker_name(name)))
        except OSError as exc:
            raise DataError(f"{path}: cannot write ({exc.strerror or exc})") from exc
        self.artifacts_done[name] = record
        return path

    def saved_artifact(self, name: str) -> Path | None:
        """Artifact ``name`` as a resumed run finds it: only one whose size and SHA-256 match
        what the run that wrote it recorded (``FolderState``); None means make it anew."""
        record = self.artifacts_done.get(name)
        return None if record is None else self.folder / str(record["file"])

    def _write_marker(self, record: dict[str, Any], name: str | None = None) -> Path:
        markers = self.folder / MARKER_DIR
        markers.mkdir(exist_ok=True)
        marker = markers / (name or marker_name(int(record["index"])))
        write_bytes_atomic(marker, json.dumps(record, sort_keys=True).encode())
        return marker

    # -- end ---------------------------------------------------------------------------
    def finalize(self, outputs: dict[str, Any] | None = None) -> Manifest:
        """Write the complete manifest (last), then drop the progress markers."""
        if self.already_complete:
            self._lock.close()
            return self.manifest
        missing = [i for i in range(self.num_shards) if i not in self.done]
        if missing:
            raise DataError(f"{self.folder}: shards {missing[:5]} were not written")
        manifest = self.manifest
        manifest.shards = [self.done[i] for i in range(self.num_shards)]
        manifest.rows = sum(int(r["rows"]) for r in manifest.shards)
        manifest.complete = True
        manifest.outputs = {**manifest.outputs, **(outputs or {})}
        manifest.artifacts = dict(sorted(self.artifacts_done.items()))
        manifest.finished = now_iso()
        manifest.seconds = round(sum(float(r["seconds"]) for r in manifest.shards), 3)
        manifest.run_seconds = round(time.perf_counter() - self._run_started, 3)
        try:
            manifest.write(self.folder)
        except OSError as exc:
            raise DataError(f"{self.folder}: cannot write the manifest ({exc})") from exc
        self._drop_finished_leftovers()
        self._set_aside = None
        self._lock.close()
        return manifest

    def _drop_finished_leftovers(self) -> None:
        """Once the complete manifest is written: the progress markers and the replaced
        output (set aside) are obsolete. (Under the lock: no other run is using them.)"""
        shutil.rmtree(self.folder / MARKER_DIR, ignore_errors=True)
        for aside in self.folder.glob(f"{ASIDE_PREFIX}*"):
            shutil.rmtree(aside, ignore_errors=True)

    def release(self) -> None:
        """Let go of the folder without undoing anything (Ctrl-C, SIGTERM: finished shards
        stay for the rerun)."""
        self._lock.close()

    def rollback(self) -> None:
        """Undo this invocation's writes after an error (a crash keeps them for resume)."""
        for path in reversed(self._written):  # files, then the folders made for them
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self._wrote_manifest:
            (self.folder / MANIFEST_NAME).unlink(missing_ok=True)
            shutil.rmtree(self.folder / MARKER_DIR, ignore_errors=True)
        self._restore_set_aside()
        self._lock.close()
        if self._created_folder and self.folder.exists() and not any(self.folder.iterdir()):
            self.folder.rmdir()
