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

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.errors import UsageError
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset
from dataselect.options import at_least, one_of, option
from dataselect.sampling.feedback import FeedbackSource, ProbeFeedback, stored_feedback
from dataselect.sampling.kmeans_random import KmeansRandomStrategy
from dataselect.sampling.kmq import KmqStrategy
from dataselect.sampling.strategies import (
    Pool,
    Selection,
    allocate_weighted,
    cluster_top,
)
from dataselect.sampling.strategy import (
    AdaptiveStrategy,
    SampleContext,
    SortColumns,
    StrategyTraits,
)
from dataselect.scoring.rows import RowReader


@dataclass
class IterativeParams:
    rounds: int = 3
    temperature: float = 1.0
    shrinkage: float = 5.0
    step: float = 3.0
    max_update: float = 2.0
    first_rows: np.ndarray | None = None  # round 1's rows (pool rows), else its draw


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
    first_quota = None
    if params.first_rows is not None:  # round 1 chosen for coverage: those rows go first
        first_quota = np.bincount(pool.cluster[params.first_rows], minlength=k)
        order = rows_first(order, pool.cluster, params.first_rows)
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
        if r == 1 and first_quota is not None:
            quota, how = first_quota, "facility location, pick"
        else:
            quota, how = allocate_weighted(weights * sizes, sizes - taken, round_budget), "draw"
        rows = []
        for c in np.flatnonzero(quota):
            block = order[starts[c] + taken[c] : starts[c] + taken[c] + quota[c]]
            for rank, row in enumerate(block, start=int(taken[c]) + 1):
                reasons[row] = f"round {r}: {how} {rank} in cluster {c} (weight {weights[c]:.3f})"
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
    every = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return IterativeResult(
        selection=Selection(rows=every.astype(np.int64), reasons=reasons),
        round_of_row=round_of_row,
        rounds_done=rounds_done,
        history=history,
        weights=weights,
    )


def rows_first(order: np.ndarray, cluster: np.ndarray, first: np.ndarray) -> np.ndarray:
    """``order`` (rows grouped by cluster, each in its draw order) with the ``first`` rows
    moved to the front of their clusters, in their given order: round 1 takes them, later
    rounds go on in the draw order."""
    n = len(order)
    draw_rank = np.empty(n, dtype=np.int64)
    draw_rank[order] = np.arange(n)
    front_rank = np.full(n, -1, dtype=np.int64)
    front_rank[first] = np.arange(len(first))
    is_front = front_rank >= 0
    within = np.where(is_front, front_rank, draw_rank)
    return np.lexsort((within, ~is_front, cluster))


def within_cluster_order(pool: Pool, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Every row, grouped by cluster, each cluster's rows in the order they are drawn: kmq's
    draw (softmax(score / T)) when the pool has a score, else kmeans-random's (keyed).
    Returns (order, start of each cluster)."""
    assert pool.cluster is not None
    k = int(pool.cluster.max()) + 1
    if pool.score is None:
        rows = SortColumns(pool.keys, pool.cluster)
        group, primary, _ = KmeansRandomStrategy().sort_keys(rows)
    else:
        top = cluster_top(pool.cluster, pool.score, temperature, k)
        rows = SortColumns(pool.keys, pool.cluster, score=pool.score, top=top,
                           temperature=temperature)  # fmt: skip
        group, primary, _ = KmqStrategy().sort_keys(rows)
    order = np.lexsort((np.arange(len(pool)), primary, group))
    starts = np.searchsorted(pool.cluster[order], np.arange(k + 1))
    return order, starts


FEEDBACK_KINDS = ("probe",)


def _feedback_kind(value: Any) -> str | None:
    if value is None:
        return None
    if value not in FEEDBACK_KINDS:
        raise UsageError(
            "must be 'probe' (or left out: each round's feedback then comes from "
            "`dataselect refine OUTPUT --feedback FILE`)"
        )
    return str(value)


@dataclass(frozen=True)
class IterativeOptions:
    rounds: int = option(3, "iterative: rounds.", parse=at_least(1))
    first_round: str = option(
        "coverage",
        "iterative: round 1 is the facility-location choice of its share of the budget "
        "(coverage), or the strategy's draw (draw: kmq or kmeans-random).",
        parse=one_of("coverage", "draw"),
    )
    feedback: str | None = option(
        None,
        "iterative: 'probe' runs every round unattended; left out, each later round comes "
        "from `dataselect refine OUTPUT --feedback FILE`.",
        parse=_feedback_kind,
    )
    label_column: str | None = option(None, "iterative --feedback probe: the label column.")
    shrinkage: float = option(5.0, "iterative: rows of global mean added to each cluster's mean.")
    step: float = option(3.0, "iterative: log-weight change per standard deviation.")
    max_update: float = option(2.0, "iterative: most a round lowers a log-weight by.")
    # set by `dataselect refine`: SHA-256 of each round's stored feedback
    feedback_digests: tuple[str, ...] = option((), "iterative: rounds' feedback.", cli=False)


class IterativeStrategy(AdaptiveStrategy):
    names = ("iterative",)
    summary = (
        "--rounds rounds each add budget/rounds rows; cluster weights start uniform (round 1 "
        "= kmq) and after each round w_j *= exp(clip(step * z_j, -max_update, 0)) (only "
        "lowered, then renormalised), z_j = the cluster's mean feedback shrunk toward the "
        "global mean by --shrinkage rows, in standard deviations of the feedback. Feedback "
        "comes from --feedback probe (cross-validated log-likelihood of each selected row's "
        "own label minus that of the probe's average class: unattended) or, round by round, "
        "from `dataselect refine`."
    )
    Options = IterativeOptions
    options: IterativeOptions
    traits = StrategyTraits(needs_clusters=True, streams=False, stratifies=False)

    @classmethod
    def check(cls, options: IterativeOptions, config: Any) -> None:
        if options.feedback == "probe" and not options.label_column:
            raise UsageError("--feedback probe needs --label-column")
        if config.budget_tokens is not None:
            raise UsageError("--budget-tokens does not work with --strategy iterative")
        if options.shrinkage < 0 or options.step <= 0 or options.max_update <= 0:
            raise UsageError("--shrinkage must be >= 0, --step and --max-update positive")

    @classmethod
    def cost_notes(cls, options: IterativeOptions) -> list[str]:
        if options.feedback == "probe":
            return ["not timed: the probe fits of --feedback probe (5 per round)"]
        return []

    def prepare(self, dataset: InputDataset) -> None:
        self.probe_reader: RowReader | None = None
        if self.options.feedback == "probe":
            self.probe_reader = RowReader(dataset.path, label_column=self.options.label_column,
                                          dataset=dataset)  # fmt: skip
            self.probe_reader.check(["embedding", "label"])

    def choose(self, pool: Pool, budget: int, context: SampleContext) -> Selection:
        o = self.options
        first = None
        if o.first_round == "coverage":  # round 1 as facility-location would choose it
            from dataselect.sampling.facility_location import FacilityLocationStrategy

            round_one = round_budgets(budget, o.rounds)[0]
            first = FacilityLocationStrategy().choose(pool, round_one, context).rows
        params = IterativeParams(o.rounds, context.temperature, o.shrinkage, o.step,
                                 o.max_update, first)  # fmt: skip
        source: FeedbackSource
        if self.probe_reader is not None:
            source = ProbeFeedback(self.probe_reader, context.ids, context.seed)
        else:
            assert context.output is not None
            source = stored_feedback(context.output.folder, o.feedback_digests, context.ids)
        self.result = run_iterative(pool, budget, params, source)
        return self.result.selection

    def decision_columns(self, rows: np.ndarray) -> dict[str, pa.Array]:
        return {"round": pa.array(self.result.round_of_row).take(pa.array(rows))}

    def facts(self, output: StageOutput, context: SampleContext) -> dict[str, Any]:
        result, rounds = self.result, self.options.rounds
        facts: dict[str, Any] = {
            "rounds": rounds,
            "rounds_done": result.rounds_done,
            "complete": result.rounds_done == rounds,
            "round_history": result.history,
            "next_weights": [round(float(w), 6) for w in result.weights],
        }
        if result.rounds_done < rounds:
            # the folder is filled in by the summary (StageResult.summary): the stored facts
            # stay the same wherever the folder is
            facts["next"] = "dataselect refine {folder} --feedback FILE"
        return facts
