"""What a stage folder (or a run folder of stage folders) holds, read from its manifest.

For the person who finds a folder left by a cron job: which stage made it, with which
parameters, from which input, whether it is complete (or how far an interrupted run got),
its shards, rows, columns and side files. Reads manifests, markers and Parquet footers only,
so it is instant on any size; ``verify`` also recomputes every shard's checksum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import DataError, UsageError
from dataselect.io.folder_state import MARKER_DIR, FolderState
from dataselect.manifest import MANIFEST_NAME, read_manifest, stage_seconds

PIPELINE_ORDER = ("embed", "cluster", "score", "dedup", "sample")


def stage_folders(folder: Path) -> list[Path]:
    """The stage folders of a run folder (its subfolders with a manifest), in pipeline order."""
    found = [p for p in sorted(folder.iterdir()) if (p / MANIFEST_NAME).is_file()]

    def order(path: Path) -> tuple[int, str]:
        stage = read_manifest(path).stage
        rank = PIPELINE_ORDER.index(stage) if stage in PIPELINE_ORDER else len(PIPELINE_ORDER)
        return rank, path.name

    return sorted(found, key=order)


def describe(path: str | Path, verify: bool = False) -> dict[str, Any]:
    """A stage folder's description, or a run folder's (one description per stage)."""
    folder = Path(path)
    if not folder.exists():
        raise UsageError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    if (folder / MANIFEST_NAME).exists():
        return describe_stage(folder, verify)
    stages = stage_folders(folder)
    if not stages:
        raise DataError(
            f"{folder}: not a dataselect stage or run folder (no {MANIFEST_NAME} "
            "in it or its subfolders)"
        )
    return {
        "folder": str(folder),
        "kind": "run",
        "stages": [describe_stage(p, verify) for p in stages],
    }


def describe_stage(folder: Path, verify: bool = False) -> dict[str, Any]:
    state = FolderState.read(folder, verify="checksum" if verify else "size")
    manifest = state.manifest
    assert manifest is not None
    shards = state.claimed
    problems = list(state.problems)
    columns = {name: "" for name in manifest.outputs.get("columns", [])}
    for record in shards:  # the types from the first readable shard's footer
        part = folder / str(record["file"])
        if any(problem.startswith(part.name) for problem in problems) or not part.exists():
            continue
        try:
            columns = {f.name: str(f.type) for f in pq.read_schema(part)}
        except (OSError, pa.ArrowException):
            problems.append(f"{part.name} is not readable Parquet")
            continue
        break
    artifacts = sorted(str(r.get("file")) for r in state.artifacts.values())
    known = {MANIFEST_NAME, MARKER_DIR, *(str(r["file"]) for r in shards)}
    known |= {file.split("/")[0] for file in artifacts}
    others = artifacts + sorted(
        p.name for p in folder.iterdir() if p.name not in known and not p.name.startswith(".")
    )
    expected = manifest.shards_total or None
    return {
        "folder": str(folder),
        "kind": "stage",
        "stage": manifest.stage,
        "version": manifest.version,
        "complete": manifest.complete and not problems,
        "status": _status(manifest.complete, len(shards), expected, problems),
        "input": manifest.input.get("path"),
        "input_format": manifest.input.get("format"),
        "params": manifest.params,
        "started": manifest.started,
        "finished": manifest.finished,
        # the sum of the shards' times; wall_seconds: the run that completed it, fit included
        "seconds": manifest.seconds
        if manifest.complete
        else round(sum(float(r.get("seconds", 0)) for r in shards), 3),
        "wall_seconds": stage_seconds(manifest)["wall_seconds"] if manifest.complete else None,
        "shards": len(shards),
        "rows": sum(int(r["rows"]) for r in shards),
        "bytes": sum(int(r["bytes"]) for r in shards),
        "columns": columns,
        "files": others,
        "facts": {k: v for k, v in manifest.outputs.items() if _short(v) and k != "columns"},
        "problems": problems,
        "verified": verify,
    }


def _status(complete: bool, shards: int, expected: int | None, problems: list[str]) -> str:
    if problems:
        return "damaged: " + "; ".join(problems[:3]) + " (rerun the stage to repair)"
    if complete:
        return "complete"
    of = f" of {expected}" if expected else ""
    return f"incomplete: {shards}{of} shards done (interrupted or still running; rerun to resume)"


def _short(value: Any) -> bool:
    """Facts small enough for a summary (not per-cluster tables or round histories)."""
    if isinstance(value, dict):
        return len(value) <= 8 and all(not isinstance(v, (dict, list)) for v in value.values())
    return not isinstance(value, list)


def format_description(info: dict[str, Any]) -> str:
    """The description as the lines `dataselect inspect` prints."""
    if info["kind"] == "run":
        parts = [f"run folder {info['folder']}: {len(info['stages'])} stages", ""]
        for stage in info["stages"]:
            parts += [format_description(stage), ""]
        return "\n".join(parts).rstrip()
    mb = info["bytes"] / 1e6
    lines = [
        f"{info['folder']}: {info['stage']} stage (dataselect {info['version']})",
        f"  status:   {info['status']}",
        f"  input:    {info['input']} ({info['input_format']})",
        f"  shards:   {info['shards']:,}, rows {info['rows']:,}, {mb:,.1f} MB"
        + (f", {info['wall_seconds']:,.1f} s wall" if info.get("wall_seconds") else "")
        + (f", {info['seconds']:,.1f} s in shards" if info["seconds"] else ""),
        f"  made:     {info['started'] or '?'} -> {info['finished'] or 'not finished'}",
        "  columns:  " + ", ".join(f"{k} ({v})" if v else k for k, v in info["columns"].items()),
        "  params:   "
        + ", ".join(
            f"{k}={_value(v)}"
            for k, v in sorted(info["params"].items())
            if v not in (None, (), [], "")
        ),
    ]
    if info["files"]:
        lines.append("  files:    " + ", ".join(info["files"]))
    if info["facts"]:
        lines.append(
            "  facts:    " + ", ".join(f"{k}={_value(v)}" for k, v in sorted(info["facts"].items()))
        )
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ",".join(_value(v) for v in value) if len(value) <= 6 else f"[{len(value)} items]"
    return str(value)
