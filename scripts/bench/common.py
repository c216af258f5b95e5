"""Helpers shared by the benchmark scripts (run as `python scripts/bench/NAME.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results"


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
