"""What every scorer is, and what the registry knows of it before it runs.

A scorer instance (``Scorer``) has the fields it reads, the columns it writes, a fit (a
reduction run once before the shards, its result kept as an artifact so a resumed run reuses
it) and a pure per-batch score. Its class (``BaseScorer``) is a registry entry: the
``--scorer`` names it answers to, a summary for --help, its options (a dataclass of
``options.option`` fields), their checks, its traits and its cost model for the dry run.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

from dataselect.errors import DataError
from dataselect.io.output import StageOutput
from dataselect.io.sources import open_input
from dataselect.manifest import MANIFEST_NAME
from dataselect.options import NoOptions, at_least, option, positive_number
from dataselect.scoring.rows import RowReader, Rows


@dataclass(frozen=True)
class ScorerTraits:
    """What a scorer reads and does, for the stage, the dry run and the shared tests."""

    fits_model: bool = False  # fits before the shards (kept as an artifact for a resume)
    reads_text: bool = False
    reads_embeddings: bool = False
    reads_labels: bool = False  # --label-column, or the rows' cluster ids without one


@dataclass(frozen=True)
class ScorerCost:
    """A scorer's part of the dry run's estimate."""

    timed: bool  # the dry run times it on the input's first rows (else: a note says not)
    training_rows: int = 0  # rows whose embeddings its fit holds


@dataclass(frozen=True)
class ScoreContext:
    """The score stage's options every scorer may use."""

    label_column: str | None = None
    seed: int = 0


class Scorer(Protocol):
    """What the score stage calls on a scorer."""

    name: str  # its key among the stage's parameters
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


class BaseScorer:
    """A registered scorer class: constructed as ``cls(names, options, context)`` with the
    --scorer names given for it, its ``Options`` and the stage's ``ScoreContext``."""

    names: ClassVar[tuple[str, ...]]  # the --scorer names it answers to
    summary: ClassVar[str]  # its paragraph in `dataselect score --help`
    Options: ClassVar[type[Any]] = NoOptions
    traits: ClassVar[ScorerTraits] = ScorerTraits()
    one_per_name: ClassVar[bool] = False  # else one instance takes all its names given
    name: str  # its key among the stage's parameters
    columns: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()

    def __init__(self, names: list[str], options: Any, context: ScoreContext) -> None:
        self.needs = self.needs_of(context)

    def fields(self) -> list[pa.Field]:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        raise NotImplementedError

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def matches(cls, name: str) -> bool:
        return name in cls.names

    @classmethod
    def check(cls, options: Any, names: list[str]) -> None:
        """Refuse options this scorer cannot run with (a UsageError naming them)."""

    @classmethod
    def cost(cls, options: Any, rows: int) -> ScorerCost:
        """Its part of the dry run: timed on real rows when it has no fit."""
        return ScorerCost(timed=not cls.traits.fits_model)

    @classmethod
    def needs_of(cls, context: ScoreContext) -> tuple[str, ...]:
        """The fields of Rows it reads (labels are cluster ids without --label-column)."""
        traits = cls.traits
        return (
            *(("text",) if traits.reads_text else ()),
            *(("embedding",) if traits.reads_embeddings else ()),
            *((label_field(context.label_column),) if traits.reads_labels else ()),
        )


def label_field(label_column: str | None) -> str:
    """Rows' own labels, or their cluster ids when there are none."""
    return "label" if label_column else "cluster"


# options several scorers share (declared alike by each: the registry checks it)
_PROBE_ROWS = at_least(10)


def probe_rows_option() -> Any:
    return option(50_000, "Rows (a keyed sample) the probes are trained on.", parse=_PROBE_ROWS)


def l2_option() -> Any:
    return option(1e-3, "Probe L2 strength (influence, agreement).", parse=positive_number)


def reference_text_option() -> Any:
    return option(None, "Text column of --target/--positives/--negatives \\[default: as input].")


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and bytes), for resume identity.
    A stage folder is its rows: the SHA-256 of its shard checksums (as its fingerprint as
    an input), so re-making an identical one (its manifest's timings change) is no change."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if (path / MANIFEST_NAME).exists():
        return str(open_input(path).fingerprint()["shards_sha256"])
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
    path = output.saved_artifact(name)
    if path is None:
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def column_name(scorer: str) -> str:
    return "score_" + scorer.replace("-", "_")
