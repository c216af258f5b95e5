"""The options of the score stage (``dataselect score``, the ``score:`` section): its own,
and every registered scorer's (``scoring.registry.SCORERS``)."""

from __future__ import annotations

from dataclasses import dataclass

from dataselect.embedding.text import (
    TextSpec,
    template_option,
    text_column_option,
    text_spec_of,
)
from dataselect.errors import UsageError
from dataselect.io.sources import DEFAULT_SHARD_ROWS
from dataselect.options import at_least, option, seed_option
from dataselect.registry import RegistryConfig
from dataselect.scoring.registry import SCORERS
from dataselect.scoring.scorer import BaseScorer, ScoreContext, Scorer


@dataclass(init=False)
class ScoreConfig(RegistryConfig):
    """Options of ``dataselect score`` (see its --help): its own, and every registered
    scorer's (``scoring.registry.SCORERS``), given flat."""

    registry = SCORERS
    scorers: tuple[str, ...] = option(
        ("heuristic",),
        "A scorer (repeatable): " + ", ".join(SCORERS.names()) + ".",
        flags=("--scorer",),
        required=True,
    )
    text_column: str | None = text_column_option()
    template: str | None = template_option()
    label_column: str | None = option(
        None, "Labels for the probe scorers \\[default: cluster ids]."
    )
    id_column: str | None = option(
        None, "Raw input: column with unique ids \\[default: 'id' if present]."
    )
    shard_rows: int = option(
        DEFAULT_SHARD_ROWS,
        "Raw input: rows per shard (Parquet is cut along row groups).",
        parse=at_least(1),
    )
    seed: int = seed_option()

    def check(self) -> None:
        if not self.scorers:
            raise UsageError("name at least one --scorer")
        for name in self.scorers:
            if SCORERS.find(name) is None:
                raise UsageError(f"--scorer {name!r}: choose from {', '.join(SCORERS.names())}")
        if len(set(self.scorers)) != len(self.scorers):
            raise UsageError("--scorer: each scorer once")
        for entry, names in self.chosen():
            entry.check(self.options_for(entry), names)

    def chosen(self) -> list[tuple[type[BaseScorer], list[str]]]:
        """The scorer classes asked for, each with its names given, in the order given (one
        instance takes all its names, as el2n, grand and vog share one probe)."""
        groups: list[tuple[type[BaseScorer], list[str]]] = []
        for name in self.scorers:
            entry = SCORERS.get(name)
            group = next((g for g in groups if g[0] is entry and not entry.one_per_name), None)
            if group is None:
                groups.append((entry, [name]))
            else:
                group[1].append(name)
        return groups

    def text_spec(self) -> TextSpec | None:
        return text_spec_of(self.text_column, self.template)

    def build(self) -> list[Scorer]:
        """The scorers, in the order given."""
        context = ScoreContext(self.label_column, self.seed)
        return [entry(names, self.options_for(entry), context) for entry, names in self.chosen()]
