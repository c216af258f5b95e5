"""A multinomial logistic-regression probe on embeddings, with its exact gradients and
Hessian-vector products, for the influence, difficulty and label-agreement scorers.

Weights W are (classes, d + 1): the last input is a constant 1 (the bias, regularised like
the rest, so the objective below is exactly what the Hessian describes):

    f(W) = mean_i CE(softmax(W x_i), y_i) + l2 / 2 * ||W||^2

Everything is float64 and full-batch (L-BFGS), so a fit is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dataselect.errors import DataError
from dataselect.numeric import one_blas_thread


@dataclass
class LabelIndex:
    """Class ids for label values (sorted, so the same labels give the same ids)."""

    classes: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray) -> LabelIndex:
        classes = np.unique(_plain(labels))
        if len(classes) < 2:
            raise DataError(f"a probe needs at least 2 distinct labels, found {len(classes)}")
        return cls(classes)

    def ids(self, labels: np.ndarray) -> np.ndarray:
        """Class id per label; -1 for a label the probe never saw."""
        labels = _plain(labels)
        position = np.searchsorted(self.classes, labels)
        position = np.minimum(position, len(self.classes) - 1)
        known = self.classes[position] == labels
        return np.where(known, position, -1).astype(np.int64)


def _plain(labels: np.ndarray) -> np.ndarray:
    """Text labels as a fixed-width str array (saved in .npz without pickle)."""
    return labels.astype(str) if labels.dtype.kind in "OS" else labels


def with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])


def probabilities(weights: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """softmax(W x) per row, for inputs that already carry the bias column."""
    logits = x1 @ weights.T
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def one_hot(y: np.ndarray, classes: int) -> np.ndarray:
    """Rows of zeros for unknown labels (-1): such a row agrees with no class."""
    out = np.zeros((len(y), classes))
    known = y >= 0
    out[np.flatnonzero(known), y[known]] = 1.0
    return out


def mean_loss_gradient(weights: np.ndarray, x1: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of the unregularised mean cross-entropy."""
    residual = probabilities(weights, x1) - one_hot(y, len(weights))
    return residual.T @ x1 / len(x1)


def mean_loss(weights: np.ndarray, x1: np.ndarray, y: np.ndarray) -> float:
    p = probabilities(weights, x1)
    picked = p[np.arange(len(y)), np.maximum(y, 0)]
    return float(-np.log(np.maximum(picked, 1e-300)).mean())


@one_blas_thread
def fit_probe(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    l2: float,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 500,
) -> np.ndarray:
    """The minimiser of f(W) (weighted mean when ``sample_weight`` is given)."""
    x1 = with_bias(x)
    target = one_hot(y, classes)
    weight = np.ones(len(x1)) if sample_weight is None else np.asarray(sample_weight, float)
    total = weight.sum()

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w = flat.reshape(classes, -1)
        logits = x1 @ w.T
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        loss = float((weight * (log_norm - (logits * target).sum(axis=1))).sum() / total)
        p = np.exp(logits - log_norm[:, None])
        grad = ((p - target) * weight[:, None]).T @ x1 / total
        loss += 0.5 * l2 * float((w * w).sum())
        return loss, (grad + l2 * w).ravel()

    from scipy.optimize import minimize

    start = np.zeros(classes * x1.shape[1])
    result = minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-9, "ftol": 1e-14},
    )
    return result.x.reshape(classes, -1)


def hessian_vector(p: np.ndarray, x1: np.ndarray, v: np.ndarray, l2: float) -> np.ndarray:
    """(H + l2 I) v for the probe's exact Hessian at probabilities ``p`` (n x classes):
    H v = mean_i x_i (diag(p_i) - p_i p_i^T) (V x_i)^T, never forming H."""
    a = x1 @ v.T
    b = p * a - p * (p * a).sum(axis=1, keepdims=True)
    return b.T @ x1 / len(x1) + l2 * v


@one_blas_thread
def solve_hessian(
    weights: np.ndarray, x1: np.ndarray, rhs: np.ndarray, l2: float, tol: float = 1e-10
) -> np.ndarray:
    """(H + l2 I)^-1 rhs by conjugate gradients on exact Hessian-vector products (H is
    positive definite with l2 > 0; classes x (d + 1) can be far too large to form)."""
    p = probabilities(weights, x1)
    return conjugate_gradient(lambda v: hessian_vector(p, x1, v, l2), rhs, tol)


def conjugate_gradient(
    apply: Callable[[np.ndarray], np.ndarray], rhs: np.ndarray, tol: float, max_iter: int = 2000
) -> np.ndarray:
    x = np.zeros_like(rhs)
    r = rhs.copy()
    d = r.copy()
    rr = float((r * r).sum())
    stop = tol * tol * max(rr, 1e-300)
    for _ in range(max_iter):
        if rr <= stop:
            break
        ad = apply(d)
        step = rr / float((d * ad).sum())
        x += step * d
        r -= step * ad
        new = float((r * r).sum())
        d = r + (new / rr) * d
        rr = new
    return x


@one_blas_thread
def train_epochs(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    epochs: int,
    order_keys: np.ndarray,
    learning_rate: float = 1.0,
    batch_rows: int = 64,
    l2: float = 1e-4,
) -> list[np.ndarray]:
    """Mini-batch SGD from zero weights, the weights after each epoch (the checkpoints).

    Each epoch visits rows in the order of ``order_keys`` rotated by the epoch (keys come
    from (seed, id): no processing-order randomness)."""
    x1 = with_bias(x)
    target = one_hot(y, classes)
    weights = np.zeros((classes, x1.shape[1]))
    base = np.argsort(order_keys, kind="stable")
    checkpoints = []
    for epoch in range(epochs):
        order = np.roll(base, -(epoch * len(base)) // max(epochs, 1))
        for start in range(0, len(order), batch_rows):
            rows = order[start : start + batch_rows]
            residual = probabilities(weights, x1[rows]) - target[rows]
            grad = residual.T @ x1[rows] / len(rows) + l2 * weights
            weights -= learning_rate * grad
        checkpoints.append(weights.copy())
    return checkpoints
