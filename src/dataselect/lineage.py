"""Where a stage folder's rows come from, found by following the manifests back.

Per-row stages keep shards and row order (input shard i -> output part i), so row r of part
i of a cluster or score folder is row r of part i of its embed folder and row r of shard i
of the source data (cut with the embed stage's --shard-rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dataselect.errors import DataError
from dataselect.io.sources import InputDataset, check_source, open_input
from dataselect.manifest import MANIFEST_NAME, Manifest, read_manifest


@dataclass
class Lineage:
    """The embed folder and the source data behind a stage folder (and its cluster folder,
    when one lies on the way)."""

    embed_folder: Path
    embed: Manifest
    source: InputDataset
    id_column: str | None
    cluster_folder: Path | None = None


def stage_folders_behind(path: Path) -> list[Path]:
    """``path`` and the stage folders behind it, following each manifest's input back (the
    folders a stage reading ``path`` may read); a cycle of manifests is refused."""
    folders: list[Path] = []
    while (path / MANIFEST_NAME).exists():
        if any(path.resolve() == seen.resolve() for seen in folders):
            chain = " -> ".join(str(f) for f in [*folders, path])
            raise DataError(f"{folders[0]}: its manifests' inputs form a cycle ({chain})")
        folders.append(path)
        behind = read_manifest(path).input.get("path")
        if not isinstance(behind, str) or not behind:
            break
        path = Path(behind)
    return folders


def trace_lineage(folder: Path) -> Lineage:
    cluster_folder = None
    for path in stage_folders_behind(folder):
        manifest = read_manifest(path)
        if manifest.stage == "cluster" and cluster_folder is None:
            cluster_folder = path
        if manifest.stage == "embed":
            source = open_input(manifest.input["path"], shard_rows=manifest.params["shard_rows"])
            check_source(source, manifest.input["fingerprint"], f"{path} was embedded")
            return Lineage(path, manifest, source, manifest.params.get("id_column"), cluster_folder)
    raise DataError(f"{folder}: no embed stage found by following the manifests back")
