"""What a dedup stage dropped, for the report: counts per method and a few example pairs."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from dataselect.deduplication.stage import DUPLICATES, FACTS, METHOD_CODES
from dataselect.io.folder_state import artifact_path

PAIRS_PER_METHOD = 3


@dataclass
class DuplicatePair:
    method: str
    dropped: int  # row position
    kept: int  # the row it duplicates
    similarity: float


@dataclass
class DedupView:
    folder: Path
    dropped: dict[str, int]  # rows dropped per method
    rows_kept: int
    pairs: list[DuplicatePair] = field(default_factory=list)

    @property
    def positions(self) -> list[int]:
        return [p for pair in self.pairs for p in (pair.dropped, pair.kept)]


def dedup_view(folder: Path, keys: np.ndarray) -> DedupView:
    """The dedup stage in ``folder``: its counts, and per method ``PAIRS_PER_METHOD`` pairs
    (a keyed sample: ``keys`` per row)."""
    facts = json.loads(artifact_path(folder, FACTS).read_text())
    table = pq.read_table(
        artifact_path(folder, DUPLICATES), columns=["row", "duplicate_of", "similarity", "method"]
    )
    row = table.column("row").to_numpy()
    of = table.column("duplicate_of").to_numpy()
    similarity = table.column("similarity").to_numpy(zero_copy_only=False)
    method = table.column("method").to_numpy()
    view = DedupView(folder, dict(facts.get("dropped", {})), int(facts.get("rows_kept", 0)))
    for name, code in METHOD_CODES.items():
        hit = np.flatnonzero((method == code) & (of >= 0))
        for i in hit[np.argsort(keys[row[hit]], kind="stable")][:PAIRS_PER_METHOD].tolist():
            view.pairs.append(DuplicatePair(name, int(row[i]), int(of[i]), float(similarity[i])))
    return view
