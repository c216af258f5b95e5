"""Cheap text-quality heuristics of the kind large curation pipelines apply (Gopher, C4).

Per row: words, the alphabetic fraction of non-space characters, and the repeated n-gram
fraction (word 3-grams, or words for texts under 6 words, that repeat an earlier one). The
combined score is the product of three factors in [0, 1]:

- length: min(1, words / 3): rows of fewer than 3 words are cut proportionally;
- letters: 0 at or under 40% alphabetic characters, 1 at or over 70%, linear between;
- repetition: 1 at or under 20% repeated n-grams, 0 at or over 50%, linear between.

So a clean sentence scores 1; empty rows, symbol soup and repeated tokens score near 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.io.output import StageOutput
from dataselect.options import NoOptions
from dataselect.scoring.rows import RowReader, Rows
from dataselect.scoring.scorer import BaseScorer, ScoreContext, ScorerTraits

MIN_WORDS = 3
ALPHA_LOW, ALPHA_HIGH = 0.4, 0.7
REPEAT_LOW, REPEAT_HIGH = 0.2, 0.5
NGRAM = 3


def text_features(text: str) -> tuple[int, float, float]:
    """(words, alphabetic fraction, repeated n-gram fraction) of one text."""
    words = text.lower().split()
    letters = sum(map(str.isalpha, text))
    visible = len(text) - sum(map(str.isspace, text))
    alpha = letters / visible if visible else 0.0
    n = NGRAM if len(words) >= 2 * NGRAM else 1
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    repeated = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    return len(words), alpha, repeated


def quality(words: np.ndarray, alpha: np.ndarray, repeated: np.ndarray) -> np.ndarray:
    length = np.minimum(1.0, words / MIN_WORDS)
    letters = np.clip((alpha - ALPHA_LOW) / (ALPHA_HIGH - ALPHA_LOW), 0.0, 1.0)
    repetition = np.clip((REPEAT_HIGH - repeated) / (REPEAT_HIGH - REPEAT_LOW), 0.0, 1.0)
    return length * letters * repetition


class HeuristicScorer(BaseScorer):
    """Length, letters and repetition, and their combined quality in [0, 1]."""

    names = ("heuristic",)
    summary = (
        "text quality from length, letters and repeated n-grams, in [0, 1] (also "
        "heuristic_words, heuristic_alpha, heuristic_repetition). Needs text. Cost: one pass, "
        "~10k rows/s."
    )
    traits = ScorerTraits(reads_text=True)
    name = "heuristic"

    def __init__(self, names: list[str], options: NoOptions, context: ScoreContext) -> None:
        super().__init__(names, options, context)

    def fields(self) -> list[pa.Field]:
        return [
            pa.field("score_heuristic", pa.float32(), nullable=False),
            pa.field("heuristic_words", pa.int32(), nullable=False),
            pa.field("heuristic_alpha", pa.float32(), nullable=False),
            pa.field("heuristic_repetition", pa.float32(), nullable=False),
        ]

    def params(self) -> dict[str, Any]:
        return {
            "min_words": MIN_WORDS,
            "alpha": [ALPHA_LOW, ALPHA_HIGH],
            "repetition": [REPEAT_LOW, REPEAT_HIGH],
            "ngram": NGRAM,
        }

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        return {}

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        assert rows.text is not None
        features = np.array([text_features(t) for t in rows.text], dtype=np.float64)
        features = features.reshape(-1, 3)
        words, alpha, repeated = features[:, 0], features[:, 1], features[:, 2]
        return {
            "score_heuristic": quality(words, alpha, repeated).astype(np.float32),
            "heuristic_words": words.astype(np.int32),
            "heuristic_alpha": alpha.astype(np.float32),
            "heuristic_repetition": repeated.astype(np.float32),
        }
