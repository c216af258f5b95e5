"""Feedback for the iterative sampler: the user's file of (id, score), or a built-in probe.

User feedback: a Parquet file or folder, or JSONL, with an id column and a numeric score
(higher = better: give -loss, not loss). It is normalised to (id, score) sorted by id and
stored in the selection folder as _feedback/round-NNNN.parquet; its SHA-256 joins the
selection's parameters, so each round's output says which feedback made it.

Probe feedback (--feedback probe): the rows selected so far are cut into folds by their
keyed hash; a logistic probe fitted on the other folds gives each row the log-likelihood of
its own label, measured against the probe's average class:

    feedback = log p(own label) - mean over classes c of log p(c)

Rows whose label agrees with similar selected rows score high; label noise and off-domain
rows, whose labels nothing nearby predicts, score near 0 (a label absent from the other
folds scores 0). Centring removes how hard a row's region is: a clean row among many
confusable classes has a low log-likelihood but still ranks its own label above the
average class, where a random label does not. Against the raw log-likelihood (floored at
1e-4), this kept more accuracy for less junk (banking77 + 2,000 off-domain rows, 650 rows,
3 rounds, step 1, bound 1: 0.741 / 10.9% off-domain vs 0.735 / 12.8%). (A plain training
loss would point the other way: noisy rows have the highest loss.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect.errors import DataError
from dataselect.io.sources import open_input
from dataselect.keyed import row_keys
from dataselect.scoring.agreement import fold_of
from dataselect.scoring.probe import LabelIndex, fit_probe, probabilities, with_bias
from dataselect.scoring.rows import RowReader


@dataclass
class Feedback:
    """Feedback for some pool rows (indices into the pool), higher = better."""

    rows: np.ndarray
    values: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)


# feedback(round, rows selected so far) -> Feedback, or None when it is not there yet
FeedbackSource = Callable[[int, np.ndarray], "Feedback | None"]


FEEDBACK_DIR = "_feedback"  # skipped by Parquet readers, as the stage's own artifacts are
PROBE_FEEDBACK_STREAM = 4  # keyed-randomness stream of the probe's folds
PROBE_L2 = 1e-3


def feedback_path(folder: Path, round_: int) -> Path:
    """Where refine keeps round ``round_``'s feedback (a selection refined before 0.2: in
    ``feedback/``, where it is still read)."""
    path = folder / FEEDBACK_DIR / f"round-{round_:04d}.parquet"
    legacy = folder / FEEDBACK_DIR.lstrip("_") / path.name
    return legacy if legacy.exists() and not path.exists() else path


def normalised_feedback(path: str | Path, score_column: str, id_type: pa.DataType) -> bytes:
    """The feedback file as Parquet bytes of (id, score float64) sorted by id, checked."""
    dataset = open_input(path)
    dataset.require_columns(["id", score_column], what="feedback column")
    batches = [b for s in dataset.shards for b in s.iter_batches(["id", score_column], 1 << 16)]
    if not batches or not sum(b.num_rows for b in batches):
        raise DataError(f"{path}: the feedback file has no rows")
    table = pa.Table.from_batches(batches).combine_chunks()
    try:
        ids = table.column("id").cast(id_type)
        scores = table.column(score_column).cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"{path}: feedback ids must be {id_type} and '{score_column}' numeric ({exc})"
        ) from None
    values = scores.to_numpy(zero_copy_only=False)
    if ids.null_count or scores.null_count or not np.isfinite(values).all():
        raise DataError(f"{path}: feedback has a null id, or a null, NaN or infinite score")
    table = pa.table({"id": ids, "score": scores}).sort_by([("id", "ascending")])
    sorted_ids = table.column("id").combine_chunks()
    if len(sorted_ids) > 1:
        same = pc.equal(sorted_ids.slice(1), sorted_ids.slice(0, len(sorted_ids) - 1))
        if pc.any(same).as_py():
            dup = sorted_ids[int(pc.index(same, True).as_py())].as_py()
            raise DataError(f"{path}: id {dup!r} has more than one feedback score")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def feedback_rows(table: pa.Table, pool_ids: pa.Array, selected: np.ndarray) -> np.ndarray:
    """Pool row of each feedback id, -1 where the id is not among the ``selected`` rows."""
    position = pc.index_in(table.column("id"), value_set=pool_ids).to_numpy(zero_copy_only=False)
    rows = np.where(np.isnan(position.astype(np.float64)), -1, position).astype(np.int64)
    is_selected = np.zeros(len(pool_ids), dtype=bool)
    is_selected[selected] = True
    rows[(rows >= 0) & ~is_selected[np.maximum(rows, 0)]] = -1
    return rows


class ProbeFeedback:
    """Cross-validated log-likelihood of each selected row's own label (see module doc)."""

    def __init__(self, reader: RowReader, pool_ids: pa.Array, seed: int, folds: int = 5) -> None:
        self.reader, self.pool_ids, self.seed, self.folds = reader, pool_ids, seed, folds
        self.x: dict[int, np.ndarray] = {}
        self.labels: dict[int, object] = {}

    def _load(self, rows: np.ndarray) -> None:
        """Embeddings and labels of pool rows not read yet: one pass over the data."""
        missing = np.setdiff1d(rows, np.fromiter(self.x, np.int64, len(self.x)))
        if not len(missing):
            return
        wanted = self.pool_ids.take(pa.array(missing))
        for batch in self.reader.iter_rows(["embedding", "label"]):
            keep = pc.is_in(batch.ids, value_set=wanted).to_numpy(zero_copy_only=False)
            if not keep.any():
                continue
            at = pc.index_in(batch.ids.filter(pa.array(keep)), value_set=wanted).to_numpy()
            assert batch.embedding is not None and batch.label is not None
            for row, x, label in zip(
                missing[at], batch.embedding[keep], batch.label[keep], strict=True
            ):
                self.x[int(row)] = x
                self.labels[int(row)] = label

    def __call__(self, round_: int, selected: np.ndarray) -> Feedback:
        rows = np.sort(selected)
        self._load(rows)
        x = np.stack([self.x[int(r)] for r in rows])
        labels = np.array([self.labels[int(r)] for r in rows])
        if len(np.unique(labels)) < 2:  # one label so far (a tiny budget): no signal yet
            return Feedback(rows, np.zeros(len(rows)), {"source": "probe", "classes": 1})
        index = LabelIndex.of(labels)
        y = index.ids(labels)
        fold = fold_of(row_keys(self.pool_ids.take(pa.array(rows)), self.seed,
                                PROBE_FEEDBACK_STREAM), self.folds)  # fmt: skip
        value = np.zeros(len(rows))
        x1 = with_bias(x)
        for f in range(self.folds):
            held, train = fold == f, fold != f
            if not held.any() or len(np.unique(y[train])) < 2:
                continue
            weights = fit_probe(x[train], y[train], len(index.classes), PROBE_L2, max_iter=300)
            log_p = np.log(np.maximum(probabilities(weights, x1[held]), 1e-300))
            trained = np.isin(np.arange(len(index.classes)), y[train])
            own = log_p[np.arange(int(held.sum())), np.maximum(y[held], 0)]
            # a label absent from the training folds: nothing could predict it, so 0
            seen = np.isin(y[held], y[train])
            value[held] = np.where(seen, own - log_p[:, trained].mean(axis=1), 0.0)
        return Feedback(rows, value, {"source": "probe", "classes": int(len(index.classes))})


def stored_feedback(folder: Path, digests: tuple[str, ...], pool_ids: pa.Array) -> FeedbackSource:
    """Feedback from the files refine stored, each checked against its recorded digest."""

    def source(round_: int, selected: np.ndarray) -> Feedback | None:
        if round_ > len(digests):
            return None
        path = feedback_path(folder, round_)
        try:
            data = path.read_bytes()
        except OSError:
            raise DataError(f"{path}: the feedback of round {round_} is missing") from None
        if digest(data) != digests[round_ - 1]:
            raise DataError(f"{path}: the feedback of round {round_} was changed")
        table = pq.read_table(pa.BufferReader(data))
        rows = feedback_rows(table, pool_ids, selected)
        used = rows >= 0
        if not used.any():
            raise DataError(f"{path}: no feedback id is among the rows selected so far")
        values = table.column("score").to_numpy()[used]
        facts = {"source": path.name, "ignored_rows": int((~used).sum())}
        return Feedback(rows[used], values, facts)

    return source
