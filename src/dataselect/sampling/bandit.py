"""Clusters as bandit arms, rewarded by a score column (after "Quad", Zhang et al. 2024).

Each arm (cluster) keeps its rows in the keyed (seed, id) order. A pull reads the arm's next
``probes`` rows in that order (wrapping around once all were read) and gets

    reward = mean score of the probes - tau

Arms are ranked by the upper confidence bound

    mean_reward_j + alpha * sd * sqrt(2 ln(total pulls) / (pulls_j + 1))

where sd is the score column's standard deviation, so alpha means the same for any score
scale. A pull with a positive reward admits the arm's next ``block`` rows not yet admitted
(fewer when the budget or the arm runs out); an arm with no rows left retires. Before any
row is admitted, every arm is pulled once (UCB1's start), so no arm wins by going first.
With a neighbour radius, a pull's reward is also credited to arms whose centroids lie
within that cosine distance, weighted 1 - distance / radius (fractional pulls).

With a coverage floor (``--coverage-floor``, a share of the budget, default half), right
after those first pulls every arm whose reward is not confidently below tau (reward +
alpha * sd / sqrt(probes) > 0) admits its share of the floor in proportion to its size,
as kmeans-random would: the arms a few lucky pulls would starve still get rows, and arms
that look like junk do not. Within an arm rows are admitted in the probes' keyed order
(uniform; the default), highest score first or closest to the centroid first (both took
near-copies of an arm's most typical rows and lost accuracy: scripts/bench/adaptive.py).

If every remaining arm keeps a reward <= 0 (2 x arms + 10 pulls in a row admit nothing),
the rest of the budget is filled from the arms with the highest mean reward, each in its
keyed order, and logged as "fill": the budget is met whenever the data has the rows.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import DataError, UsageError
from dataselect.io.folder_state import artifact_bytes
from dataselect.io.output import StageOutput
from dataselect.options import at_least, one_of, option
from dataselect.sampling.files import PULLS
from dataselect.sampling.strategies import Pool, Selection, allocate_weighted
from dataselect.sampling.strategy import AdaptiveStrategy, SampleContext, StrategyTraits

ADMIT_ORDERS = ("keyed", "score", "closest")


@dataclass
class BanditParams:
    probes: int = 10
    block: int = 5
    alpha: float = 3.0
    tau: float = 0.0
    floor: float = 0.0  # share of the budget admitted first over the arms that look fit
    admit: str = "keyed"  # the order rows are admitted in within an arm


@dataclass
class BanditResult:
    selection: Selection
    pulls: dict[str, np.ndarray]  # the pull log: pull, arm, kind, reward, ucb, admitted
    arms: list[dict[str, Any]]  # per arm: pulls, mean reward, rows admitted


class NeighbourCredit:
    """Credit weights 1 - d / radius of every arm for cosine distance d < radius to one
    arm (0 for itself), computed per pull: a k x k table would not fit for large k."""

    def __init__(self, centroids: np.ndarray, radius: float) -> None:
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        self.unit = centroids / np.maximum(norms, 1e-12)
        self.radius = radius

    def __getitem__(self, arm: int) -> np.ndarray:
        distance = 1.0 - self.unit @ self.unit[arm]
        weights = np.clip(np.where(distance < self.radius, 1.0 - distance / self.radius, 0.0),
                          0.0, 1.0)  # fmt: skip
        weights[arm] = 0.0
        return weights


def run_bandit(
    pool: Pool, budget: int, params: BanditParams, neighbours: NeighbourCredit | None = None
) -> BanditResult:
    assert pool.cluster is not None and pool.score is not None
    n = len(pool)
    k = int(pool.cluster.max()) + 1
    order = np.lexsort((np.arange(n), pool.keys, pool.cluster))  # probes: keyed order
    starts = np.searchsorted(pool.cluster[order], np.arange(k + 1))
    admit_order = order  # rows are admitted in this order within their arm
    if params.admit == "score":
        admit_order = np.lexsort((np.arange(n), pool.keys, -pool.score, pool.cluster))
    elif params.admit == "closest":
        assert pool.distance is not None
        admit_order = np.lexsort((np.arange(n), pool.keys, pool.distance, pool.cluster))
    sizes = np.diff(starts)
    spread = float(pool.score.std()) or 1.0
    reward_sum = np.zeros(k)
    pulls = np.zeros(k)  # fractional with neighbour credit
    admitted = np.zeros(k, dtype=np.int64)
    probe_cursor = np.zeros(k, dtype=np.int64)
    active = sizes > 0
    reasons = np.full(n, "not selected", dtype=object)
    chosen: list[np.ndarray] = []
    log: dict[str, list[Any]] = {k_: [] for k_ in ("pull", "arm", "kind", "reward", "ucb",
                                                    "admitted")}  # fmt: skip
    total_pulls = 0
    left = budget

    score = pool.score

    def pull(arm: int, ucb: float, kind: str) -> None:
        nonlocal total_pulls, left
        rows = order[starts[arm] : starts[arm + 1]]
        at = probe_cursor[arm] + np.arange(min(params.probes, sizes[arm]))
        probe_cursor[arm] = (probe_cursor[arm] + len(at)) % sizes[arm]
        reward = float(score[rows[at % sizes[arm]]].mean()) - params.tau
        total_pulls += 1
        reward_sum[arm] += reward
        pulls[arm] += 1
        if neighbours is not None:
            credit = neighbours[arm]
            reward_sum[:] += credit * reward
            pulls[:] += credit
        take = 0
        if kind == "pull" and reward > 0:
            take = admit(arm, params.block, f"pull {total_pulls}: reward {reward:+.4g}")
        record(arm, kind, reward, ucb, take)

    def record(arm: int, kind: str, reward: float, ucb: float, admitted: int) -> None:
        """One line of the pull log."""
        values = (total_pulls, arm, kind, reward, ucb, admitted)
        for key, value in zip(log, values, strict=True):
            log[key].append(value)

    def admit(arm: int, count: int, why: str) -> int:
        nonlocal left
        take = int(min(count, left, sizes[arm] - admitted[arm]))
        block = admit_order[starts[arm] + admitted[arm] : starts[arm] + admitted[arm] + take]
        reasons[block] = f"arm {arm}, {why}"
        chosen.append(block)
        admitted[arm] += take
        left -= take
        if admitted[arm] == sizes[arm]:
            active[arm] = False
        return take

    # UCB1's start: every arm once, in the keyed order of its first row, admitting nothing
    first_keys = np.where(sizes > 0, pool.keys[order[np.minimum(starts[:-1], n - 1)]], 0)
    for arm in np.flatnonzero(sizes > 0)[np.argsort(first_keys[sizes > 0], kind="stable")]:
        pull(int(arm), float("inf"), "start")
    if params.floor > 0:  # the coverage floor, before UCB takes over
        start = reward_sum / np.maximum(pulls, 1e-12)
        margin = params.alpha * spread / np.sqrt(np.minimum(params.probes, np.maximum(sizes, 1)))
        fit = active & (start + margin > 0)  # not confidently below tau
        floor = min(int(round(params.floor * budget)), int(sizes[fit].sum()))
        if floor:
            shares = allocate_weighted(np.where(fit, sizes, 0), np.where(fit, sizes, 0), floor)
            for arm in np.flatnonzero(shares).tolist():
                take = admit(arm, int(shares[arm]), "coverage floor")
                record(arm, "floor", float(start[arm]), float("nan"), take)
    idle = 0
    while left > 0 and active.any():
        mean = reward_sum / np.maximum(pulls, 1e-12)
        bonus = params.alpha * spread * np.sqrt(2.0 * np.log(total_pulls) / (pulls + 1.0))
        ucb = np.where(active, mean + bonus, -np.inf)
        arm = int(np.argmax(ucb))  # ties: the lowest arm id
        before = left
        pull(arm, float(ucb[arm]), "pull")
        idle = idle + 1 if left == before else 0
        if idle >= 2 * int(active.sum()) + 10:
            break
    if left > 0:  # no arm's reward stays positive: fill from the best means
        mean = reward_sum / np.maximum(pulls, 1e-12)
        for arm in np.lexsort((np.arange(k), -mean)):
            if left == 0:
                break
            if active[arm]:
                take = admit(int(arm), left, "fill (no arm kept a positive reward)")
                record(int(arm), "fill", float("nan"), float("nan"), take)
    rows = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    mean = reward_sum / np.maximum(pulls, 1e-12)
    arms = [
        {"arm": c, "size": int(sizes[c]), "pulls": round(float(pulls[c]), 3),
         "mean_reward": round(float(mean[c]), 6), "admitted": int(admitted[c])}
        for c in range(k) if sizes[c]
    ]  # fmt: skip
    return BanditResult(
        selection=Selection(rows=rows.astype(np.int64), reasons=reasons),
        pulls={key: np.asarray(values) for key, values in log.items()},
        arms=arms,
    )


def _share(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise UsageError("is a share of the budget in [0, 1]")
    return float(value)


def _radius(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 2:
        raise UsageError("is a cosine distance in (0, 2]")
    return float(value)


@dataclass(frozen=True)
class BanditOptions:
    probes: int = option(10, "bandit: rows read per pull.", parse=at_least(1))
    block: int = option(5, "bandit: rows admitted by a positive pull.", parse=at_least(1))
    alpha: float = option(3.0, "bandit: exploration, in standard deviations of the score.")
    tau: float | None = option(
        None, "bandit: reward threshold \\[default: the score column's median]."
    )
    coverage_floor: float = option(
        0.5,
        "bandit: share of the budget admitted first, in proportion to arm size, over the arms "
        "whose first pull is not confidently below tau (reward + alpha * sd / sqrt(probes) "
        "> 0); UCB spends the rest. 0: pure UCB.",
        parse=_share,
    )
    admit_order: str = option(
        "keyed",
        "bandit: the order an arm admits its rows in: keyed (the probes' order: uniform), "
        "highest score, or closest to the centroid.",
        parse=one_of(*ADMIT_ORDERS),
    )
    neighbour_radius: float | None = option(
        None,
        "bandit: also credit arms whose centroids lie within this cosine distance.",
        parse=_radius,
    )


class BanditStrategy(AdaptiveStrategy):
    names = ("bandit",)
    summary = (
        "clusters are arms; a pull reads --probes rows of an arm, reward = their mean score - "
        "tau; arms ranked by mean reward + alpha * sd(score) * sqrt(2 ln pulls / (pulls_j + "
        "1)); a positive reward admits --block rows. The pull log is OUTPUT/pulls.parquet."
    )
    Options = BanditOptions
    options: BanditOptions
    traits = StrategyTraits(needs_clusters=True, needs_score=True, streams=False, stratifies=False)
    artifacts = (PULLS,)

    @classmethod
    def check(cls, options: BanditOptions, config: Any) -> None:
        if options.alpha < 0:
            raise UsageError("--alpha must not be negative")

    def params(self, pool: Pool) -> BanditParams:
        assert pool.score is not None
        o = self.options
        tau = float(np.median(pool.score)) if o.tau is None else o.tau
        return BanditParams(o.probes, o.block, o.alpha, tau, o.coverage_floor, o.admit_order)

    def choose(self, pool: Pool, budget: int, context: SampleContext) -> Selection:
        if self.options.admit_order == "closest" and pool.distance is None:
            raise DataError(f"{context.dataset.path}: --admit-order closest needs a 'distance' "
                            "column (a cluster or score stage folder)")  # fmt: skip
        self.tau = self.params(pool).tau
        self.result = run_bandit(pool, budget, self.params(pool), self._neighbours(context))
        return self.result.selection

    def _neighbours(self, context: SampleContext) -> NeighbourCredit | None:
        radius = self.options.neighbour_radius
        if radius is None:
            return None
        from dataselect.clustering.stage import CENTROIDS

        folder = context.lineage.cluster_folder
        data = None if folder is None else artifact_bytes(folder, CENTROIDS)
        if data is None:
            raise DataError(f"{context.dataset.path}: --neighbour-radius needs the cluster "
                            f"folder's {CENTROIDS}")  # fmt: skip
        centroids = np.load(io.BytesIO(data), allow_pickle=False)
        return NeighbourCredit(centroids.astype(np.float64), radius)

    def facts(self, output: StageOutput, context: SampleContext) -> dict[str, Any]:
        """Pull statistics, and the pull log as OUTPUT/pulls.parquet."""
        result = self.result
        log = pa.table({key: pa.array(values) for key, values in result.pulls.items()})
        buffer = pa.BufferOutputStream()
        pq.write_table(log, buffer, compression="zstd")
        output.write_artifact(PULLS, buffer.getvalue().to_pybytes())
        kinds = result.pulls["kind"]
        return {
            "tau": self.tau,
            "pulls": int(np.isin(kinds, ["start", "pull"]).sum()),
            "rows_floor": int(result.pulls["admitted"][kinds == "floor"].sum()),
            "rows_filled": int(result.pulls["admitted"][kinds == "fill"].sum()),
            "arms": result.arms,
        }
