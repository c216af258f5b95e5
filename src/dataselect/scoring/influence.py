"""Influence of each row on a reference loss, through a logistic-regression probe.

The probe W is fitted on the reference rows' embeddings and labels (the user's labels, or
the reference rows' nearest centroids when there are none). Adding a row z to the probe's
training objective with weight eps moves W by -eps (H + l2 I)^-1 g_z (H: the probe's exact
Hessian, g_z: the gradient of z's loss), and so changes the reference loss by

    I(z) = -g_ref^T (H + l2 I)^-1 g_z      (Koh and Liang 2017),

g_ref being the gradient of the (unregularised) mean reference loss. The column holds
score_influence = -I(z): the reduction of the reference loss that adding z would bring, so
higher is better, as for every other score. It is large for rows whose label the reference
agrees with while the probe is still unsure of it, negative for rows whose label it
contradicts (label noise, off-domain rows).

Cost: one L-BFGS fit on the reference, one conjugate-gradient solve with exact
Hessian-vector products (H is never formed), then O(classes x d) per row.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.errors import DataError, DataselectError, UsageError
from dataselect.io.folder_state import artifact_bytes
from dataselect.io.output import StageOutput
from dataselect.io.sources import open_input
from dataselect.manifest import read_manifest
from dataselect.options import option
from dataselect.scoring.probe import (
    LabelIndex,
    fit_probe,
    mean_loss_gradient,
    one_hot,
    probabilities,
    solve_hessian,
    with_bias,
)
from dataselect.scoring.rows import RowReader, Rows
from dataselect.scoring.scorer import (
    BaseScorer,
    ScoreContext,
    ScorerCost,
    ScorerTraits,
    file_digest,
    l2_option,
    label_field,
    save_arrays,
    saved_arrays,
)
from dataselect.scoring.training import comparable_labels, labels_of

ARTIFACT = "influence.npz"


@dataclass(frozen=True)
class InfluenceOptions:
    reference: str | None = option(None, "influence: embed folder of the reference set.", path=True)
    l2: float = l2_option()


class InfluenceScorer(BaseScorer):
    names = ("influence",)
    summary = (
        "reduction of the --reference loss if the row were added to a probe fitted on the "
        "reference (exact Hessian, -I(z) of Koh and Liang). Needs embeddings, --reference (an "
        "embed folder, same embedder) and --label-column in both (or cluster ids via the "
        "centroids). Cost: one fit + one conjugate-gradient solve, then O(classes x d) per row."
    )
    Options = InfluenceOptions
    traits = ScorerTraits(fits_model=True, reads_embeddings=True, reads_labels=True)
    name = "influence"
    artifacts = (ARTIFACT,)

    @classmethod
    def check(cls, options: InfluenceOptions, names: list[str]) -> None:
        if not options.reference:
            raise UsageError("--scorer influence needs --reference (an embed folder)")

    @classmethod
    def cost(cls, options: InfluenceOptions, rows: int) -> ScorerCost:
        """Its fit holds the reference's embeddings."""
        try:
            reference_rows = open_input(str(options.reference)).rows or 0
        except DataselectError:
            reference_rows = 0  # the run says what is wrong with it
        return ScorerCost(timed=False, training_rows=reference_rows)

    def __init__(self, names: list[str], options: InfluenceOptions, context: ScoreContext) -> None:
        self.reference = str(options.reference)
        self.label_column = context.label_column
        self.l2 = options.l2
        super().__init__(names, options, context)
        self.weights: np.ndarray | None = None
        self.direction: np.ndarray | None = None
        self.index: LabelIndex | None = None

    def fields(self) -> list[pa.Field]:
        return [pa.field("score_influence", pa.float32(), nullable=False)]

    def params(self) -> dict[str, Any]:
        return {"reference_sha256": file_digest(self.reference), "l2": self.l2}

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        saved = saved_arrays(output, ARTIFACT)
        if saved is not None:
            self.weights, self.direction = saved["weights"], saved["direction"]
            self.index = LabelIndex(saved["classes"])
            return {"resumed": True}
        x, labels = self._reference(reader)
        self.index = LabelIndex.of(labels)
        y = self.index.ids(labels)
        classes = len(self.index.classes)
        self.weights, self.direction = influence_direction(x, y, classes, self.l2)
        x1 = with_bias(x)
        save_arrays(
            output,
            ARTIFACT,
            {"weights": self.weights, "direction": self.direction, "classes": self.index.classes},
        )
        accuracy = float((probabilities(self.weights, x1).argmax(axis=1) == y).mean())
        return {"reference_rows": len(x), "classes": classes, "reference_accuracy": accuracy}

    def _reference(self, reader: RowReader) -> tuple[np.ndarray, np.ndarray]:
        """The reference rows' embeddings and labels (cluster ids by nearest centroid when
        there is no label column)."""
        reference = RowReader(self.reference, label_column=self.label_column, what="--reference")
        fields = ["embedding"] + (["label"] if self.label_column else [])
        reference.check(fields)
        if reference.dim != reader.dim:
            raise DataError(
                f"{self.reference}: embeddings of dimension {reference.dim}, the input's have "
                f"{reader.dim} (embed both with the same embedder)"
            )
        xs, labels = [], []
        for rows in reference.iter_rows(fields):
            assert rows.embedding is not None
            xs.append(rows.embedding)
            if rows.label is not None:
                labels.append(rows.label)
        x = np.concatenate(xs) if xs else np.zeros((0, reader.dim), np.float32)
        if len(x) == 0:
            raise DataError(f"{self.reference}: the reference holds no rows")
        if self.label_column:
            return x, np.concatenate(labels)
        folder = reader.lineage.cluster_folder if reader.lineage else None
        if folder is None:
            raise DataError(
                f"{reader.path}: without --label-column, influence needs a cluster folder as "
                "input (cluster ids serve as labels)"
            )
        from dataselect.clustering.kmeans import Assigner
        from dataselect.clustering.stage import CENTROIDS

        metric = read_manifest(folder).params.get("metric", "cosine")
        data = artifact_bytes(folder, CENTROIDS)
        if data is None:
            raise DataError(f"{folder}: no {CENTROIDS} (rerun the cluster stage)")
        centroids = np.load(io.BytesIO(data), allow_pickle=False)
        clusters, _ = Assigner(centroids, metric).assign(np.ascontiguousarray(x))
        return x, clusters.astype(np.int32)

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        assert self.weights is not None and self.direction is not None and self.index
        assert rows.embedding is not None
        labels = labels_of(rows, label_field(self.label_column))
        labels = comparable_labels(self.index.classes, labels, "influence")
        value = influence_scores(
            self.weights, self.direction, rows.embedding, self.index.ids(labels)
        )
        return {"score_influence": value.astype(np.float32)}


def influence_direction(
    x: np.ndarray, y: np.ndarray, classes: int, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """The probe fitted on (x, y) and s = (H + l2 I)^-1 g_ref at it."""
    weights = fit_probe(x, y, classes, l2)
    x1 = with_bias(x)
    gradient = mean_loss_gradient(weights, x1, y)
    return weights, solve_hessian(weights, x1, gradient, l2)


def influence_scores(
    weights: np.ndarray, direction: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """-I(z) = s . g_z per row, with g_z = (softmax(W z) - onehot(y)) outer (z, 1)."""
    x1 = with_bias(x)
    residual = probabilities(weights, x1) - one_hot(y, len(weights))
    return (residual * (x1 @ direction.T)).sum(axis=1)
