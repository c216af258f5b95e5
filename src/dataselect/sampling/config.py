"""The options of the sample stage (``dataselect sample``, the ``sample:`` section): its
own, and every registered strategy's (``sampling.registry.STRATEGIES``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataselect.errors import UsageError
from dataselect.options import at_least, one_of, option, positive_number, seed_option
from dataselect.registry import RegistryConfig
from dataselect.sampling.registry import STRATEGIES
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
        "kmeans-closest",
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
    seed: int = seed_option()

    def check(self) -> None:
        entry = self.entry
        if entry.traits.needs_score and not self.score_column:
            raise UsageError(f"--strategy {self.strategy} needs --score-column")
        entry.check(self.options_for(entry), self)

    @property
    def entry(self) -> type[Strategy]:
        return STRATEGIES.get(self.strategy)

    def make_strategy(self) -> Strategy:
        return self.entry(self.options_for(self.entry))

    @property
    def resolved_allocation(self) -> str:
        return self.allocation or self.entry.default_allocation
