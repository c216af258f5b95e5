"""What every scorer is: the fields it reads, the columns it writes, a fit (a reduction run
once before the shards, its result kept as an artifact so a resumed run reuses it) and a
pure per-batch score."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from dataselect.io.output import StageOutput
from dataselect.scoring.rows import RowReader, Rows


class Scorer(Protocol):
    name: str
    needs: tuple[str, ...]  # fields of Rows: text, embedding, label, cluster
    columns: tuple[str, ...]  # raw columns read as they are
    artifacts: tuple[str, ...]

    def fields(self) -> list[pa.Field]:
        """The output columns, score_<name> first."""
        ...

    def params(self) -> dict[str, Any]:
        """What decides this scorer's bytes (compared on resume)."""
        ...

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        """Fit (or reload from ``output``) the scorer's model; returns facts."""
        ...

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        """The output columns for one batch of rows."""
        ...


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and bytes), for resume identity."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def save_arrays(output: StageOutput, name: str, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    output.write_artifact(name, buffer.getvalue())


def saved_arrays(output: StageOutput, name: str) -> dict[str, np.ndarray] | None:
    """A model this output folder already holds (a resumed run), or None."""
    path = output.folder / name
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def column_name(scorer: str) -> str:
    return "score_" + scorer.replace("-", "_")
