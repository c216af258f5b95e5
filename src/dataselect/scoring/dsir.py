"""DSIR-style target relevance (Xie et al. 2023): two bag-of-hashed-n-gram models, one of a
small target corpus and one of the raw corpus (this input); a row scores

    log p_target(x) - log p_raw(x) = sum_f count(x, f) * (log p_target(f) - log p_raw(f)),

high for rows that look like the target. Costs one extra pass over the input's text to
count the raw model (kept as dsir.npz, so a resumed run skips it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.embedding.text import TextSpec
from dataselect.errors import DataError, UsageError
from dataselect.io.output import StageOutput
from dataselect.options import option
from dataselect.scoring.ngrams import (
    N_FEATURES,
    NGRAMS,
    log_frequencies,
    ngram_counts,
    total_counts,
)
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

ARTIFACT = "dsir.npz"


@dataclass(frozen=True)
class DsirOptions:
    target: str | None = option(None, "dsir: corpus of the wanted text.", path=True)
    reference_text_column: str | None = reference_text_option()


class DsirScorer(BaseScorer):
    names = ("dsir",)
    summary = (
        "log p_target(x) - log p_raw(x) under hashed word 1-2-gram models: how much a row "
        "looks like --target. Needs text and --target. Cost: one extra pass to count this "
        "input."
    )
    Options = DsirOptions
    traits = ScorerTraits(fits_model=True, reads_text=True)
    name = "dsir"
    artifacts = (ARTIFACT,)

    @classmethod
    def check(cls, options: DsirOptions, names: list[str]) -> None:
        if not options.target:
            raise UsageError("--scorer dsir needs --target (a corpus of the text you want)")

    def __init__(self, names: list[str], options: DsirOptions, context: ScoreContext) -> None:
        super().__init__(names, options, context)
        self.target = str(options.target)
        column = options.reference_text_column
        self.target_text = TextSpec(column) if column else None
        self.log_ratio: np.ndarray | None = None

    def fields(self) -> list[pa.Field]:
        return [pa.field("score_dsir", pa.float32(), nullable=False)]

    def params(self) -> dict[str, Any]:
        return {
            "target_sha256": file_digest(self.target),
            "n_features": N_FEATURES,
            "ngrams": list(NGRAMS),
            "smoothing": 1.0,
        }

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        saved = saved_arrays(output, ARTIFACT)
        if saved is not None:
            self.log_ratio = saved["log_ratio"]
            return {"resumed": True}
        target = RowReader(self.target, text=self.target_text or reader.text, what="--target")
        target.check(["text"])
        target_counts = total_counts(r.text or [] for r in target.iter_rows(["text"]))
        if not target_counts.any():
            raise DataError(f"{self.target}: the target corpus holds no words")
        raw_counts = total_counts(r.text or [] for r in reader.iter_rows(["text"]))
        self.log_ratio = log_frequencies(target_counts) - log_frequencies(raw_counts)
        save_arrays(output, ARTIFACT, {"log_ratio": self.log_ratio})
        return {"target_rows": target.rows, "target_ngrams": int(target_counts.sum())}

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        assert rows.text is not None and self.log_ratio is not None
        return {"score_dsir": (ngram_counts(rows.text) @ self.log_ratio).astype(np.float32)}
