"""The options of the sample stage (``dataselect sample``, the ``sample:`` section): its
own, and every registered strategy's (``sampling.registry.STRATEGIES``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataselect.errors import UsageError
from dataselect.options import at_least, one_of, option, positive_number, seed_option
from dataselect.registry import RegistryConfig
from dataselect.sampling.registry import STRATEGIES
from dataselect.sampling.strata import STRATUM_BUDGETS, parse_mixture
from dataselect.sampling.strategies import ALLOCATIONS
from dataselect.sampling.strategy import Strategy


def _budget(value: Any) -> str:
    """--budget: a row count or a percentage, kept as text ("1000", "5%")."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise UsageError(f"must be a row count or a percentage, not {value!r}")
    return str(value)


def _strategy(value: Any) -> str:
    if not isinstance(value, str) or STRATEGIES.find(value) is None:
        raise UsageError(f"must be one of {', '.join(STRATEGIES.names())}")
    return value


@dataclass(init=False)
class SampleConfig(RegistryConfig):
    """Options of ``dataselect sample`` (see its --help): its own, and every registered
    strategy's (``sampling.registry.STRATEGIES``), given flat."""

    registry = STRATEGIES
    strategy: str = option(
        "facility-location",
        ", ".join(STRATEGIES.names()) + ".",
        flags=("--strategy", "-s"),
        parse=_strategy,
    )
    budget: str = option(
        "5%",
        "Rows to select: a count (1000) or a share (5%).",
        flags=("--budget", "-b"),
        parse=_budget,
    )
    score_column: str | None = option(
        None,
        "Score column (higher is better): ranks top-k, draws within clusters for kmq and "
        "iterative, rewards bandit arms.",
    )
    allocation: str | None = option(
        None,
        "Budget per cluster: proportional to size, or equal (leftovers to clusters with rows "
        "left) \\[default: equal for kmeans-closest, else proportional].",
        parse=lambda v: None if v is None else one_of(*ALLOCATIONS)(v),
    )
    temperature: float = option(
        1.0, "kmq: rows drawn with probability softmax(score / T).", parse=positive_number
    )
    budget_tokens: int | None = option(
        None,
        "Budget in tokens instead of rows: the most rows that fit.",
        parse=lambda v: None if v is None else at_least(1)(v),
    )
    token_column: str | None = option(
        None,
        "Tokens per row for --budget-tokens \\[default: whitespace tokens of the text].",
    )
    stratify_column: str | None = option(
        None,
        "Split the budget over this source column's values (a label, a source, a language) "
        "and select within each; the summary counts rows per stratum.",
    )
    stratum_budget: str = option(
        "proportional",
        "--stratify-column: rows per stratum proportional to its size, or equal (what a small "
        "stratum cannot use goes to the others).",
        parse=one_of(*STRATUM_BUDGETS),
    )
    mixture: tuple[str, ...] = option(
        (),
        "--stratify-column: weights per value instead, a JSON/YAML file of {value: weight} "
        "or value=weight,...; values it does not name get no rows.",
        parse=parse_mixture,
        cli_type=str,
    )
    seed: int = seed_option()

    def check(self) -> None:
        entry = self.entry
        if entry.traits.needs_score and not self.score_column:
            raise UsageError(f"--strategy {self.strategy} needs --score-column")
        entry.check(self.options_for(entry), self)
        if self.mixture and not self.stratify_column:
            raise UsageError("--mixture needs --stratify-column")
        if self.stratify_column and not entry.traits.stratifies:
            raise UsageError(f"--strategy {self.strategy} does not take --stratify-column (its "
                             "rounds or pulls run once over the whole input)")  # fmt: skip

    @property
    def entry(self) -> type[Strategy]:
        return STRATEGIES.get(self.strategy)

    def make_strategy(self) -> Strategy:
        return self.entry(self.options_for(self.entry))

    @property
    def resolved_allocation(self) -> str:
        return self.allocation or self.entry.default_allocation
