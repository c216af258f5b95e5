"""One read-only view of a stage folder: what a run would do to it, which shards are finished
and verified, and what is wrong with it.

The stage (``StageOutput``, before it writes), the dry-run planner and ``inspect`` all read a
folder through ``FolderState.read`` and nothing else reads its markers or manifest, so a dry
run makes the checks the stage makes by construction.

A folder claims shards in its complete manifest or, while a run is unfinished, in one marker
per shard (``_shards/part-NNNNN.json``). A claimed shard is done only when its record is
well-formed and its file is there with the recorded size and SHA-256 (how far is checked is
``verify``'s choice); every other claim is a problem, and the shard is redone.

Artifacts (centroids, fitted models, tables beside the shards) are claimed the same way
(``_shards/artifact-NAME.json`` while unfinished, the manifest's ``artifacts`` when
complete). Their files have names standard Parquet readers skip (``artifact_file``): JSON
summaries as ``_NAME.json``, data files in ``__artifacts__/``, so pandas, pyarrow, DuckDB's
``*.parquet`` and ``datasets.load_dataset(FOLDER)`` read a stage folder as exactly its rows.
Folders written before keep their artifacts at the bare names their records give, and are
read as they are.

The shards were made with the artifacts, so a damaged artifact is a problem that leaves no
shard done: a resumed run refits and redoes them all rather than mix two fits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dataselect.errors import DataError, UsageError
from dataselect.io.checksums import file_sha256, shard_mismatch
from dataselect.manifest import MANIFEST_NAME, Manifest, describe_differences, read_manifest

MARKER_DIR = "_shards"
# run: a new or empty folder; resume: this run's settings, some shards done; skip: complete
# for these settings; replace: another output is there and is replaced (--overwrite, or a
# changed stage under `dataselect run`); refuse: another output is there, or foreign files
Action = Literal["run", "resume", "skip", "replace", "refuse"]
# how far a claimed shard is checked: its file is there; with the recorded size; with the
# recorded SHA-256 too (what a run does before it reuses a shard)
Verify = Literal["exists", "size", "checksum"]
RECORD_FIELDS = {"index": int, "file": str, "rows": int, "bytes": int, "sha256": str}
ARTIFACT_FIELDS = {"file": str, "bytes": int, "sha256": str}
# Data artifacts (Parquet, NumPy, models) live here: DuckDB's `*.parquet` glob takes any
# Parquet file at the top, a leading `_` or not, but none in a folder; `datasets` skips a
# folder whose name starts with `__` (and pyarrow any leading `_`).
ARTIFACT_DIR = "__artifacts__"


def artifact_file(name: str) -> str:
    """Where artifact ``name`` is kept, relative to its stage folder: a JSON summary as
    ``_NAME``, any other file as ``__artifacts__/NAME`` (both skipped by Parquet readers)."""
    return f"_{name}" if name.endswith(".json") else f"{ARTIFACT_DIR}/{name}"


def artifact_path(folder: Path, name: str) -> Path:
    """Artifact ``name`` of a stage folder: where its manifest's record says, else where this
    version writes it, else where versions before 0.2 wrote it (the bare name)."""
    record = _manifest_artifacts(folder).get(name)
    if isinstance(record, dict) and isinstance(record.get("file"), str):
        return folder / record["file"]
    current = folder / artifact_file(name)
    return current if current.exists() or not (folder / name).exists() else folder / name


def _manifest_artifacts(folder: Path) -> dict[str, Any]:
    try:
        return dict(read_manifest(folder).artifacts)
    except (DataError, UsageError):
        return {}


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def marker_name(index: int) -> str:
    """The progress marker of shard ``index`` in ``MARKER_DIR``."""
    return f"part-{index:05d}.json"


def artifact_marker_name(name: str) -> str:
    """The marker of artifact ``name`` in ``MARKER_DIR`` while a run is unfinished."""
    return f"artifact-{name}.json"


@dataclass(frozen=True)
class FolderState:
    """What is in ``folder`` and, given the manifest a run wants, what the run would do."""

    folder: Path
    manifest: Manifest | None  # the one found there (None: none, or unreadable and replaced)
    claimed: list[dict[str, Any]] = field(default_factory=list)  # shard records it claims
    done: dict[int, dict[str, Any]] = field(default_factory=dict)  # claimed and verified
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # claimed, verified
    problems: list[str] = field(default_factory=list)  # claims that are missing or damaged
    action: Action | None = None  # None: read without a run in view (inspect)
    shards_total: int = 0  # shards the run would write
    reason: str = ""  # refuse / replace: why, as the plan says it
    message: str = ""  # refuse: the error line a run stops with; replace: what changed
    foreign: list[str] = field(default_factory=list)  # visible entries, when no manifest

    @classmethod
    def read(
        cls,
        folder: str | Path,
        wanted: Manifest | None = None,
        overwrite: bool | str = False,
        verify: Verify = "checksum",
    ) -> FolderState:
        """Read ``folder`` without changing it.

        ``wanted``: the manifest a run would write (its identity decides resume or refuse);
        ``overwrite``: True replaces any output, "stale" only this stage's made with other
        settings or input (how `dataselect run` refreshes a changed stage); ``verify``: how
        far each claimed shard is checked (``Verify``).
        """
        folder = Path(folder)
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{folder}: exists and is not a folder")
        manifest = _manifest_there(folder, replaceable=overwrite is True)
        shards_total = wanted.shards_total if wanted is not None else 0
        claimed, problems = _claims(folder, manifest)
        done = _verified(folder, claimed, problems, shards_total or None, verify)
        artifact_claims = _artifact_claims(folder, manifest)
        artifacts = _verified_artifacts(folder, artifact_claims, problems, verify)
        if len(artifacts) < len(artifact_claims):
            done = {}  # made with an artifact that is gone or damaged: none is trusted
        foreign = (
            [p.name for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
            if manifest is None and folder.is_dir()
            else []
        )
        state = cls(folder, manifest, claimed, done, artifacts, problems,
                    shards_total=shards_total, foreign=foreign)  # fmt: skip
        if wanted is None:
            return state
        action, reason, message = _action(state, wanted, overwrite)
        kept = action in ("resume", "skip")
        return cls(folder, manifest, claimed, done if kept else {}, artifacts if kept else {},
                   problems, action, shards_total, reason, message, foreign)  # fmt: skip

    @property
    def complete(self) -> bool:
        """The manifest says complete and every shard it lists is there and intact."""
        return bool(self.manifest and self.manifest.complete and not self.problems)

    def rows_done(self) -> int:
        return sum(int(record["rows"]) for record in self.done.values())

    def describe(self) -> str:
        """The action as the dry run's plan line."""
        total = self.shards_total
        if self.action == "refuse":
            return f"refused: {self.reason}"
        if self.action == "replace":
            return f"replace {self.reason}: run all {total} shards"
        if self.action == "skip":
            return "skip: OUTPUT is complete for these settings"
        if self.action == "resume":
            return f"resume: {len(self.done)} of {total} shards done"
        return f"run all {total} shards"

    def refusal(self) -> UsageError:
        """The error a run stops with when the action is refuse."""
        return UsageError(f"{self.folder}: {self.message}; choose another folder or pass "
                          "--overwrite")  # fmt: skip


def _manifest_there(folder: Path, replaceable: bool) -> Manifest | None:
    """The folder's manifest; an unreadable one is an error, unless it is to be replaced."""
    if not (folder / MANIFEST_NAME).exists():
        return None
    try:
        return read_manifest(folder)
    except DataError:
        if replaceable:
            return None
        raise


def _claims(folder: Path, manifest: Manifest | None) -> tuple[list[dict[str, Any]], list[str]]:
    """The well-formed shard records the folder claims: a complete manifest's, or the
    markers of an unfinished run. Unreadable or malformed ones are problems."""
    if manifest is None:
        return [], []
    found: list[tuple[str, object]] = []
    problems: list[str] = []
    if manifest.complete:
        found = [(MANIFEST_NAME, record) for record in manifest.shards]
    else:
        for marker in sorted((folder / MARKER_DIR).glob("part-*.json")):
            try:
                found.append((f"{MARKER_DIR}/{marker.name}", json.loads(marker.read_text())))
            except (OSError, ValueError):
                problems.append(f"{MARKER_DIR}/{marker.name} is unreadable")
    claimed = []
    for where, record in found:
        if (
            isinstance(record, dict)
            and all(type(record.get(k)) is t for k, t in RECORD_FIELDS.items())
            and record["file"] == shard_name(record["index"])
            and where in (MANIFEST_NAME, f"{MARKER_DIR}/{marker_name(record['index'])}")
        ):
            claimed.append(record)
        else:
            problems.append(f"{where}: a malformed shard record ({json.dumps(record)[:60]})")
    return claimed, problems


def _artifact_claims(folder: Path, manifest: Manifest | None) -> dict[str, object]:
    """name -> the record the folder keeps for artifact ``name`` (not yet checked)."""
    if manifest is None:
        return {}
    if manifest.complete:
        return dict(manifest.artifacts)
    claims: dict[str, object] = {}
    for marker in sorted((folder / MARKER_DIR).glob(artifact_marker_name("*"))):
        name = marker.name[len("artifact-") : -len(".json")]
        try:
            claims[name] = json.loads(marker.read_text())
        except (OSError, ValueError):
            claims[name] = None
    return claims


def _verified_artifacts(
    folder: Path, claims: dict[str, object], problems: list[str], verify: Verify
) -> dict[str, dict[str, Any]]:
    """The claimed artifacts whose file is there and intact; the others go to ``problems``."""
    verified: dict[str, dict[str, Any]] = {}
    for name, record in claims.items():
        if not (
            isinstance(record, dict)
            and all(type(record.get(k)) is t for k, t in ARTIFACT_FIELDS.items())
            and record["file"] in (artifact_file(name), name)  # name: before 0.2
            and "/" not in name
        ):
            problems.append(f"{name}: a malformed artifact record")
            continue
        if _intact(folder / record["file"], record, problems, verify):
            verified[name] = record
    return verified


def _intact(path: Path, record: dict[str, Any], problems: list[str], verify: Verify) -> bool:
    """Whether ``path`` matches its record (as far as ``verify`` checks: there, its size,
    its SHA-256); what is wrong goes to ``problems``."""
    problem = ""
    if not path.exists():
        problem = f"{record['file']} is missing"
    elif verify != "exists" and path.stat().st_size != record["bytes"]:
        problem = f"{record['file']} has {path.stat().st_size:,} bytes, not {record['bytes']:,}"
    elif verify == "checksum" and file_sha256(path) != record["sha256"]:
        problem = f"{record['file']} does not match its checksum"
    if problem:
        problems.append(problem)
    return not problem


def artifact_bytes(folder: Path, name: str) -> bytes | None:
    """Artifact ``name`` of a complete stage folder, checked against the checksum its
    manifest records (folders written before artifacts were recorded: as found); None when
    the folder has no such file."""
    path = artifact_path(folder, name)
    if not path.exists():
        return None
    data = path.read_bytes()
    record = read_manifest(folder).artifacts.get(name)
    if isinstance(record, dict) and hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise DataError(shard_mismatch(path, folder / MANIFEST_NAME))
    return data


def _verified(
    folder: Path,
    claimed: list[dict[str, Any]],
    problems: list[str],
    shards_total: int | None,
    verify: Verify,
) -> dict[int, dict[str, Any]]:
    """The claimed shards whose file is there and intact; the others go to ``problems``."""
    done: dict[int, dict[str, Any]] = {}
    for record in claimed:
        index = int(record["index"])
        if shards_total is not None and not 0 <= index < shards_total:
            continue  # a shard this run does not write (the input changed): not reused
        if _intact(folder / record["file"], record, problems, verify):
            done[index] = record
    return done


def _action(state: FolderState, wanted: Manifest, overwrite: bool | str) -> tuple[Action, str, str]:
    """(action, the plan's reason, a refused run's error) for a run that wants ``wanted``."""
    existing = state.manifest
    if existing is None:
        if state.foreign and overwrite is not True:
            names = ", ".join(state.foreign[:3])
            return ("refuse", "OUTPUT is not empty and not a stage folder (--overwrite)",
                    f"not empty and not a dataselect stage folder ({names})")  # fmt: skip
        return "run", "", ""
    same_stage = existing.stage == wanted.stage
    changed = existing.identity() != wanted.identity()
    if overwrite is True or (overwrite == "stale" and same_stage and changed):
        why = "; ".join(describe_differences(existing.identity(), wanted.identity())[:3])
        return "replace", f"the {existing.stage} output there", why
    if changed:
        diffs = describe_differences(existing.identity(), wanted.identity())
        message = (
            f"holds {existing.stage} output made with different settings ({'; '.join(diffs[:3])})"
            if same_stage
            else f"holds the output of the '{existing.stage}' stage, not '{wanted.stage}'"
        )
        return ("refuse", f"OUTPUT holds other settings ({'; '.join(diffs[:2])}); --overwrite",
                message)  # fmt: skip
    if existing.complete and len(state.done) == state.shards_total and not state.problems:
        return "skip", "", ""
    return "resume", "", ""
