"""The `_manifest.json` of a stage folder: what made it, from what, and which shards are done.

A rerun compares its identity (stage, tool version, parameters, input fingerprint) with the
manifest's: equal means finished shards can be skipped, different means the folder holds
someone else's result and is refused unless --overwrite.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dataselect.errors import DataError
from dataselect.io.atomic import write_bytes_atomic

MANIFEST_NAME = "_manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    stage: str
    version: str
    params: dict[str, Any]
    input: dict[str, Any]
    shards: list[dict[str, Any]] = field(default_factory=list)
    shards_total: int = 0  # shards this run writes (so `inspect` can tell how far it got)
    complete: bool = False
    rows: int = 0
    outputs: dict[str, Any] = field(default_factory=dict)
    # files beside the shards (centroids, models, tables): name -> {file, bytes, sha256},
    # file relative to the folder (io/folder_state.artifact_file)
    artifacts: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    finished: str = ""
    seconds: float = 0.0  # the sum of the shards' seconds
    # wall clock of the run that completed the folder: fits, selections, reductions and
    # shards (0 in folders made before it was recorded)
    run_seconds: float = 0.0
    format_version: int = FORMAT_VERSION

    def identity(self) -> dict[str, Any]:
        """What must match for a rerun to reuse this folder's shards."""
        return {
            "stage": self.stage,
            "version": self.version,
            "params": self.params,
            "input": self.input.get("fingerprint"),
        }

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    def write(self, folder: Path) -> None:
        write_bytes_atomic(folder / MANIFEST_NAME, self.to_json())


# the type each field must have (a hand-edited or foreign manifest is refused, not trusted)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "stage": str,
    "version": str,
    "params": dict,
    "input": dict,
    "shards": list,
    "shards_total": int,
    "complete": bool,
    "rows": int,
    "outputs": dict,
    "artifacts": dict,
    "started": str,
    "finished": str,
    "seconds": (int, float),
    "run_seconds": (int, float),
    "format_version": int,
}


def read_manifest(folder: str | Path) -> Manifest:
    path = Path(folder) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: not a dataselect stage folder (no {MANIFEST_NAME})") from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise DataError(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: unreadable manifest (a JSON object expected, got "
                        f"{type(data).__name__})")  # fmt: skip
    for name in ("stage", "version", "params", "input"):
        if name not in data:
            raise DataError(f"{path}: unreadable manifest (no '{name}')")
    for name, kind in _FIELD_TYPES.items():
        value = data.get(name)
        wrong_bool = isinstance(value, bool) and kind is not bool  # True is an int to Python
        if name in data and (wrong_bool or not isinstance(value, kind)):
            raise DataError(f"{path}: unreadable manifest ('{name}' is {json.dumps(value)[:40]})")
    known = {name for name in Manifest.__dataclass_fields__}
    return Manifest(**{key: value for key, value in data.items() if key in known})


def stage_seconds(manifest: Manifest) -> dict[str, float]:
    """A stage's timings, one source for `inspect` and `report`: ``wall_seconds``, the
    wall clock of the run that completed it (the fit included), and ``shard_seconds``, the
    sum of its shards' times. Folders from before ``run_seconds`` was recorded give
    finished - started (it also counts any pause before a resume)."""
    wall = float(manifest.run_seconds)
    if not wall and manifest.started and manifest.finished:
        try:
            started = datetime.fromisoformat(manifest.started)
            finished = datetime.fromisoformat(manifest.finished)
            wall = max(float(manifest.seconds), (finished - started).total_seconds())
        except ValueError:
            wall = float(manifest.seconds)
    return {"wall_seconds": round(wall, 3), "shard_seconds": round(float(manifest.seconds), 3)}


def describe_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable list of what differs between two identities (for the refusal line)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        name = f"{prefix}{key}"
        if name == "input":
            out.append("input data changed")
        elif isinstance(a, dict) and isinstance(b, dict):
            out.extend(describe_differences(a, b, prefix=f"{name}."))
        else:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out
