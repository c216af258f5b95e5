"""The sample stage's cost model for `--dry-run`: each strategy's part comes from its class
(``traits.streams``, ``timed_as``, ``cost_notes``); shared probes and shapes from
``planning``.

Memory per row of the input: 8 bytes (the id hashes of the duplicate check; a sixteenth of
that past 1M rows, when they go to temporary files) for the one-shot strategies, which
stream; about 3 x the id length + 250 bytes for the adaptive strategies and token budgets,
which hold every row. The factors were measured on this machine's runs (README, "dry-run").
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataselect.errors import UsageError
from dataselect.io.readahead import read_threads
from dataselect.io.sources import open_input, open_stage_input
from dataselect.keyed import row_keys, row_keys_streams
from dataselect.lineage import trace_lineage
from dataselect.manifest import MANIFEST_NAME, read_manifest
from dataselect.planning import (
    LIST_DECODE_COPIES,
    MB,
    DataShape,
    Plan,
    PlanRequest,
    current_rss_mb,
    data_shape,
    folder_state,
    planned_workers,
    read_seconds_per_row,
)
from dataselect.sampling.registry import STRATEGIES
from dataselect.sampling.stage import (
    METRICS_SAMPLE_ROWS,
    READ_ROWS,
    SampleConfig,
    SampleStage,
    check_sample_input,
    parse_budget,
    strategy_params,
)
from dataselect.sampling.strategies import Pool, allocate, select
from dataselect.sampling.strategy import AdaptiveStrategy, OneShotStrategy, SortColumns
from dataselect.sampling.streaming import BoundedTop, HashBuckets
from dataselect.stage import wanted_manifest

POOL_BYTES_PER_ID_BYTE = 3.0  # the sample stage's id column: read, sorted, combined
POOL_BYTES_PER_ROW = 250.0  # keys, cluster, distance, score, decisions, reasons
STREAM_BYTES_PER_ROW = 8.0  # a streamed selection keeps one id hash per row
CHOSEN_BYTES_PER_ID_BYTE = 6.0  # a selected id: candidates, decisions, the id set
CHOSEN_BYTES_PER_ROW = 200.0  # a selected row: sort keys, rank, reason, id set hashes


def reduction_seconds_per_row(
    strategy: str, id_bytes: float, rows: int, share: float, streams: bool
) -> float:
    """Seconds per row of the sample stage's own work besides reading: the strategy
    (streamed, or over the in-memory pool sorted by id), timed on up to 100,000 synthetic
    rows with the same budget ``share``. Iterative and bandit are timed as kmeans-random
    (their probe fits and pulls are not included)."""
    n = max(1000, min(rows, 100_000))
    budget = max(1, round(n * share))
    rng = np.random.default_rng(0)
    width = max(1, round(id_bytes))
    ids = pa.array([f"{i:0{width}d}"[-width:] + str(i) for i in rng.permutation(n)])
    k = max(1, int(np.sqrt(n)))
    cluster = rng.integers(0, k, n).astype(np.int32)
    distance = rng.random(n).astype(np.float32)
    score = rng.random(n)
    entry = STRATEGIES.get(strategy)
    if issubclass(entry, AdaptiveStrategy):
        entry = STRATEGIES.get(entry.timed_as)
    simple = entry()
    assert isinstance(simple, OneShotStrategy)
    started = time.perf_counter()
    if streams:
        sizes = np.bincount(cluster, minlength=k)
        quota = allocate(sizes, budget, "equal") if simple.per_cluster else [budget]
        top = np.ones(k)
        chosen = BoundedTop(np.asarray(quota), simple.primary_type)
        for start in range(0, n, 1 << 16):
            batch = ids.slice(start, 1 << 16)
            part = slice(start, start + len(batch))
            _, keys = row_keys_streams(batch, 0, (1, 2))
            columns = SortColumns(keys, cluster[part], distance[part], score[part], top, 1.0)
            group, primary, secondary = simple.sort_keys(columns)
            chosen.add(group, primary, batch, secondary)
        chosen.result()
    else:
        table = pa.table({"id": ids, "cluster": cluster}).sort_by([("id", "ascending")])
        sorted_ids = table.column("id").combine_chunks()
        pool = Pool(row_keys(sorted_ids, 0, 2), table.column("cluster").to_numpy(), distance,
                    score)  # fmt: skip
        select(pool, simple, budget, "proportional", 1.0)
    return (time.perf_counter() - started) / n


def estimate_sample(config: SampleConfig, request: PlanRequest) -> tuple[Plan, DataShape]:
    """The sample plan: the reduction over the per-row columns is not run, only timed on
    synthetic rows (``reduction_seconds_per_row``); reading the per-row columns, the source
    rows written out and the embeddings of the metrics are timed on the real inputs.
    ``request.predicted``: the input's shape when it does not exist yet (then
    ``request.source``: the source data behind it)."""
    source = request.source
    config.check()
    base = current_rss_mb()
    startup = request.startup_seconds()
    notes: list[str] = []
    read = embed_read = 0.0
    if request.input_exists:
        dataset = open_stage_input(request.input)
        check_sample_input(dataset, config)
        shape = data_shape(dataset, ["id"], "id")
        lineage = trace_lineage(Path(dataset.path))
        source = lineage.source
        shape.dim = int(lineage.embed.params["dim"])
        embed_read = read_seconds_per_row(open_input(lineage.embed_folder), ["id", "embedding"], 0)
        wanted = [
            c
            for c in ("id", "cluster", "distance", config.score_column)
            if c and c in dataset.schema.names
        ]
        read = read_seconds_per_row(dataset, wanted, 0)
        budget = parse_budget(config.budget, shape.rows) if config.budget_tokens is None else None
        params = strategy_params(config) | {"budget_rows": budget}
        if budget is None and (Path(request.output) / MANIFEST_NAME).exists():
            # a token budget's row count is found by the run: take the finished run's
            params["budget_rows"] = read_manifest(request.output).params.get("budget_rows")
        manifest = wanted_manifest("sample", params, dataset, len(source.shards))
        action = folder_state(request.output, manifest, request.overwrite).describe()
    else:
        assert request.predicted is not None
        shape = request.predicted
        budget = parse_budget(config.budget, shape.rows) if config.budget_tokens is None else None
        action = "run (after the stage before it)"
        read = read_seconds_per_row(None, [], 0)
        embed_read = read_seconds_per_row(None, [], int(shape.dim or 0))
    if source is None:
        raise UsageError(f"{request.input}: cannot find the source data behind it")
    source_columns = list(source.schema.names)
    source_shape = data_shape(source, source_columns, None)
    source_read = read_seconds_per_row(source, source_columns, 0)
    todo = 0 if action.startswith(("skip", "refused")) else shape.rows
    if budget is None:
        notes.append("--budget-tokens: the row count depends on the token counts")
    notes += config.entry.cost_notes(config.options_for(config.entry))
    vendi_rows = min(shape.rows, METRICS_SAMPLE_ROWS)
    dim = int(shape.dim or 0)
    streams = config.entry.traits.streams and config.budget_tokens is None
    reduce = (
        reduction_seconds_per_row(
            config.strategy,
            shape.id_bytes,
            shape.rows,
            (budget or shape.rows) / shape.rows,
            streams,
        )
        if todo
        else 0.0
    )
    per_row = POOL_BYTES_PER_ID_BYTE * shape.id_bytes + POOL_BYTES_PER_ROW
    if streams:  # the id hashes: in memory, or spilled and sorted a bucket at a time
        spilled = shape.rows > HashBuckets.MEMORY_ROWS
        per_row = STREAM_BYTES_PER_ROW / (HashBuckets.BUCKETS if spilled else 1)
    selected = budget if budget is not None else shape.rows
    memory = (
        base * MB
        + shape.rows * per_row
        + selected * (CHOSEN_BYTES_PER_ID_BYTE * shape.id_bytes + CHOSEN_BYTES_PER_ROW)
        + 2 * vendi_rows * dim * 4
    )
    write_out = todo * source_read
    # the source rows joined back by the write-out's threads (``--workers``), then the
    # embeddings read for the diversity metrics, a few parts side by side (``io.readahead``)
    workers = planned_workers(SampleStage.traits, source_shape, todo)
    readers = max(1, min(read_threads(), source_shape.shards))
    memory += max(
        workers * source_shape.decode_bytes(READ_ROWS),
        readers * LIST_DECODE_COPIES * min(READ_ROWS, shape.rows) * dim * 4,
    )
    write_out /= workers
    embed_read /= readers
    options = config.options_for(config.entry)
    memory += config.entry.working_bytes(options, shape.rows, dim)
    vector_reads = 1 + config.entry.vector_passes(options)  # the metrics' pass, and its own
    plan = request.plan(
        "sample",
        action,
        source_shape.shards,
        shape.rows,
        todo,
        peak_memory_mb=memory / MB,
        # the per-row columns, the reduction, the source rows joined back, and one pass
        # over the embeddings for the diversity metrics (selected rows and corpus sample)
        seconds=startup + todo * (read + reduce + vector_reads * embed_read) + write_out,
        output_mb=selected * (source_shape.bytes_per_row + shape.id_bytes + 60) / MB,
        details={
            "strategy": config.strategy,
            "budget_rows": budget,
            "read_seconds": round(todo * (read + source_read + embed_read), 1),
            "reduction_seconds": round(todo * reduce, 1),
            "workers": workers,
        },
        notes=notes,
    )
    selected_shape = DataShape(rows=selected, shards=source_shape.shards, exists=False)
    return plan, selected_shape
