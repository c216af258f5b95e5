"""What a report shows, gathered from a selection (sample folder) and the stages behind it.

Everything comes from files the stages already wrote: manifests (timings, rows, params),
the cluster sizes, the decisions (which rows were selected), the sample input's
id, cluster, distance, keep and score columns (every row), _selection.json (metrics, rounds,
arms), pulls.parquet, the dedup stage's pairs, a keyed sample of the embeddings for the 2-D
map, and from the source data the texts of the rows shown and the label column. Memory:
those small per-row columns, at most ``PROJECTION_ROWS`` vectors and the texts shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect.errors import DataError, UsageError
from dataselect.inspection import describe_stage, stage_folders
from dataselect.io import checksums
from dataselect.io.folder_state import artifact_path
from dataselect.io.sources import open_input
from dataselect.keyed import IdSet, row_keys
from dataselect.manifest import MANIFEST_NAME, Manifest, read_manifest, stage_seconds
from dataselect.numeric import one_blas_thread
from dataselect.report.clusters import ClusterView, cluster_views, empty_clusters
from dataselect.report.duplicates import DedupView
from dataselect.report.texts import Source, SourceFacts, find_source, read_source
from dataselect.report.topics import top_terms
from dataselect.sampling.files import DECISIONS, PULLS, SELECTION

PROJECTION_ROWS = 5_000  # corpus rows in the 2-D picture
PROJECTION_SELECTED = 2_000  # selected rows in it
REPORT_STREAM = 7  # keyed-randomness stream of the report's samples


@dataclass
class StageInfo:
    name: str
    folder: Path
    manifest: Manifest
    wall_seconds: float  # the run that completed it, fit included (manifest.stage_seconds)
    description: dict[str, Any]
    shard_seconds: float = 0.0  # the sum of its shards' times


@dataclass
class ReportData:
    """The facts and arrays the plots and the HTML page are made from."""

    selection_folder: Path
    stages: list[StageInfo]
    selection: dict[str, Any]  # selection.json
    selected: np.ndarray  # bool per row (the sample input's row order)
    cluster: np.ndarray | None  # int per row
    cluster_sizes: np.ndarray | None  # rows per cluster (clusters.parquet)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # per row
    projection: np.ndarray | None = None  # (m, 2) PCA coordinates
    projection_corpus: np.ndarray | None = None  # bool per projected row: in the corpus sample
    projection_selected: np.ndarray | None = None  # bool per projected row: selected
    projection_variance: tuple[float, float] | None = None
    projection_positions: np.ndarray | None = None  # the projected rows' positions
    ids: pa.Array | None = None  # per row
    pulls: pa.Table | None = None  # bandit pull log
    source: Source | None = None  # the data the embed stage read
    texts: dict[int, str] = field(default_factory=dict)  # by row position: the rows shown
    views: list[ClusterView] = field(default_factory=list)  # the largest clusters
    empty: list[int] = field(default_factory=list)  # clusters with no row selected
    clusters: int = 0  # k
    score_column: str | None = None  # what the rejected rows are ordered by
    labels: SourceFacts | None = None  # label counts, corpus and selection
    dedup: DedupView | None = None
    warnings: list[str] = field(default_factory=list)  # said on the page and in the summary


def find_selection(path: str | Path) -> tuple[Path, list[Path]]:
    """The sample folder a report is about, and the stage folders behind it, in order."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    if (folder / MANIFEST_NAME).exists():
        selection = folder
    else:
        samples = [p for p in stage_folders(folder) if read_manifest(p).stage == "sample"]
        if not samples:
            raise DataError(
                f"{folder}: no sample stage folder here (give a run folder of "
                "`dataselect run` or a sample folder)"
            )
        selection = samples[-1]
    if read_manifest(selection).stage != "sample":
        raise UsageError(
            f"{selection}: a {read_manifest(selection).stage} folder; the report "
            "needs a selection (a sample folder or a run folder)"
        )
    chain = [selection]
    while True:
        manifest = read_manifest(chain[-1])
        if manifest.input.get("format") != "stage":
            break
        upstream = Path(manifest.input["path"])
        if not (upstream / MANIFEST_NAME).exists():
            raise DataError(f"{chain[-1]}: its input {upstream} is gone")
        if open_input(upstream).fingerprint() != manifest.input.get("fingerprint"):
            raise DataError(
                f"{upstream} changed after {chain[-1]} was made from it; rerun "
                f"the stages after it before the report"
            )
        chain.append(upstream)
    return selection, list(reversed(chain))


def collect(
    path: str | Path,
    seed: int = 0,
    text_column: str | None = None,
    label_column: str | None = None,
) -> ReportData:
    """What the report shows, from the folders it reads (verified: ``io/checksums.py``)."""
    with checksums.checking():
        return _collect(path, seed, text_column, label_column)


def _collect(
    path: str | Path, seed: int, text_column: str | None, label_column: str | None
) -> ReportData:
    selection_folder, chain = find_selection(path)
    stages = [_stage_info(folder) for folder in chain]
    sample = read_manifest(selection_folder)
    if not sample.complete:
        raise DataError(f"{selection_folder}: the selection is not complete (rerun the stage)")
    selection = json.loads(artifact_path(selection_folder, SELECTION).read_text())
    decisions = pq.read_table(
        artifact_path(selection_folder, DECISIONS), columns=["id", "selected"]
    )
    chosen = decisions.filter(decisions.column("selected")).column("id").combine_chunks()
    rows = _input_rows(Path(sample.input["path"]))
    selected = pc.is_in(rows.column("id"), value_set=chosen).to_numpy(zero_copy_only=False)
    if int(selected.sum()) != len(chosen):
        raise DataError(f"{sample.input['path']}: its rows no longer match the selection")
    cluster = (
        rows.column("cluster").to_numpy(zero_copy_only=False)
        if "cluster" in rows.column_names
        else None
    )
    by_stage = {info.manifest.stage: info.folder for info in stages}
    from dataselect.clustering.stage import read_cluster_sizes  # (loads FAISS)

    sizes = read_cluster_sizes(by_stage["cluster"]) if "cluster" in by_stage else None
    data = ReportData(selection_folder, stages, selection, selected, cluster, sizes)
    data.scores = {
        name: rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        for name in rows.column_names
        if name == "distance" or name.startswith("score_")
    }
    ids = rows.column("id").combine_chunks()
    data.ids = ids
    keys = row_keys(ids, seed, REPORT_STREAM)
    if "embed" in by_stage:
        _project(data, by_stage["embed"], ids, keys, seed)
    if artifact_path(selection_folder, PULLS).exists():
        data.pulls = pq.read_table(artifact_path(selection_folder, PULLS))
    _explain(data, rows, keys, by_stage, text_column, label_column)
    checksums.verify_expected()  # the folders it read are as their manifests say
    return data


def _explain(
    data: ReportData,
    rows: pa.Table,
    keys: np.ndarray,
    by_stage: dict[str, Path],
    text_column: str | None,
    label_column: str | None,
) -> None:
    """The cluster views, the dedup pairs and the texts and labels behind them."""
    params = data.selection.get("params", {})
    data.score_column = params.get("score_column") or next(
        (n for n in rows.column_names if n.startswith("score_")), None
    )
    kept = rows.column("keep").to_numpy(zero_copy_only=False) if "keep" in rows.column_names \
        else None  # fmt: skip
    if data.cluster is not None and len(data.cluster):
        data.clusters = int(data.cluster.max()) + 1
        data.views = cluster_views(
            data.cluster, data.selected, keys, data.scores.get("distance"),
            data.scores.get(data.score_column) if data.score_column else None, kept,
        )  # fmt: skip
        data.empty = empty_clusters(data.cluster, data.selected)
    if "dedup" in by_stage:
        from dataselect.report.duplicates import dedup_view  # (loads the dedup stage)

        data.dedup = dedup_view(by_stage["dedup"], keys)
    if "embed" not in by_stage:
        return
    wanted = [p for view in data.views for p in view.positions]
    if data.dedup is not None:
        wanted += data.dedup.positions
    if data.projection_positions is not None:
        wanted += data.projection_positions.tolist()
    try:
        data.source = find_source(data.selection_folder, text_column, label_column or
                                  params.get("label_column"))  # fmt: skip
        facts = read_source(data.source, np.unique(np.array(wanted, np.int64)), data.selected)
    except DataError as exc:
        if text_column is not None or label_column is not None:
            raise  # asked for by name: not shown is an error
        # the source data moved or changed since it was embedded: the rest of the report
        # stands on the stage folders alone
        data.source = None
        data.warnings.append(f"texts and labels are not shown: {exc}")
        return
    data.texts = facts.texts
    if data.source.label_column is not None:
        data.labels = facts
    terms = top_terms({v.cluster: [facts.texts.get(p, "") for p in v.topic_rows]
                       for v in data.views})  # fmt: skip
    for view in data.views:
        view.terms = terms[view.cluster]


def _stage_info(folder: Path) -> StageInfo:
    manifest = read_manifest(folder)
    timings = stage_seconds(manifest)  # as `inspect` shows them
    return StageInfo(manifest.stage, folder, manifest, timings["wall_seconds"],
                     describe_stage(folder), timings["shard_seconds"])  # fmt: skip


def _input_rows(input_folder: Path) -> pa.Table:
    """The sample input's id, cluster, distance, keep and score columns: every row, in file
    order."""
    dataset = open_input(input_folder)
    names = [
        n
        for n in dataset.schema.names
        if n in ("id", "cluster", "distance", "keep") or n.startswith("score_")
    ]
    return pa.Table.from_batches(
        [b for s in dataset.shards for b in s.iter_batches(names)],
        schema=pa.schema([dataset.schema.field(n) for n in names]),
    )


def _project(
    data: ReportData, embed_folder: Path, ids: pa.Array, keys: np.ndarray, seed: int
) -> None:
    """PCA of a keyed sample of corpus rows; the selected ones among a keyed sample of them."""
    from sklearn.decomposition import PCA

    corpus = np.argsort(keys, kind="stable")[:PROJECTION_ROWS]
    chosen = np.flatnonzero(data.selected)
    chosen = chosen[np.argsort(keys[chosen], kind="stable")[:PROJECTION_SELECTED]]
    rows = np.union1d(corpus, chosen)
    wanted = ids.take(pa.array(rows))
    vectors: dict[Any, np.ndarray] = {}
    dataset = open_input(embed_folder)
    dim = int(dataset.schema.field("embedding").type.list_size)
    lookup = IdSet(wanted)
    for shard in dataset.shards:
        for batch in shard.iter_batches(["id", "embedding"], batch_rows=1 << 16, threads=True):
            picked = batch.filter(pa.array(lookup.contains(batch.column("id"))))
            if picked.num_rows:
                x = picked.column("embedding").flatten().to_numpy().reshape(-1, dim)
                vectors.update(zip(picked.column("id").to_pylist(), x, strict=True))
    if len(vectors) != len(rows):
        raise DataError(
            f"{embed_folder}: {len(rows) - len(vectors):,} selected or sampled ids "
            "are not in the embed folder"
        )
    if len(rows) < 3:
        return
    x = np.stack([vectors[i] for i in wanted.to_pylist()]).astype(np.float64)
    is_corpus = np.isin(rows, corpus)
    pca = one_blas_thread(PCA(n_components=2, random_state=seed).fit)(x[is_corpus])
    data.projection = pca.transform(x)
    data.projection_corpus = is_corpus
    data.projection_selected = data.selected[rows]
    data.projection_positions = rows
    ratio = pca.explained_variance_ratio_
    data.projection_variance = (float(ratio[0]), float(ratio[1]))
