"""Iterative refinement of cluster weights from training feedback (iterative kMQ, from
"Diversify and Conquer").

R rounds each add budget / R rows (the first rounds take the remainder). A round allocates
its rows to clusters in proportion to w_j * size_j (water-filled under the rows each
cluster has left), and within a cluster takes the next rows of the kmq draw
(softmax(score / T), or uniform without a score), so round 1 is exactly kmq.

After a round, feedback f_i on the rows selected so far (higher = better) updates the
weights. With mu and sigma the mean and standard deviation of f over those rows, S_j and n_j
the sum and count of f in cluster j:

    s_j = (S_j + m * mu) / (n_j + m)                    shrunk cluster mean (m = --shrinkage)
    z_j = (s_j - mu) / sigma                            in standard deviations of the feedback
    w_j <- w_j * exp(clip(eta * z_j, -b, 0))            eta = --step, b = --max-update
    w   <- w / mean(w)

Why: a cluster's mean over one or two rows is noise; shrinking it toward the global mean by
its count keeps a cluster's weight from swinging on one row, and an unprobed cluster keeps
its weight. Dividing by sigma makes the step mean the same for any feedback scale
(log-likelihoods, rewards, accuracies). The update only lowers weights, by at most e^-b per
round; renormalising hands what low clusters lose to all others in proportion. Raising
above-average clusters too (a bound of [-b, b]) concentrated the budget on a few easy
clusters: on banking77 with off-domain junk (scripts/bench/selection_quality.py) it cut
probe accuracy from 0.745 to 0.711 at step 2 for little less junk. Feedback is there to
filter noisy clusters, not to pick favourites, so the selection keeps its diversity.
The transform exp(.) is positive, so weights stay positive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataselect.sampling.strategies import Pool, Selection, allocate_weighted, within_cluster_order


@dataclass
class IterativeParams:
    rounds: int = 3
    temperature: float = 1.0
    shrinkage: float = 5.0
    step: float = 3.0
    max_update: float = 2.0


@dataclass
class Feedback:
    """Feedback for some pool rows (indices into the pool), higher = better."""

    rows: np.ndarray
    values: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)


# feedback(round, rows selected so far) -> Feedback, or None when it is not there yet
FeedbackSource = Callable[[int, np.ndarray], "Feedback | None"]


@dataclass
class IterativeResult:
    selection: Selection
    round_of_row: np.ndarray  # 0 = not selected, else the round that selected the row
    rounds_done: int
    history: list[dict[str, Any]]
    weights: np.ndarray  # the weights the next round would use


def round_budgets(budget: int, rounds: int) -> list[int]:
    """budget // rounds each; the first ``budget % rounds`` rounds take one more."""
    base, extra = divmod(budget, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def update_weights(
    weights: np.ndarray, cluster: np.ndarray, values: np.ndarray, params: IterativeParams
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """One multiplicative update (formula in the module docstring).

    Returns the new weights, each cluster's shrunk mean s_j, and facts about the feedback.
    """
    k = len(weights)
    mu = float(values.mean())
    sigma = float(values.std())
    sums = np.bincount(cluster, weights=values, minlength=k)
    counts = np.bincount(cluster, minlength=k).astype(np.float64)
    shrunk = (sums + params.shrinkage * mu) / (counts + params.shrinkage)
    if sigma <= 1e-12 * max(1.0, abs(mu)):  # constant feedback says nothing
        factor = np.ones(k)
    else:
        factor = np.exp(np.clip(params.step * (shrunk - mu) / sigma, -params.max_update, 0.0))
    new = weights * factor
    new = new / new.mean()
    return new, shrunk, {"mean": mu, "sd": sigma, "rows": int(len(values))}


def run_iterative(
    pool: Pool, budget: int, params: IterativeParams, feedback: FeedbackSource
) -> IterativeResult:
    """Run rounds until all are done or the feedback for the next one is not there yet."""
    assert pool.cluster is not None
    n = len(pool)
    k = int(pool.cluster.max()) + 1
    sizes = np.bincount(pool.cluster, minlength=k)
    order, starts = within_cluster_order(pool, params.temperature)
    taken = np.zeros(k, dtype=np.int64)
    weights = np.ones(k)
    round_of_row = np.zeros(n, dtype=np.int32)
    reasons = np.full(n, "not selected", dtype=object)
    picked: list[np.ndarray] = []
    history: list[dict[str, Any]] = []
    rounds_done = 0
    for r, round_budget in enumerate(round_budgets(budget, params.rounds), start=1):
        if r > 1:
            so_far = np.concatenate(picked)
            given = feedback(r - 1, so_far)
            if given is None:
                break
            weights, shrunk, facts = update_weights(
                weights, pool.cluster[given.rows], given.values, params
            )
            history[-1]["feedback"] = {**facts, **given.facts}
            history[-1]["cluster_feedback"] = [round(float(v), 6) for v in shrunk]
        quota = allocate_weighted(weights * sizes, sizes - taken, round_budget)
        rows = []
        for c in np.flatnonzero(quota):
            block = order[starts[c] + taken[c] : starts[c] + taken[c] + quota[c]]
            for rank, row in enumerate(block, start=int(taken[c]) + 1):
                reasons[row] = f"round {r}: draw {rank} in cluster {c} (weight {weights[c]:.3f})"
            rows.append(block)
        taken += quota
        chosen = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        round_of_row[chosen] = r
        picked.append(chosen)
        history.append(
            {
                "round": r,
                "budget": int(round_budget),
                "weights": [round(float(w), 6) for w in weights],
                "rows_per_cluster": {str(c): int(q) for c, q in enumerate(quota) if q},
            }
        )
        rounds_done = r
    rows = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return IterativeResult(
        selection=Selection(rows=rows.astype(np.int64), reasons=reasons),
        round_of_row=round_of_row,
        rounds_done=rounds_done,
        history=history,
        weights=weights,
    )
