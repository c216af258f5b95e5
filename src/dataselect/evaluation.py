"""Proxy downstream evaluation (DESIGN section 3): how good is a selection for training?

A linear probe (logistic regression, C = 10) is fitted on the selected rows' embeddings and
labels and scored on a labelled test set; next to it, the same probe on random subsets of the
same size (the `random` strategy's keyed draw, one per seed) and on all of train. The
benchmarks (scripts/bench/) call the same functions, so `dataselect eval` reproduces them.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect.errors import DataError, UsageError
from dataselect.io import checksums
from dataselect.io.folder_state import artifact_path
from dataselect.io.sources import open_input
from dataselect.keyed import row_keys
from dataselect.manifest import MANIFEST_NAME, read_manifest
from dataselect.numeric import one_blas_thread
from dataselect.progress import Reporter
from dataselect.sampling.files import DECISIONS

PROBE_C = 10.0
PROBE_MAX_ITER = 2000
RANDOM_STREAM = 2  # the sample stage's stream: eval's random baseline is `--strategy random`


@one_blas_thread
def probe_accuracy(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of a logistic-regression probe fitted on (x, y)."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(y)
    if len(np.unique(labels)) < 2:  # one label: the probe can only predict it
        return float(np.mean(np.asarray(y_test) == labels[0])) if len(labels) else 0.0
    probe = LogisticRegression(max_iter=PROBE_MAX_ITER, C=PROBE_C)
    probe.fit(x, labels)
    return float(probe.score(x_test, y_test))


@dataclass
class LabelledVectors:
    """Ids, embeddings and labels of a stage folder, in its row order."""

    ids: pa.Array
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


EMBED_PARAMS_KEPT = ("embedder", "text_column", "template", "vector_column", "seed")


def is_vector_folder(path: str | Path) -> bool:
    folder = Path(path)
    return (folder / MANIFEST_NAME).exists() and read_manifest(folder).stage in (
        "embed", "cluster", "score")  # fmt: skip


def embedded_like(data: str | Path, train: str | Path, folder: Path) -> Path:
    """Raw ``data`` embedded into ``folder`` as --train's rows were: the embed stage's
    embedder and text settings from --train's lineage (its dimension for hashing and
    vectors, its device for minilm), so the probe compares like with like."""
    from dataselect.embedding.config import EmbedConfig
    from dataselect.embedding.stage import embed
    from dataselect.lineage import trace_lineage

    params = trace_lineage(Path(train)).embed.params
    values = {k: params[k] for k in EMBED_PARAMS_KEPT if params.get(k) is not None}
    if params.get("embedder") != "minilm" and params.get("dim") is not None:
        values["dim"] = params["dim"]
    if params.get("device"):
        values["device"] = params["device"]
    embed(data, folder, EmbedConfig(**values), quiet=True)
    return folder


def load_labelled(path: str | Path, label_column: str, what: str) -> LabelledVectors:
    """Embeddings (from the folder or its embed folder) and labels (from it or its source)."""
    from dataselect.scoring.rows import RowReader

    folder = Path(path)
    if not is_vector_folder(folder):
        raise UsageError(f"{what} {path}: give an embed (or cluster/score) stage folder")
    reader = RowReader(folder, label_column=label_column, what=what)
    reader.check(["embedding", "label"])
    ids, xs, ys = [], [], []
    for rows in reader.iter_rows(["embedding", "label"], batch_rows=1 << 15):
        assert rows.embedding is not None and rows.label is not None
        ids.append(rows.ids)
        xs.append(rows.embedding)
        ys.append(rows.label)
    if not ids:
        raise DataError(f"{what} {path}: no rows")
    labels = np.concatenate(ys)
    if labels.dtype == object:
        labels = labels.astype(str)
    return LabelledVectors(pa.concat_arrays(ids), np.concatenate(xs), labels)


def selected_ids(path: str | Path) -> pa.Array:
    """The ids a selection holds: a sample folder (its decisions), or any data with an id."""
    folder = Path(path)
    decisions = artifact_path(folder, DECISIONS)
    if decisions.exists():
        table = pq.read_table(decisions, columns=["id", "selected"])
        return table.filter(table.column("selected")).column("id").combine_chunks()
    if (folder / MANIFEST_NAME).exists() and read_manifest(folder).stage != "sample":
        raise UsageError(
            f"--selection {path}: a {read_manifest(folder).stage} folder, "
            "not a selection (give a sample folder or a file with an id column)"
        )
    dataset = open_input(path)
    dataset.require_columns(["id"], what="id column")
    parts = [batch.column("id") for shard in dataset.shards for batch in shard.iter_batches(["id"])]
    if not parts:
        raise DataError(f"--selection {path}: no rows")
    return pa.concat_arrays(parts)


@dataclass
class EvalRow:
    name: str
    rows: int
    accuracy: float
    random_accuracy: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "selection": self.name,
            "rows": self.rows,
            "accuracy": round(self.accuracy, 4),
        }
        if self.random_accuracy:
            mean = statistics.mean(self.random_accuracy)
            out["random_accuracy"] = round(mean, 4)
            out["random_sd"] = round(statistics.pstdev(self.random_accuracy), 4)
            out["random_seeds"] = len(self.random_accuracy)
            out["vs_random"] = round(self.accuracy - mean, 4)
        return out


def random_rows(ids: pa.Array, size: int, seed: int) -> np.ndarray:
    """Train rows of the `random` strategy's draw of ``size`` rows for ``seed`` (row order)."""
    keys = row_keys(ids, seed, RANDOM_STREAM)
    return np.sort(np.argsort(keys, kind="stable")[:size])


def evaluate(
    train: str | Path,
    test: str | Path,
    selections: list[str | Path],
    label_column: str,
    random_seeds: int = 3,
    include_all: bool = True,
    quiet: bool = True,
) -> dict[str, Any]:
    """Probe accuracy of each selection, of random subsets of its size and of all of train
    (with ``quiet`` False: log lines under cron, each probe named as it runs)."""
    if random_seeds < 0:
        raise UsageError("--random-seeds must not be negative")
    with Reporter("eval", None, 0, quiet=quiet) as progress:
        return _evaluate(train, test, selections, label_column, random_seeds, include_all,
                         progress)  # fmt: skip


def _evaluate(
    train: str | Path,
    test: str | Path,
    selections: list[str | Path],
    label_column: str,
    random_seeds: int,
    include_all: bool,
    progress: Reporter,
) -> dict[str, Any]:
    def probe(what: str, rows: np.ndarray) -> float:
        progress.phase(f"probe on {what} ({len(rows):,} rows)")
        accuracy = _accuracy_of(train_data, test_data, rows)
        progress.log(f"probe on {what} ({len(rows):,} rows): accuracy {accuracy:.4f}")
        return accuracy

    with tempfile.TemporaryDirectory(prefix="dataselect-eval-") as scratch:
        test_folder = Path(test)
        embedded = not is_vector_folder(test_folder)
        if embedded:  # raw data: embedded as --train was (an embed folder must exist)
            if not is_vector_folder(train):
                raise UsageError(f"--train {train}: give an embed (or cluster/score) stage "
                                 "folder")  # fmt: skip
            progress.phase("embedding --test as --train was")
            test_folder = embedded_like(test, train, Path(scratch) / "test")
        progress.phase("reading --train and --test")
        with checksums.checking():  # the folders read are as their manifests say
            train_data = load_labelled(train, label_column, "--train")
            test_data = load_labelled(test_folder, label_column, "--test")
            checksums.verify_expected()
    if train_data.y.dtype.kind != test_data.y.dtype.kind:  # e.g. ints in one, text in the other
        train_data.y, test_data.y = train_data.y.astype(str), test_data.y.astype(str)
    if train_data.x.shape[1] != test_data.x.shape[1]:
        raise DataError(
            f"--test {test}: {test_data.x.shape[1]}-d embeddings, train has "
            f"{train_data.x.shape[1]} (embed both with the same embedder)"
        )
    test_labels = np.unique(test_data.y)
    if not np.isin(test_labels, train_data.y).any():
        shown = ", ".join(map(str, test_labels[:3]))
        raise DataError(
            f"--test {test}: none of its {len(test_labels):,} labels ({shown}, ...) is a label "
            f"of --train {train}: check --label-column and the files"
        )
    warnings: list[str] = []
    results: list[EvalRow] = []
    random_cache: dict[int, list[float]] = {}
    for path in selections:
        ids = selected_ids(path)
        mask = pc.is_in(train_data.ids, value_set=ids.cast(train_data.ids.type))
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(rows) < len(pc.unique(ids)):
            raise DataError(
                f"--selection {path}: {len(pc.unique(ids)) - len(rows):,} of its ids "
                f"are not in --train {train}"
            )
        if len(rows) == 0:
            raise DataError(f"--selection {path}: no rows")
        if not np.isin(test_data.y, train_data.y[rows]).any():
            warnings.append(f"--selection {path}: none of its labels is a label of --test, so "
                            "its accuracy is 0 (check --label-column)")  # fmt: skip
        accuracy = probe(str(path), rows)
        if len(rows) not in random_cache:
            random_cache[len(rows)] = [
                probe(f"random subset, seed {s}", random_rows(train_data.ids, len(rows), s))
                for s in range(random_seeds)
            ]
        results.append(EvalRow(str(path), len(rows), accuracy, random_cache[len(rows)]))
    report: dict[str, Any] = {
        "train": str(train),
        "test": str(test),
        "test_embedded": embedded,  # raw --test data, embedded with --train's embedder
        "label_column": label_column,
        "train_rows": len(train_data),
        "test_rows": len(test_data),
        "probe": f"logistic regression, C = {PROBE_C:g}",
        "selections": [r.as_dict() for r in results],
        "warnings": warnings,
    }
    if include_all:
        everything = np.arange(len(train_data))
        report["all_of_train"] = round(probe("all of --train", everything), 4)
    return report


def _accuracy_of(train: LabelledVectors, test: LabelledVectors, rows: np.ndarray) -> float:
    return probe_accuracy(train.x[rows], train.y[rows], test.x, test.y)


def format_table(report: dict[str, Any]) -> str:
    """The eval report as an aligned text table."""
    header = ("selection", "rows", "accuracy", "random (same size)", "vs random")
    lines = []
    for r in report["selections"]:
        random = (
            f"{r['random_accuracy']:.3f} ({r['random_sd']:.3f}, {r['random_seeds']} seeds)"
            if "random_accuracy" in r
            else ""
        )
        delta = f"{r['vs_random']:+.3f}" if "vs_random" in r else ""
        lines.append((r["selection"], f"{r['rows']:,}", f"{r['accuracy']:.3f}", random, delta))
    if "all_of_train" in report:
        lines.append(
            ("all of train", f"{report['train_rows']:,}", f"{report['all_of_train']:.3f}", "", "")
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in lines]
    return "\n".join(line.rstrip() for line in out)
