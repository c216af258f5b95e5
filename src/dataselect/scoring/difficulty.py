"""Difficulty scores from a probe's training run (Paul et al. 2021; Agarwal et al. 2022).

A softmax probe on the embeddings is trained by mini-batch SGD for --epochs epochs on a keyed
sample of rows (--probe-rows) and their own labels (or cluster ids), keeping the weights
after every epoch. Then, for every row:

- el2n: ||softmax(W_e x) - onehot(y)||_2 at the early epoch e = --probe-epoch;
- grand: the norm of the loss gradient in the weights at epoch e, which for a linear probe
  is ||softmax(W_e x) - onehot(y)||_2 * ||(x, 1)||_2;
- vog: the variance across the checkpoints of the loss gradient in the input,
  W_t^T (softmax(W_t x) - onehot(y)), averaged over the input's dimensions. (The original
  VoG uses the true-class logit's gradient, which for a linear probe is the same for every
  row of a class.)

High values mean hard rows: informative ones, and mislabeled ones. Sample with care (e.g.
top-k on el2n keeps the noise); kmq over them leans toward hard rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.errors import UsageError
from dataselect.io.output import StageOutput
from dataselect.options import at_least, option
from dataselect.scoring.probe import LabelIndex, one_hot, probabilities, train_epochs, with_bias
from dataselect.scoring.rows import RowReader, Rows
from dataselect.scoring.scorer import (
    BaseScorer,
    ScoreContext,
    ScorerCost,
    ScorerTraits,
    label_field,
    probe_rows_option,
    save_arrays,
    saved_arrays,
)
from dataselect.scoring.training import comparable_labels, labels_of, training_rows

KINDS = ("el2n", "grand", "vog")
ARTIFACT = "difficulty.npz"


@dataclass(frozen=True)
class DifficultyOptions:
    probe_rows: int = probe_rows_option()
    epochs: int = option(5, "el2n/grand/vog: probe training epochs.", parse=at_least(1))
    probe_epoch: int = option(
        2, "el2n/grand: the (early) epoch they are measured at.", parse=at_least(1)
    )


class DifficultyScorer(BaseScorer):
    """One trained probe, one column per kind asked for."""

    names = KINDS
    summary = (
        "el2n, grand, vog: difficulty from a probe trained --epochs epochs on --probe-rows "
        "rows' own labels (or cluster ids); high = hard or mislabeled. Needs embeddings and "
        "labels. Cost: a short SGD run, then O(epochs x classes x d) per row."
    )
    Options = DifficultyOptions
    traits = ScorerTraits(fits_model=True, reads_embeddings=True, reads_labels=True)
    name = "difficulty"
    artifacts = (ARTIFACT,)

    @classmethod
    def check(cls, options: DifficultyOptions, names: list[str]) -> None:
        if not 1 <= options.probe_epoch <= options.epochs:
            raise UsageError(f"--probe-epoch must be between 1 and --epochs ({options.epochs})")

    @classmethod
    def cost(cls, options: DifficultyOptions, rows: int) -> ScorerCost:
        return ScorerCost(timed=False, training_rows=min(rows, options.probe_rows))

    def __init__(self, names: list[str], options: DifficultyOptions, context: ScoreContext) -> None:
        self.kinds = [k for k in KINDS if k in names]
        self.label_column = context.label_column
        self.probe_rows, self.epochs = options.probe_rows, options.epochs
        self.probe_epoch = options.probe_epoch
        self.seed = context.seed
        super().__init__(names, options, context)
        self.checkpoints: np.ndarray | None = None
        self.index: LabelIndex | None = None

    def fields(self) -> list[pa.Field]:
        return [pa.field(f"score_{k}", pa.float32(), nullable=False) for k in self.kinds]

    def params(self) -> dict[str, Any]:
        return {
            "kinds": self.kinds,
            "probe_rows": self.probe_rows,
            "epochs": self.epochs,
            "probe_epoch": self.probe_epoch,
            "seed": self.seed,
        }

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        saved = saved_arrays(output, ARTIFACT)
        if saved is not None:
            self.checkpoints, self.index = saved["checkpoints"], LabelIndex(saved["classes"])
            return {"resumed": True}
        train = training_rows(reader, label_field(self.label_column), self.probe_rows, self.seed)
        self.index = LabelIndex.of(train.labels)
        y = self.index.ids(train.labels)
        weights = train_epochs(train.x, y, len(self.index.classes), self.epochs, train.keys)
        self.checkpoints = np.stack(weights)
        save_arrays(
            output, ARTIFACT, {"checkpoints": self.checkpoints, "classes": self.index.classes}
        )
        last = probabilities(self.checkpoints[-1], with_bias(train.x))
        return {"probe_rows": len(y), "train_accuracy": float((last.argmax(1) == y).mean())}

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        assert self.checkpoints is not None and self.index is not None
        assert rows.embedding is not None
        labels = labels_of(rows, label_field(self.label_column))
        labels = comparable_labels(self.index.classes, labels, "difficulty")
        x1 = with_bias(rows.embedding)
        target = one_hot(self.index.ids(labels), self.checkpoints.shape[1])
        out: dict[str, np.ndarray] = {}
        early = self.checkpoints[self.probe_epoch - 1]
        error = np.linalg.norm(probabilities(early, x1) - target, axis=1)
        if "el2n" in self.kinds:
            out["score_el2n"] = error.astype(np.float32)
        if "grand" in self.kinds:
            out["score_grand"] = (error * np.linalg.norm(x1, axis=1)).astype(np.float32)
        if "vog" in self.kinds:
            grads = np.stack(
                [(probabilities(w, x1) - target) @ w[:, :-1] for w in self.checkpoints]
            )
            out["score_vog"] = grads.var(axis=0).mean(axis=1).astype(np.float32)
        return out
