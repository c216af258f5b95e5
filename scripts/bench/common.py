"""Helpers shared by the benchmark scripts (run as `python scripts/bench/NAME.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results"
TIMING_KEYS = ("started", "finished", "seconds", "run_seconds")


def write_results(name: str, lines: list[str], rows: object) -> None:
    """Print a result table and keep it as results/NAME.md, with its rows as NAME.json."""
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(json.dumps(rows, indent=2) + "\n")


def embeddings_by_id(folder: Path) -> dict:
    """id -> embedding of an embed folder's parts."""
    table = pq.read_table(sorted(str(p) for p in folder.glob("part-*.parquet")))
    x = table.column("embedding").combine_chunks().flatten().to_numpy()
    return dict(zip(table.column("id").to_pylist(), x.reshape(table.num_rows, -1), strict=True))


def folder_files(folder: Path, root: Path | None = None) -> dict[str, bytes]:
    """Every visible file under ``folder`` (relative path -> bytes), to compare two runs:
    manifests without their timings, and ``root`` (default: ``folder``), the run's own
    folder, written as ROOT in them."""
    root = root or folder
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        data = path.read_bytes()
        if path.name == "_manifest.json":
            manifest = json.loads(data)
            for key in TIMING_KEYS:
                manifest.pop(key, None)
            for shard in manifest.get("shards", []):
                shard.pop("seconds", None)
            text = json.dumps(manifest, sort_keys=True, indent=1)
            data = text.replace(str(root.resolve()), "ROOT").replace(str(root), "ROOT").encode()
        files[str(relative)] = data
    return files
