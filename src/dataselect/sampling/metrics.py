"""Diversity metrics of a selection: Vendi scores, cluster coverage and entropy.

Vendi score of order q (Friedman & Dieng; Pasarkar & Dieng for q != 1): exp of the Renyi
entropy of the eigenvalues of K / n, K the cosine-similarity matrix of the n rows. With unit
rows X (n x d), K / n = X X^T / n has the same non-zero eigenvalues as X^T X / n (d x d), so
the score costs O(n d^2), not O(n^2 d). q = 1: exp(Shannon entropy); q = 2: 1 / sum(l^2);
q = inf: 1 / max(l).
"""

from __future__ import annotations

import math

import numpy as np


def vendi_eigenvalues(vectors: np.ndarray) -> np.ndarray:
    """Eigenvalues of X^T X / n (the non-zero spectrum of K / n), clipped at 0."""
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) == 0:
        return np.zeros(0)
    gram = x.T @ x / len(x)
    return np.clip(np.linalg.eigvalsh(gram), 0.0, None)


def vendi_from_eigenvalues(eigenvalues: np.ndarray, q: float) -> float:
    lam = eigenvalues[eigenvalues > 1e-12]
    if len(lam) == 0:
        return 0.0
    lam = lam / lam.sum()
    if q == 1:
        return float(math.exp(-(lam * np.log(lam)).sum()))
    if math.isinf(q):
        return float(1.0 / lam.max())
    return float(((lam**q).sum()) ** (1.0 / (1.0 - q)))


def vendi_scores(vectors: np.ndarray) -> dict[str, float]:
    """Vendi scores of orders 1, 2 and inf, from one eigendecomposition."""
    eigenvalues = vendi_eigenvalues(vectors)
    return {
        "q1": round(vendi_from_eigenvalues(eigenvalues, 1), 4),
        "q2": round(vendi_from_eigenvalues(eigenvalues, 2), 4),
        "qinf": round(vendi_from_eigenvalues(eigenvalues, math.inf), 4),
    }


def cluster_coverage(selected_clusters: np.ndarray, k: int) -> float:
    """Share of clusters with at least one selected row."""
    return float(len(np.unique(selected_clusters)) / k) if k else 0.0


def cluster_entropy(selected_clusters: np.ndarray) -> float:
    """Shannon entropy (nats) of the selected rows' cluster distribution."""
    return counts_entropy(np.unique(selected_clusters, return_counts=True)[1])


def counts_entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of a distribution given as counts (zeros are skipped)."""
    counts = np.asarray(counts, dtype=np.float64)
    counts = counts[counts > 0]
    if len(counts) == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())
