"""What every per-shard stage shares: a stage is code over one shard; an engine runs it.

A ``ShardStage`` turns one input shard into record batches of its output schema and knows
nothing about files, resume or progress. ``run_stage`` owns the rest: the output folder
(resume, refusal, atomic shards, manifest last), the engine, progress, and rollback of this
invocation's files when the data turns out to be bad.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard
from dataselect.manifest import Manifest
from dataselect.progress import Reporter


class ShardStage(Protocol):
    name: str
    schema: pa.Schema
    artifacts: tuple[str, ...]

    def params(self) -> dict[str, Any]:
        """Everything that decides the output bytes (compared on resume)."""
        ...

    def setup(self, output: StageOutput) -> None:
        """Work before the shards (e.g. fit centroids), once per run."""
        ...

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        """Yield the output batches of one shard, in input row order."""
        ...

    def finish(self, output: StageOutput) -> dict[str, Any]:
        """A reduction after every shard is written; returns facts for the manifest."""
        ...


class PerRowStage:
    """Defaults for stages that are a pure map over rows (no setup, no reduction)."""

    artifacts: tuple[str, ...] = ()

    def setup(self, output: StageOutput) -> None:
        return None

    def finish(self, output: StageOutput) -> dict[str, Any]:
        return {}


@dataclass
class StageResult:
    """What a stage run did, for the CLI summary and for scripts (--json)."""

    stage: str
    output: Path
    manifest: Manifest
    shards: int
    shards_skipped: int
    rows: int
    rows_processed: int
    seconds: float

    def summary(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "output": str(self.output),
            "shards": self.shards,
            "shards_skipped": self.shards_skipped,
            "rows": self.rows,
            "rows_processed": self.rows_processed,
            "seconds": round(self.seconds, 3),
            "rows_per_second": (
                round(self.rows_processed / self.seconds, 1) if self.rows_processed else None
            ),
            **self.manifest.outputs,
        }


def run_stage(
    stage: ShardStage,
    dataset: InputDataset,
    output: str | Path,
    outputs: dict[str, Any] | None = None,
    overwrite: bool | str = False,
    quiet: bool = False,
    identity_input: InputDataset | None = None,
) -> StageResult:
    """Run ``stage`` over every shard of ``dataset`` into ``output``, resumably.

    ``identity_input`` is the stage's own input when it differs from the shards it maps
    (the sample stage reads a cluster folder but writes one part per source shard).
    """
    from dataselect import __version__
    from dataselect.engine import current_engine
    from dataselect.engine.local import run_local

    manifest = Manifest(
        stage=stage.name,
        version=__version__,
        params=stage.params(),
        input={
            "path": str(Path((identity_input or dataset).path).resolve()),
            "format": (identity_input or dataset).format,
            "fingerprint": (identity_input or dataset).fingerprint(),
        },
        outputs={"columns": stage.schema.names, **(outputs or {})},
        shards_total=len(dataset.shards),
    )
    folder = StageOutput(
        output,
        manifest,
        num_shards=len(dataset.shards),
        overwrite=overwrite,
        artifacts=stage.artifacts,
    )
    started = time.perf_counter()
    done_before = folder.prepare()
    skipped = len(done_before)
    rows_skipped = sum(int(record["rows"]) for record in done_before.values())
    try:
        with Reporter(stage.name, dataset.rows, len(dataset.shards), quiet=quiet) as reporter:
            if not folder.already_complete:
                stage.setup(folder)
                engine = current_engine()
                if engine.name == "ray":
                    from dataselect.engine.ray import run_ray

                    run_ray(stage, dataset, folder, reporter, engine.address)
                else:
                    run_local(stage, dataset, folder, reporter, engine.workers)
                folder.manifest.outputs.update(stage.finish(folder))
            final = folder.finalize()
            rows = final.rows
            reporter.log(
                f"done: {rows:,} rows in {len(dataset.shards)} shards "
                f"({skipped} already done) -> {folder.folder}"
            )
    except Exception:
        folder.rollback()
        raise
    return StageResult(
        stage=stage.name,
        output=Path(output),
        manifest=final,
        shards=len(dataset.shards),
        shards_skipped=skipped,
        rows=rows,
        rows_processed=rows - rows_skipped,
        seconds=time.perf_counter() - started,
    )
