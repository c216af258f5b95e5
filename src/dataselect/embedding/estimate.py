"""The embed stage's cost model for `--dry-run` (shared probes and shapes: ``planning``)."""

from __future__ import annotations

import time

from dataselect.embedding.stage import READ_ROWS, EmbedConfig, EmbedStage
from dataselect.embedding.vectors import normalised_vectors
from dataselect.io.sources import open_stage_input
from dataselect.planning import (
    MB,
    PROBE_ROWS,
    WORKER_START_SECONDS,
    DataShape,
    Plan,
    PlanRequest,
    current_rss_mb,
    data_shape,
    first_batch,
    folder_state,
    high_water_mb,
    planned_workers,
    read_seconds_per_row,
    rows_to_process,
    write_seconds_per_row,
    written_shape,
)
from dataselect.stage import stage_manifest


def estimate_embed(config: EmbedConfig, request: PlanRequest) -> tuple[Plan, DataShape]:
    """The embed plan: the embedder (or the vector check) timed on the first rows, plus
    reading and writing; memory of the model, a decoded read batch and its vectors. The
    first stage: its input always exists."""
    config.check()
    base = current_rss_mb()
    startup = request.startup_seconds()  # Python and imports: once
    dataset = open_stage_input(request.input, shard_rows=config.shard_rows)
    stage = EmbedStage(dataset, config)
    shape = data_shape(dataset, stage.columns, stage.id_column)
    state = folder_state(request.output, stage_manifest(stage, dataset), request.overwrite)
    action = state.describe()
    todo = rows_to_process(state, shape)
    shard, batch = first_batch(dataset, stage.columns, PROBE_ROWS)
    started = time.perf_counter()
    if stage.embedder is not None and stage.text is not None:
        texts = stage.text.texts(batch, shard, 0)
        stage.embedder.embed(texts[:8])  # warm-up (loads the model, which a run keeps)
        started = time.perf_counter()
        stage.embedder.embed(texts)
        base = max(base, high_water_mb())  # the model and its activations at this batch size
    else:
        column = str(config.vector_column)
        normalised_vectors(batch.column(column).slice(0, 8), stage.dim, shard, 0, column)
        started = time.perf_counter()
        normalised_vectors(batch.column(column), stage.dim, shard, 0, column)
        base = max(base, current_rss_mb())  # the libraries the stage loaded
    per_row = (time.perf_counter() - started) / max(batch.num_rows, 1)
    per_row += read_seconds_per_row(dataset, stage.columns, stage.dim)
    per_row += write_seconds_per_row(stage.dim)
    vector_bytes = stage.dim * 4
    # the read batch decoded, and its vectors: computed, normalised, written
    memory = base * MB + shape.decode_bytes(READ_ROWS) + 3 * READ_ROWS * vector_bytes
    workers = planned_workers(stage.traits, shape, todo)
    seconds = startup + per_row * todo
    if workers > 1:  # each worker a process like this one; the parent only publishes
        memory = base * MB + workers * memory
        seconds = startup + WORKER_START_SECONDS + per_row * todo / workers
    out_shape = written_shape(shape, action, stage.dim, shape.id_bytes + 4, vector_bytes, READ_ROWS)
    plan = request.plan(
        "embed",
        action,
        shape.shards,
        shape.rows,
        todo,
        peak_memory_mb=memory / MB,
        seconds=seconds,
        output_mb=shape.rows * out_shape.bytes_per_row / MB,
        details={
            "embedder": stage.params()["embedder"],
            "dim": stage.dim,
            "probe_rows": batch.num_rows,
            "rows_per_second": round(1 / per_row, 1),
            "workers": workers,
        },
    )
    return plan, out_shape
