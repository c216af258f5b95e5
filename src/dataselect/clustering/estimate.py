"""The cluster stage's cost model for `--dry-run` (shared probes and shapes: ``planning``)."""

from __future__ import annotations

import time

import faiss
import numpy as np

from dataselect.clustering.kmeans import READ_ROWS
from dataselect.clustering.stage import ClusterConfig, ClusterStage, load_centroids
from dataselect.errors import UsageError
from dataselect.io.sources import InputDataset, open_stage_input
from dataselect.planning import (
    MB,
    DataShape,
    Plan,
    PlanRequest,
    current_rss_mb,
    data_shape,
    folder_state,
    read_seconds_per_row,
    rows_to_process,
    written_shape,
)
from dataselect.stage import stage_manifest

SEARCH_PROBE_ROWS = 4096
SAMPLE_COPIES = 1.9  # the fit sample, and FAISS's own copy of most of it
IN_FLIGHT_EXTRA = 2.5  # assignment batches in flight beyond one per worker
FIT_OVERHEAD = 1.3  # k-means iterations beyond their searches: updates, k-means++ start


def search_seconds_per_row_centroid(dim: int, k: int) -> float:
    """Seconds per (row, centroid) of an exact FAISS search: the unit of k-means work."""
    rng = np.random.default_rng(0)
    centroids = rng.standard_normal((k, dim)).astype(np.float32)
    queries = rng.standard_normal((SEARCH_PROBE_ROWS, dim)).astype(np.float32)
    index = faiss.IndexFlatIP(dim)
    index.add(centroids)
    index.search(queries[:256], 1)  # warm-up
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        index.search(queries, 1)
        timings.append(time.perf_counter() - started)
    return float(np.median(timings)) / (SEARCH_PROBE_ROWS * k)


def estimate_cluster(config: ClusterConfig, request: PlanRequest) -> tuple[Plan, DataShape]:
    """The cluster plan: k-means fits and the assignment as FAISS searches, timed on random
    vectors of the input's dimension; memory of the fit sample (FAISS holds it about twice)
    and the assignment's batches in flight. ``request.predicted``: the input's shape when it does
    not exist yet."""
    config.check()
    base = current_rss_mb()  # the libraries are loaded; the probes below are not what a run keeps
    startup = request.startup_seconds()
    dataset: InputDataset | None = None
    if request.input_exists:
        dataset = open_stage_input(request.input)
        stage = ClusterStage(dataset, config)
        shape = data_shape(dataset, ["id", config.vector_column], stage.id_column)
        shape.dim = stage.dim
        state = folder_state(request.output, stage_manifest(stage, dataset), request.overwrite)
        action = state.describe()
    else:
        assert request.predicted is not None
        shape, state = request.predicted, None
        action = f"run all {shape.shards} shards (after the stage before it)"
    dim = int(shape.dim or 0)
    notes = []
    if config.centroids:
        k = len(load_centroids(config.centroids, dim, config.metric))
        fits = 0
    elif config.k == "auto":
        grid = [g for g in config.k_grid if g <= shape.rows] or [min(config.k_grid)]
        k, fits = max(grid), len(grid)
        notes.append(f"--k auto fits every k of the grid; estimated as {fits} fits at k = {k}")
    else:
        k, fits = int(config.k), 1
        if k > shape.rows:
            raise UsageError(f"--k {k} is larger than the number of rows ({shape.rows:,})")
    sample_rows = min(shape.rows, k * config.max_points_per_centroid) if fits else 0
    todo = rows_to_process(state, shape)
    per_pair = search_seconds_per_row_centroid(dim, k)
    base = max(base, current_rss_mb())  # FAISS's threads and buffers, once started
    read = read_seconds_per_row(dataset, ["id", config.vector_column], dim)
    fit_seconds = FIT_OVERHEAD * fits * config.niter * sample_rows * k * per_pair if todo else 0.0
    seconds = fit_seconds + todo * (k * per_pair + 2 * read)
    workers = max(1, faiss.omp_get_max_threads())
    sample_bytes = sample_rows * dim * 4
    in_flight = (workers + IN_FLIGHT_EXTRA) * min(READ_ROWS, shape.rows) * dim * 4
    memory = (
        base * MB + SAMPLE_COPIES * sample_bytes + max(shape.decode_bytes(READ_ROWS), in_flight)
    )
    out_row = shape.id_bytes + 4 + 4 + 8  # id, cluster, distance, vector_hash
    out_shape = written_shape(shape, action, dim, out_row, group_rows=READ_ROWS)
    plan = request.plan(
        "cluster",
        action,
        shape.shards,
        shape.rows,
        todo,
        peak_memory_mb=memory / MB,
        seconds=startup + seconds,
        output_mb=(shape.rows * out_row + k * dim * 4) / MB,
        details={
            "k": k,
            "dim": dim,
            "fit_sample_rows": sample_rows,
            "fit_sample_mb": round(sample_bytes / MB, 1),
            "fit_seconds": round(fit_seconds, 1),
            "assignment_seconds": round(todo * k * per_pair, 1),
            "read_seconds": round(2 * todo * read, 1),
            "workers": workers,
            "process_mb": round(base, 1),
        },
        notes=notes,
    )
    return plan, out_shape
