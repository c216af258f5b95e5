"""The rows a probe is trained on: a keyed uniform sample (the rows with the smallest
(seed, id) keys), so the probe and its scores do not depend on sharding or order."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dataselect.errors import DataError
from dataselect.keyed import row_keys
from dataselect.scoring.rows import RowReader, Rows

PROBE_STREAM = 3  # keyed-randomness stream of probe training samples


def labels_of(rows: Rows, field: str) -> np.ndarray:
    values = rows.label if field == "label" else rows.cluster
    assert values is not None
    return values


@dataclass
class TrainingRows:
    x: np.ndarray  # float32 embeddings, in key order
    labels: np.ndarray
    keys: np.ndarray
    threshold: np.uint64  # rows with a key at or under it are the sample


def training_rows(reader: RowReader, field: str, size: int, seed: int) -> TrainingRows:
    from dataselect.clustering.kmeans import smallest_keys

    sampled = smallest_keys(reader.dataset, reader.id_column, size, seed, PROBE_STREAM)
    threshold = sampled[-1] if len(sampled) else np.uint64(0)  # (none: refused below)
    xs, labels, keys = [], [], []
    for rows in reader.iter_rows(["embedding", field]):
        row_key = row_keys(rows.ids, seed, PROBE_STREAM)
        keep = np.flatnonzero(row_key <= threshold)
        assert rows.embedding is not None
        xs.append(rows.embedding[keep])
        labels.append(labels_of(rows, field)[keep])
        keys.append(row_key[keep])
    if not xs or not sum(len(k) for k in keys):
        raise DataError(f"{reader.path}: no rows to train a probe on")
    all_keys = np.concatenate(keys)
    order = np.argsort(all_keys, kind="stable")
    return TrainingRows(
        np.concatenate(xs)[order], np.concatenate(labels)[order], all_keys[order], threshold
    )


def comparable_labels(train: np.ndarray, other: np.ndarray, where: str) -> np.ndarray:
    """``other`` labels as the training labels' kind (text vs numbers), or a clear error."""
    train_text = train.dtype.kind in "OUS"
    other_text = other.dtype.kind in "OUS"
    if train_text != other_text:
        raise DataError(f"{where}: labels are {other.dtype} here but {train.dtype} in training")
    return other
