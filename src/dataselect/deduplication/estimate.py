"""The dedup stage's cost model for `--dry-run`: normalising and signing timed on the input's
first rows; memory of the per-row arrays the reduction holds and of the LSH index."""

from __future__ import annotations

import time

import pyarrow as pa

from dataselect.deduplication.config import DedupConfig
from dataselect.deduplication.minhash import signatures
from dataselect.deduplication.stage import READ_ROWS, DedupStage
from dataselect.deduplication.text import normalised, text_hashes
from dataselect.io.sources import open_stage_input
from dataselect.planning import (
    MB,
    DataShape,
    Plan,
    PlanRequest,
    current_rss_mb,
    data_shape,
    folder_state,
    rows_to_process,
    written_shape,
)
from dataselect.stage import stage_manifest

PROBE_ROWS = 2048
# held per row by the reduction: id (about id_bytes), key, rank, text hash (16), decisions
# (13); the minhash index and verified pairs: about 2 KB a row at 128 slots, the growth of the
# peak from 55k to 110k T0 rows in scripts/bench/dedup.py (more on corpora with more pairs)
ARRAY_BYTES_PER_ROW = 8 + 8 + 16 + 13
LSH_BYTES_PER_ROW = 2000


def estimate_dedup(config: DedupConfig, request: PlanRequest) -> tuple[Plan, DataShape]:
    config.check()
    base = current_rss_mb()
    per_row = 0.0
    if request.input_exists:
        dataset = open_stage_input(request.input)
        stage = DedupStage(dataset, config)
        shape = data_shape(dataset, ["id"], "id")
        state = folder_state(request.output, stage_manifest(stage, dataset), request.overwrite)
        action = state.describe()
        if config.reads_text:
            per_row = _seconds_per_row(stage)
    else:
        assert request.predicted is not None
        shape, state = request.predicted, None
        action = f"run all {shape.shards} shards (after the stage before it)"
    todo = rows_to_process(state, shape)
    lsh = LSH_BYTES_PER_ROW * config.num_perm / 128 if "minhash" in config.method else 0
    memory = base * MB + shape.rows * (shape.id_bytes + ARRAY_BYTES_PER_ROW + lsh)
    out_row = 2 * shape.id_bytes + 16
    plan = request.plan(
        "dedup", action, shape.shards, shape.rows, todo,
        peak_memory_mb=memory / MB,
        seconds=request.startup_seconds() + per_row * (shape.rows if todo else 0),
        output_mb=shape.rows * out_row / MB,
        details={"methods": list(config.method),
                 "signatures_on_disk_mb": round(shape.rows * 4 * config.num_perm / MB, 1)
                 if "minhash" in config.method else 0},
        notes=["timed: normalising and signing the first rows; not timed: the LSH queries "
               "and the semantic range searches"],
    )  # fmt: skip
    return plan, written_shape(shape, action, shape.dim, out_row, group_rows=READ_ROWS)


def _seconds_per_row(stage: DedupStage) -> float:
    """Normalising, hashing and signing timed on the first rows (after a warm-up on a few:
    first calls load code)."""
    rows = next(stage.reader.iter_rows(["text"], batch_rows=PROBE_ROWS), None)
    if rows is None or not len(rows):
        return 0.0
    texts = pa.array(rows.text, pa.string())
    _sign(stage, texts.slice(0, 16))
    started = time.perf_counter()
    _sign(stage, texts)
    return (time.perf_counter() - started) / len(texts)


def _sign(stage: DedupStage, texts: pa.Array) -> None:
    config = stage.config
    normal = normalised(texts, config.normalize)
    text_hashes(normal)
    if "minhash" in config.method:
        signatures(normal, config.ngram_unit, config.ngram, config.num_perm, config.seed)
