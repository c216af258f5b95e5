"""Running a stage: a stage is code over one shard (``engine.base.ShardStage``); an engine
runs it.

``run_stage`` owns the rest: the output folder (resume, refusal, atomic shards, manifest
last), the engine, progress, and rollback of this invocation's files when the data turns out
to be bad.
"""

from __future__ import annotations

import shlex
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataselect import __version__
from dataselect.engine import current_engine, engine_for
from dataselect.engine.base import SchedulingTraits, ShardStage, publish_in_order
from dataselect.io import checksums
from dataselect.io.lock import reading
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard
from dataselect.lineage import stage_folders_behind
from dataselect.manifest import Manifest
from dataselect.progress import Phase, Reporter

__all__ = ["PerRowStage", "SchedulingTraits", "ShardStage", "StageResult", "run_stage"]


class PerRowStage:
    """Defaults for stages that are a pure map over rows (no setup, no reduction)."""

    artifacts: tuple[str, ...] = ()
    traits = SchedulingTraits()

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
    replaced: str = ""  # the output it replaced: what differed (its settings, its input)

    def summary(self) -> dict[str, Any]:
        outputs = dict(self.manifest.outputs)
        if isinstance(outputs.get("next"), str):  # the command to run next, on this folder
            outputs["next"] = outputs["next"].replace("{folder}", shlex.quote(str(self.output)))
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
            **({"replaced": self.replaced} if self.replaced else {}),
            **outputs,
        }


# what each stage's setup does, for the heartbeat under cron and the bars (the cluster and
# score stages name their own: the fit sample, the k-means fit, each scorer's fit)
SETUP_PHASES = {
    "sample": "select: choosing the rows",
    "dedup": "finding duplicates (signatures, LSH, range search)",
}
# what each stage's shards do: the phase that writes OUTPUT
SHARD_PHASES = {
    "embed": "embed",
    "cluster": "assign",
    "score": "score",
    "sample": "write",
    "dedup": "write",
}


def shard_phase(stage: ShardStage, dataset: InputDataset, todo: list[InputShard]) -> Phase:
    """The phase of a stage's shards, with its total: the rows it writes (a sample stage
    writes its budget, ``stage.rows_out``), else the input's rows; when those are not known
    (JSONL and CSV files are counted as they are read), the bytes of the files to read."""
    what, every = SHARD_PHASES.get(stage.name, stage.name), len(dataset.shards)
    of = "" if len(todo) == every else f" of {every}"
    name = f"{what} ({len(todo)}{of} shard{'' if len(todo) == 1 else 's'} to do)"
    rows_out = getattr(stage, "rows_out", None)
    if isinstance(rows_out, int):
        return Phase(name, rows_out, "rows")
    if dataset.rows is not None:
        return Phase(name, dataset.rows, "rows")
    return Phase(name, sum(shard.path.stat().st_size for shard in todo), "bytes")


@contextmanager
def reading_inputs(input: str | Path) -> Iterator[None]:
    """A stage's hold on what it reads: a shared lock on each stage folder behind ``input``
    (``input`` itself when it is one), so no run replaces them underneath it; a run that
    wants to write one of them waits or is refused (``io/lock.py``).

    And the check of what it reads (``io/checksums.py``): the shards of the stage folders
    it opens are hashed beside its work and verified before its output is complete
    (``run_stage``). Damaged bytes can fail in other ways first (a NaN, a decoding error)
    or overflow: on an error the stage waits for the verdicts and a mismatch is the error it
    stops with, and warnings are shown only once the input is verified."""
    with (
        reading(stage_folders_behind(Path(input))),
        checksums.checking(),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("default")
        try:
            yield
        except Exception:
            checksums.verify_expected()  # a damaged input is the cause: say that instead
            raise
        checksums.verify_expected()
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename,
                             warning.lineno)  # fmt: skip


def wanted_manifest(
    name: str,
    params: dict[str, Any],
    source: InputDataset,
    shards_total: int,
    outputs: dict[str, Any] | None = None,
) -> Manifest:
    """The manifest a run of stage ``name`` wants: its identity (stage, version, parameters,
    fingerprint of ``source``, its input) decides what an existing OUTPUT is to it. A dry
    run asks ``FolderState`` with the same one."""
    return Manifest(
        stage=name,
        version=__version__,
        params=params,
        input={
            "path": str(Path(source.path).resolve()),
            "format": source.format,
            "fingerprint": source.fingerprint(),
        },
        outputs=dict(outputs or {}),
        shards_total=shards_total,
    )


def stage_manifest(
    stage: ShardStage,
    dataset: InputDataset,
    identity_input: InputDataset | None = None,
    outputs: dict[str, Any] | None = None,
) -> Manifest:
    """``wanted_manifest`` of ``stage`` run over the shards of ``dataset``."""
    return wanted_manifest(
        stage.name,
        stage.params(),
        identity_input or dataset,
        len(dataset.shards),
        {"columns": stage.schema.names, **(outputs or {})},
    )


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
    manifest = stage_manifest(stage, dataset, identity_input, outputs)
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
            if folder.replaced:
                reporter.log(f"replacing the {stage.name} output in {folder.folder}: "
                             f"{folder.replaced}")  # fmt: skip
            if folder.already_complete:
                checksums.discard_expected()  # nothing read, nothing to check
            else:
                checksums.start_expected()  # (workers may read them all: start here too)
                if stage.name in SETUP_PHASES:
                    reporter.phase(SETUP_PHASES[stage.name])
                stage.setup(folder)
                todo = [s for s in dataset.shards if not folder.is_done(s.index)]
                engine, how = engine_for(
                    current_engine(), stage.traits, len(todo), sum(s.rows or 0 for s in todo)
                )
                if how:
                    reporter.log(how)
                shards = shard_phase(stage, dataset, todo)
                reporter.phase(shards.name, shards.total, shards.unit)
                publish_in_order(stage, dataset, folder, reporter, engine)
                reporter.phase("finishing (summary, metrics, checks)")
                folder.manifest.outputs.update(stage.finish(folder))
                checksums.verify_expected()  # nothing is complete that came from bad bytes
            final = folder.finalize()
            rows = final.rows
            reporter.log(
                f"done: {rows:,} rows in {len(dataset.shards)} shards "
                f"({skipped} already done) -> {folder.folder}"
            )
    except Exception:
        folder.rollback()
        raise
    except BaseException:  # Ctrl-C, SIGTERM: keep what is finished, release the folder
        folder.release()
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
        replaced=folder.replaced,
    )
