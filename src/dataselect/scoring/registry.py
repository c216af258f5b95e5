"""Every scorer of `dataselect score`, listed once: a new scorer is one module with one
``BaseScorer`` class, and one line here. Its names, options, checks, --help paragraph and
dry-run cost come from the class; tests/test_registries.py runs every entry."""

from __future__ import annotations

from dataselect.registry import Registry
from dataselect.scoring.agreement import AgreementScorer
from dataselect.scoring.classifier import ClassifierScorer
from dataselect.scoring.column import ColumnScorer
from dataselect.scoring.difficulty import DifficultyScorer
from dataselect.scoring.dsir import DsirScorer
from dataselect.scoring.heuristic import HeuristicScorer
from dataselect.scoring.influence import InfluenceScorer
from dataselect.scoring.scorer import BaseScorer

SCORERS: Registry[type[BaseScorer]] = Registry(
    "scorer",
    [
        HeuristicScorer,
        DsirScorer,
        ClassifierScorer,
        InfluenceScorer,
        DifficultyScorer,
        AgreementScorer,
        ColumnScorer,
    ],
)
