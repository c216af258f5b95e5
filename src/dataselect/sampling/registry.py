"""Every strategy of `dataselect sample`, listed once: a new strategy is one module with
one ``Strategy`` class, and one line here. Its name, options, checks, --help paragraph and
dry-run notes come from the class; tests/test_registries.py runs every entry."""

from __future__ import annotations

from dataselect.registry import Registry
from dataselect.sampling.bandit import BanditStrategy
from dataselect.sampling.facility_location import FacilityLocationStrategy
from dataselect.sampling.hierarchical import HierarchicalStrategy
from dataselect.sampling.iterative import IterativeStrategy
from dataselect.sampling.kmeans_closest import KmeansClosestStrategy
from dataselect.sampling.kmeans_random import KmeansRandomStrategy
from dataselect.sampling.kmq import KmqStrategy
from dataselect.sampling.random_draw import RandomStrategy
from dataselect.sampling.strategy import Strategy
from dataselect.sampling.top_k import TopKStrategy

STRATEGIES: Registry[type[Strategy]] = Registry(
    "strategy",
    [
        RandomStrategy,
        TopKStrategy,
        KmeansClosestStrategy,
        KmeansRandomStrategy,
        FacilityLocationStrategy,
        HierarchicalStrategy,
        KmqStrategy,
        IterativeStrategy,
        BanditStrategy,
    ],
)
