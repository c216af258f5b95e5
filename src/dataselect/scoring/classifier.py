"""PreSelect-style quality classifier: logistic regression on hashed word n-grams (log
counts, L2-normalised) separating the user's positive examples from negative ones;
score = P(positive). The model is a plain .npz (weights, bias), reusable with --model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from dataselect.embedding.text import TextSpec
from dataselect.errors import DataError, UsageError
from dataselect.io.output import StageOutput
from dataselect.numeric import one_blas_thread
from dataselect.options import option, positive_number
from dataselect.scoring.ngrams import N_FEATURES, NGRAMS, ngram_counts
from dataselect.scoring.rows import RowReader, Rows
from dataselect.scoring.scorer import (
    BaseScorer,
    ScoreContext,
    ScorerTraits,
    file_digest,
    reference_text_option,
    save_arrays,
    saved_arrays,
)

if TYPE_CHECKING:
    import scipy.sparse as sp

ARTIFACT = "classifier.npz"


def features(texts: list[str]) -> sp.csr_matrix:
    from sklearn.preprocessing import normalize

    counts = ngram_counts(texts)
    counts.data = np.log1p(counts.data)
    return normalize(counts)


@dataclass(frozen=True)
class ClassifierOptions:
    positives: str | None = option(None, "classifier: good examples.", path=True)
    negatives: str | None = option(None, "classifier: bad examples.", path=True)
    model: str | None = option(None, "classifier: reuse a fitted classifier.npz.", path=True)
    reference_text_column: str | None = reference_text_option()
    classifier_c: float = option(
        1.0, "classifier: inverse L2 strength of the logistic regression.", cli=False,
        parse=positive_number,
    )  # fmt: skip


class ClassifierScorer(BaseScorer):
    names = ("classifier",)
    summary = (
        "P(positive) of a logistic regression on hashed n-grams (PreSelect-style). Needs text "
        "and --positives/--negatives, or --model (a classifier.npz from an earlier run). "
        "Cost: a fit on the examples, then a sparse product per row."
    )
    Options = ClassifierOptions
    traits = ScorerTraits(fits_model=True, reads_text=True)
    name = "classifier"
    artifacts = (ARTIFACT,)

    @classmethod
    def check(cls, options: ClassifierOptions, names: list[str]) -> None:
        if options.model is None and (options.positives is None or options.negatives is None):
            raise UsageError("--scorer classifier needs --positives and --negatives, or --model")

    def __init__(self, names: list[str], options: ClassifierOptions, context: ScoreContext) -> None:
        super().__init__(names, options, context)
        self.positives, self.negatives = options.positives, options.negatives
        self.model = options.model
        column = options.reference_text_column
        self.reference_text = TextSpec(column) if column else None
        self.regularisation = options.classifier_c
        self.seed = context.seed
        self.weights: np.ndarray | None = None
        self.bias = 0.0

    def fields(self) -> list[pa.Field]:
        return [pa.field("score_classifier", pa.float32(), nullable=False)]

    def params(self) -> dict[str, Any]:
        if self.model:
            return {"model_sha256": file_digest(self.model)}
        return {
            "positives_sha256": file_digest(self.positives or ""),
            "negatives_sha256": file_digest(self.negatives or ""),
            "n_features": N_FEATURES,
            "ngrams": list(NGRAMS),
            "C": self.regularisation,
            "seed": self.seed,
        }

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        saved = saved_arrays(output, ARTIFACT)
        if saved is None and self.model:
            saved = load_model(self.model)
        if saved is not None:
            self.weights, self.bias = saved["weights"], float(saved["bias"])
            if output.saved_artifact(ARTIFACT) is None:  # a given --model: keep a copy
                save_arrays(output, ARTIFACT, saved)
            return {"model": "given" if self.model else "resumed"}
        texts: list[list[str]] = []
        for path, what in ((self.positives, "--positives"), (self.negatives, "--negatives")):
            source = RowReader(str(path), text=self.reference_text or reader.text, what=what)
            source.check(["text"])
            texts.append([t for rows in source.iter_rows(["text"]) for t in rows.text or []])
            if not texts[-1]:
                raise DataError(f"{path}: {what} holds no rows")
        x = features(texts[0] + texts[1])
        y = np.r_[np.ones(len(texts[0])), np.zeros(len(texts[1]))]
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(
            C=self.regularisation, solver="liblinear", random_state=self.seed, max_iter=1000
        )
        one_blas_thread(model.fit)(x, y)
        self.weights = model.coef_.ravel().astype(np.float64)
        self.bias = float(model.intercept_[0])
        save_arrays(output, ARTIFACT, {"weights": self.weights, "bias": np.array(self.bias)})
        accuracy = float(model.score(x, y))
        return {"positives": len(texts[0]), "negatives": len(texts[1]), "train_accuracy": accuracy}

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        assert rows.text is not None and self.weights is not None
        logits = features(rows.text) @ self.weights + self.bias
        return {"score_classifier": (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)}


def load_model(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a classifier model (.npz) ({exc})") from exc
    weights = arrays.get("weights")
    if weights is None or "bias" not in arrays or weights.shape != (N_FEATURES,):
        raise DataError(
            f"{path}: not a classifier model of this version (needs weights[{N_FEATURES}], bias)"
        )
    return {"weights": weights.astype(np.float64), "bias": np.asarray(arrays["bias"])}
