"""The score stage's cost model for `--dry-run`: each scorer's part comes from its class
(``BaseScorer.cost``); shared probes and shapes from ``planning``."""

from __future__ import annotations

import time

from dataselect.errors import DataError
from dataselect.io.sources import open_stage_input
from dataselect.planning import (
    FLAT_DECODE_COPIES,
    LIST_DECODE_COPIES,
    MB,
    WORKER_START_SECONDS,
    DataShape,
    Plan,
    PlanRequest,
    current_rss_mb,
    data_shape,
    folder_state,
    planned_workers,
    rows_to_process,
    written_shape,
)
from dataselect.scoring.scorer import Scorer
from dataselect.scoring.stage import READ_ROWS, ScoreConfig, ScoreStage
from dataselect.stage import stage_manifest

PROBE_LIMIT = 16_384  # rows the timed scorers score in the probe


def estimate_score(config: ScoreConfig, request: PlanRequest) -> tuple[Plan, DataShape]:
    """The score plan: the scorers without a fit timed on the input's first rows (the fits
    and the fitted scorers' per-row work are named in a note, not timed); memory of a read
    batch, the embeddings read and the largest fit's training rows. ``request.predicted``: the
    input's shape when it does not exist yet."""
    config.check()
    base = current_rss_mb()
    startup = request.startup_seconds()
    chosen = config.chosen()
    per_row = 0.0
    stage: ScoreStage | None = None
    if request.input_exists:
        dataset = open_stage_input(request.input, shard_rows=config.shard_rows)
        stage = ScoreStage(dataset, config)
        columns = list(dict.fromkeys(["id", *dataset.schema.names]))
        shape = data_shape(dataset, columns, stage.reader.id_column)
        try:  # the sample stage after it reads the embeddings for its metrics
            shape.dim = stage.reader.dim
        except DataError:
            shape.dim = None
        state = folder_state(request.output, stage_manifest(stage, dataset), request.overwrite)
        action = state.describe()
        columns_out = len(stage.schema)
    else:
        assert request.predicted is not None
        shape, state = request.predicted, None
        action = f"run all {shape.shards} shards (after the stage before it)"
        columns_out = 3 + len(config.scorers)
    costs = [entry.cost(config.options_for(entry), shape.rows) for entry, _ in chosen]
    if stage is not None:  # time the scorers without a fit on the input's first rows
        timed = [s for s, cost in zip(stage.scorers, costs, strict=True) if cost.timed]
        per_row = seconds_per_row(stage, timed)
        base = max(base, current_rss_mb())  # the libraries the scorers loaded
    untimed = [name for (_, names), cost in zip(chosen, costs, strict=True) if not cost.timed
               for name in names]  # fmt: skip
    notes = [f"not timed: the fits of {', '.join(untimed)} and their per-row scoring"]
    notes = notes if untimed else []
    todo = rows_to_process(state, shape)
    fit_rows = max([cost.training_rows for cost in costs], default=0)
    vectors_read = any(entry.traits.reads_embeddings for entry, _ in chosen)
    vector_bytes = (shape.dim or 0) * 4 if vectors_read else 0
    memory = (
        base * MB
        + shape.decode_bytes(READ_ROWS)
        + LIST_DECODE_COPIES * min(READ_ROWS, shape.rows) * vector_bytes  # embeddings read
        + FLAT_DECODE_COPIES * fit_rows * vector_bytes  # a fit's training rows
    )
    workers = planned_workers(ScoreStage.traits, shape, todo)
    seconds = startup + per_row * todo
    if workers > 1:  # the fits stay in this process; each worker holds the fitted scorers
        memory = base * MB + workers * memory
        seconds = startup + WORKER_START_SECONDS + per_row * todo / workers
    out_row = shape.id_bytes + 4 + 4 * columns_out
    out_shape = written_shape(shape, action, shape.dim, out_row, group_rows=READ_ROWS)
    plan = request.plan(
        "score",
        action,
        shape.shards,
        shape.rows,
        todo,
        peak_memory_mb=memory / MB,
        seconds=seconds,
        output_mb=shape.rows * out_row / MB,
        details={"scorers": list(config.scorers), "fit_rows": fit_rows, "workers": workers},
        notes=notes,
    )
    return plan, out_shape


def seconds_per_row(stage: ScoreStage, scorers: list[Scorer]) -> float:
    """``scorers`` timed on the input's first rows (after a warm-up: first calls load code),
    reading included."""

    def probe(limit: int) -> int:
        done = 0
        for rows in stage.reader.shard_rows(0, stage.fields, stage.raw_columns, 4096):
            for scorer in scorers:
                scorer.score(rows)
            done += len(rows)
            if done >= limit:
                break
        return done

    probe(16)
    started = time.perf_counter()
    probed = probe(PROBE_LIMIT)
    return (time.perf_counter() - started) / max(probed, 1)
