"""The cluster stage: fit k-means on a keyed sample, then assign every row, shard by shard.

Output shards: id, cluster (int32), distance (float32, to the row's centroid), vector_hash
(uint64: equal for identical vectors). Artifacts: __artifacts__/centroids.npy (k x d float32)
and __artifacts__/clusters.parquet (cluster, size, mean and max distance).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect import progress
from dataselect.clustering.config import ClusterConfig
from dataselect.clustering.kmeans import (
    READ_ROWS,
    SEARCH_ROWS,
    Assigner,
    KMeansFit,
    choose_k,
    fit_kmeans,
    iter_vectors,
    keyed_sample,
    reports_live,
    size_skew,
)
from dataselect.embedding.vectors import check_vector_column, first_vector_dim
from dataselect.errors import DataError, UsageError
from dataselect.io.folder_state import artifact_bytes, artifact_path
from dataselect.io.format import UNIQUE
from dataselect.io.ids import id_type, resolve_id_column
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard, open_stage_input
from dataselect.keyed import vector_hashes
from dataselect.stage import SchedulingTraits, StageResult, reading_inputs, run_stage

VECTOR_HASH = "vector_hash"
CENTROIDS = "centroids.npy"
CLUSTERS = "clusters.parquet"
FIT_FACTS = "fit.json"


def read_cluster_sizes(folder: Path) -> np.ndarray | None:
    """Rows per cluster id (index = cluster) from a cluster folder's clusters table."""
    data = artifact_bytes(folder, CLUSTERS)
    if data is None:
        return None
    table = pq.read_table(pa.BufferReader(data), columns=["cluster", "size"])
    cluster = table.column("cluster").to_numpy()
    sizes = np.zeros(int(cluster.max()) + 1 if len(cluster) else 0, dtype=np.int64)
    sizes[cluster] = table.column("size").to_numpy()
    return sizes


def centroids_file(path: str | Path) -> Path:
    """--centroids as a file: a .npy file, or a cluster folder's centroids."""
    path = Path(path)
    return artifact_path(path, CENTROIDS) if path.is_dir() else path


def load_centroids(path: str | Path, dim: int, metric: str) -> np.ndarray:
    path = centroids_file(path)
    try:
        centroids = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from exc
    if centroids.ndim != 2 or centroids.shape[0] < 1:
        raise DataError(f"{path}: centroids must be a k x d array, got shape {centroids.shape}")
    if centroids.shape[1] != dim:
        raise DataError(
            f"{path}: centroids have dimension {centroids.shape[1]}, the vectors have {dim}"
        )
    centroids = centroids.astype(np.float32)
    if not np.isfinite(centroids).all():
        raise DataError(f"{path}: centroids hold NaN or infinite values")
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    if metric == "cosine" and not np.allclose(norms, 1.0, atol=1e-5):  # keep unit ones as given
        centroids = centroids / np.where(norms > 0, norms, 1)
    return np.ascontiguousarray(centroids)


class ClusterStage:
    name = "cluster"
    artifacts: tuple[str, ...] = (CENTROIDS, CLUSTERS, FIT_FACTS)
    traits = SchedulingTraits(uses_every_core=True)  # FAISS's assignment search

    def __init__(self, dataset: InputDataset, config: ClusterConfig) -> None:
        config.check()
        self.dataset = dataset
        self.config = config
        self.id_column = resolve_id_column(dataset, config.id_column)
        fixed = check_vector_column(dataset, config.vector_column)
        self.dim = fixed or first_vector_dim(dataset, config.vector_column)
        # an embed stage wrote its embedding column validated and unit-norm: read as stored
        self.trusted = bool(
            dataset.manifest is not None
            and dataset.manifest.stage == "embed"
            and config.vector_column == "embedding"
            and config.metric == "cosine"
        )
        rows = dataset.rows or 0
        self.given = (
            load_centroids(config.centroids, self.dim, config.metric) if config.centroids else None
        )
        if self.given is None and config.k != "auto" and int(config.k) > rows:
            raise UsageError(f"--k {config.k} is larger than the number of rows ({rows:,})")
        self.centroids: np.ndarray | None = None
        self.assigner: Assigner | None = None
        self.facts: dict[str, Any] = {}
        self.schema = pa.schema(
            [
                pa.field("id", id_type(dataset, self.id_column), nullable=False, metadata=UNIQUE),
                pa.field("cluster", pa.int32(), nullable=False),
                pa.field("distance", pa.float32(), nullable=False, metadata=UNIQUE),
                # rows with identical vectors have one hash: kmeans-closest and top-k take
                # only one of them (sampling/stage.py)
                pa.field(VECTOR_HASH, pa.uint64(), nullable=False, metadata=UNIQUE),
            ]
        )

    def params(self) -> dict[str, Any]:
        params = asdict(self.config)
        params["k_grid"] = list(self.config.k_grid) if self.config.k == "auto" else None
        params["id_column"] = self.id_column
        params["dim"] = self.dim
        if self.config.centroids:
            data = centroids_file(self.config.centroids).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            params.update(centroids_sha256=digest, k=None, niter=None, max_points_per_centroid=None)
        return params

    # -- stage hooks -------------------------------------------------------------------
    def setup(self, output: StageOutput) -> None:
        saved = output.saved_artifact(CENTROIDS)
        facts = output.saved_artifact(FIT_FACTS)  # written before the centroids
        if saved is not None and facts is not None:  # resuming: reuse its (verified) fit
            centroids = np.load(saved, allow_pickle=False)
            self.facts = json.loads(facts.read_text())
        else:
            if self.given is not None:
                centroids = self.given
                self.facts = {"fitted": False}
            else:
                centroids = self._fit()
            # the fit's facts, so a resumed run's manifest says what an uninterrupted one does
            output.write_artifact(FIT_FACTS, json.dumps(self.facts, sort_keys=True).encode())
            buffer = io.BytesIO()
            np.save(buffer, centroids)
            output.write_artifact(CENTROIDS, buffer.getvalue())
        self.centroids = centroids
        self.assigner = Assigner(centroids, self.config.metric)

    def _fit(self) -> np.ndarray:
        config = self.config
        rows = self.dataset.rows or 0
        top_k = max(config.k_grid) if config.k == "auto" else int(config.k)
        size = min(rows, config.max_points_per_centroid * top_k)
        # two passes over the rows: the keys, then the vectors of the rows chosen
        progress.phase(f"fit sample ({size:,} of {rows:,} rows, 2 passes)", 2 * rows, "rows")
        sample = keyed_sample(
            self.dataset,
            config.vector_column,
            self.dim,
            self.id_column,
            size,
            config.seed,
            trusted=self.trusted,
            on_rows=progress.step,
        )
        if config.k == "auto":
            progress.phase(f"choose k: silhouette of {len(config.k_grid)} fits on "
                           f"{min(len(sample), 20_000):,} rows", len(config.k_grid),
                           "fits")  # fmt: skip
            try:
                k, scores = choose_k(
                    sample,
                    config.k_grid,
                    config.niter,
                    config.seed,
                    config.metric,
                    on_k=lambda k: progress.step(1, f"k={k} tried"),
                )
            except ValueError as exc:
                raise DataError(f"--k auto: {exc} ({len(sample)} rows)") from exc
            sample = sample[: min(len(sample), config.max_points_per_centroid * k)]
            self.facts["silhouette"] = {str(key): round(v, 4) for key, v in scores.items()}
            progress.note(f"choose k: k={k} (silhouette {scores[k]:.4f})")
        else:
            k = int(config.k)
        what = f"k-means on {len(sample):,} rows x {self.dim}, k={k}, niter={config.niter}"
        # iterations counted live only when the fit reports them as they end (reports_live):
        # otherwise the heartbeat says how long it has run, not "0 of 20 iterations done"
        progress.phase(f"fit: {what}", config.niter if reports_live(k) else None,
                       "iterations" if reports_live(k) else None)  # fmt: skip
        started = time.perf_counter()
        fit = fit_kmeans(
            sample,
            k,
            config.niter,
            config.seed,
            config.metric,
            on_iteration=lambda _, objective: progress.step(1, f"objective {objective:.6g}"),
        )
        progress.note(fit_line(what, fit, config.niter, time.perf_counter() - started))
        self.facts.update(fitted=True, sample_rows=len(sample), objective=fit.objective)
        return fit.centroids

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        """Rows read and searched ``SEARCH_ROWS`` at a time, written ``READ_ROWS`` at a
        time (a row group per written batch: small ones cost the writer and its readers)."""
        assert self.assigner is not None
        column = self.config.vector_column
        batches = iter_vectors(shard, column, self.dim, self.id_column, self.trusted, SEARCH_ROWS)
        parts: list[tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]] = []
        rows = 0
        for part in self.assigner.assign_stream(batches, per_row=vector_hashes):
            parts.append(part)
            rows += len(part[0])
            if rows >= READ_ROWS:
                yield self._record_batch(parts)
                parts, rows = [], 0
        if parts:
            yield self._record_batch(parts)

    def _record_batch(
        self, parts: list[tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]]
    ) -> pa.RecordBatch:
        ids, labels, distance, hashes = zip(*parts, strict=True)
        return pa.RecordBatch.from_arrays(
            [
                pa.concat_arrays(ids),
                pa.array(np.concatenate(labels)),
                pa.array(np.concatenate(distance)),
                pa.array(np.concatenate(hashes)),
            ],
            schema=self.schema,
        )

    def finish(self, output: StageOutput) -> dict[str, Any]:
        """clusters.parquet from the written shards (a reduction over two small columns)."""
        assert self.centroids is not None
        k = len(self.centroids)
        sizes = np.zeros(k, dtype=np.int64)
        sums = np.zeros(k)
        maxima = np.zeros(k, dtype=np.float32)
        for record in sorted(output.done.values(), key=lambda r: int(r["index"])):
            table = pq.read_table(
                output.folder / str(record["file"]), columns=["cluster", "distance"]
            )
            labels = table.column("cluster").to_numpy()
            distance = table.column("distance").to_numpy()
            sizes += np.bincount(labels, minlength=k)
            sums += np.bincount(labels, weights=distance, minlength=k)
            np.maximum.at(maxima, labels, distance)
        table = pa.table(
            {
                "cluster": pa.array(np.arange(k, dtype=np.int32)),
                "size": pa.array(sizes),
                "mean_distance": pa.array((sums / np.maximum(sizes, 1)).astype(np.float32)),
                "max_distance": pa.array(maxima),
            }
        )
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        output.write_artifact(CLUSTERS, buffer.getvalue().to_pybytes())
        return {
            "k": k,
            "dim": self.dim,
            "metric": self.config.metric,
            "skew": size_skew(sizes),
            **self.facts,
        }


def fit_line(what: str, fit: KMeansFit, niter: int, seconds: float) -> str:
    """The log line of a finished fit: iterations, time, objective first and last."""
    done = len(fit.trace)
    line = f"fit done: {what}: {done} iterations in {seconds:.1f} s"
    if done < niter:
        line += " (converged: the objective stopped changing)"
    if fit.trace:
        line += f", objective {fit.trace[0]:.6g} at iteration 1, {fit.trace[-1]:.6g} at the last"
    return line


def cluster(
    input: str | Path,
    output: str | Path,
    config: ClusterConfig | None = None,
    overwrite: bool | str = False,
    quiet: bool = False,
) -> StageResult:
    """Cluster the vectors of ``input`` (an embed folder) into the stage folder ``output``."""
    config = config or ClusterConfig()
    config.check()
    with reading_inputs(input):  # no run replaces what this one reads
        dataset = open_stage_input(input)
        stage = ClusterStage(dataset, config)
        return run_stage(
            stage,
            dataset,
            output,
            overwrite=overwrite,
            quiet=quiet,
        )
