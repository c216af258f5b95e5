"""Label agreement: how well a row's label agrees with similar rows, the classic detector of
mislabeled rows (confident learning, Northcutt et al. 2021).

A keyed sample of rows (--probe-rows) is cut into --folds folds by key; one probe per fold is
fitted on the other folds (L-BFGS, --l2). A sampled row scores the probability of its own
label under the probe that never saw it (cross-validated); a row outside the sample, the
mean of that probability over the fold probes. Low = the neighbourhood disagrees with the
label. Label noise is spread over all clusters, so only a row-level score like this one
(with kmq sampling inside clusters) can avoid it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.io.output import StageOutput
from dataselect.keyed import row_keys
from dataselect.options import at_least, option
from dataselect.scoring.probe import LabelIndex, fit_probe, probabilities, with_bias
from dataselect.scoring.rows import RowReader, Rows
from dataselect.scoring.scorer import (
    BaseScorer,
    ScoreContext,
    ScorerCost,
    ScorerTraits,
    l2_option,
    label_field,
    probe_rows_option,
    save_arrays,
    saved_arrays,
)
from dataselect.scoring.training import PROBE_STREAM, comparable_labels, labels_of, training_rows

ARTIFACT = "label_agreement.npz"


def fold_of(keys: np.ndarray, folds: int) -> np.ndarray:
    return ((keys >> np.uint64(32)) % np.uint64(folds)).astype(np.int64)


@dataclass(frozen=True)
class AgreementOptions:
    probe_rows: int = probe_rows_option()
    folds: int = option(5, "label-agreement: cross-validation folds.", parse=at_least(2))
    l2: float = l2_option()


class AgreementScorer(BaseScorer):
    names = ("label-agreement",)
    summary = (
        "cross-validated probability of the row's own label (--folds probes on --probe-rows "
        "rows); low = likely mislabeled. Needs embeddings and --label-column. Cost: --folds "
        "L-BFGS fits, then O(folds x classes x d) per row."
    )
    Options = AgreementOptions
    traits = ScorerTraits(fits_model=True, reads_embeddings=True, reads_labels=True)
    name = "label-agreement"
    artifacts = (ARTIFACT,)

    @classmethod
    def cost(cls, options: AgreementOptions, rows: int) -> ScorerCost:
        return ScorerCost(timed=False, training_rows=min(rows, options.probe_rows))

    def __init__(self, names: list[str], options: AgreementOptions, context: ScoreContext) -> None:
        self.label_column = context.label_column
        self.probe_rows, self.folds = options.probe_rows, options.folds
        self.l2, self.seed = options.l2, context.seed
        super().__init__(names, options, context)
        self.weights: np.ndarray | None = None
        self.index: LabelIndex | None = None
        self.threshold = np.uint64(0)

    def fields(self) -> list[pa.Field]:
        return [pa.field("score_label_agreement", pa.float32(), nullable=False)]

    def params(self) -> dict[str, Any]:
        return {
            "probe_rows": self.probe_rows,
            "folds": self.folds,
            "l2": self.l2,
            "seed": self.seed,
        }

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        saved = saved_arrays(output, ARTIFACT)
        if saved is not None:
            self.weights, self.index = saved["weights"], LabelIndex(saved["classes"])
            self.threshold = np.uint64(saved["threshold"])
            return {"resumed": True}
        train = training_rows(reader, label_field(self.label_column), self.probe_rows, self.seed)
        self.index = LabelIndex.of(train.labels)
        self.threshold = train.threshold
        y = self.index.ids(train.labels)
        fold = fold_of(train.keys, self.folds)
        classes = len(self.index.classes)
        self.weights = np.stack(
            [fit_probe(train.x[fold != f], y[fold != f], classes, self.l2, max_iter=300)
             for f in range(self.folds)]
        )  # fmt: skip
        save_arrays(
            output,
            ARTIFACT,
            {
                "weights": self.weights,
                "classes": self.index.classes,
                "threshold": np.array(self.threshold, dtype=np.uint64),
            },
        )
        return {"probe_rows": len(y), "folds": self.folds, "classes": classes}

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        assert self.weights is not None and self.index is not None
        assert rows.embedding is not None
        labels = labels_of(rows, label_field(self.label_column))
        y = self.index.ids(comparable_labels(self.index.classes, labels, "label-agreement"))
        x1 = with_bias(rows.embedding)
        own = np.zeros((len(self.weights), len(y)))
        known = np.flatnonzero(y >= 0)
        for f, weights in enumerate(self.weights):
            own[f, known] = probabilities(weights, x1[known])[np.arange(len(known)), y[known]]
        keys = row_keys(rows.ids, self.seed, PROBE_STREAM)
        in_sample = keys <= self.threshold
        held_out = own[fold_of(keys, len(self.weights)), np.arange(len(y))]
        value = np.where(in_sample, held_out, own.mean(axis=0))
        return {"score_label_agreement": value.astype(np.float32)}
