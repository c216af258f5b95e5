"""Hashed word n-gram counts (unigrams and bigrams into 2^18 buckets), shared by the DSIR
and classifier scorers. scikit-learn's HashingVectorizer: stateless, a fixed MurmurHash3
seed, so the same text gives the same features in every process."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import scipy.sparse as sp

N_FEATURES = 1 << 18
NGRAMS = (1, 2)


@cache
def _vectorizer() -> Any:
    """Built on first use: importing scikit-learn costs every command most of a second."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=N_FEATURES,
        ngram_range=NGRAMS,
        alternate_sign=False,
        norm=None,
        dtype=np.float64,
    )


def ngram_counts(texts: list[str]) -> sp.csr_matrix:
    """rows x N_FEATURES counts of hashed word unigrams and bigrams."""
    return _vectorizer().transform(texts).tocsr()


def total_counts(batches: Iterable[list[str]]) -> np.ndarray:
    """Summed counts over a corpus (a bag-of-n-grams model's sufficient statistics)."""
    total = np.zeros(N_FEATURES)
    for texts in batches:
        total += np.asarray(ngram_counts(texts).sum(axis=0)).ravel()
    return total


def log_frequencies(counts: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """log p(feature) with add-``smoothing`` (Laplace) estimates."""
    return np.log(counts + smoothing) - np.log(counts.sum() + smoothing * len(counts))
