"""What every sampling strategy is, and what the registry knows of it before it runs.

A strategy class is a registry entry: the ``--strategy`` name, a summary for --help, its
options (a dataclass of ``options.option`` fields), their checks, its traits and its part of
the dry run's estimate. Two kinds:

- one-shot (``OneShotStrategy``): "in each group, the rows with the smallest sort key", the
  key being one or two numbers per row and then the id. ``sort_keys`` is the strategy's one
  definition: the in-memory path (``strategies.select``) sorts every row by it, the streamed
  path (``streaming.select_streaming``) keeps the best rows batch by batch, with equal
  results at any row count;
- adaptive (``AdaptiveStrategy``): rounds or pulls that look at what was chosen so far, over
  the per-row columns held in memory (``choose``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from dataselect.options import NoOptions

if TYPE_CHECKING:
    import pyarrow as pa

    from dataselect.io.output import StageOutput
    from dataselect.io.sources import InputDataset
    from dataselect.lineage import Lineage
    from dataselect.sampling.strategies import Pool, Selection
    from dataselect.sampling.vectors import SpilledVectors


@dataclass(frozen=True)
class StrategyTraits:
    """What a strategy reads and how it runs, for the stage, the dry run and the tests."""

    needs_clusters: bool = False  # a 'cluster' column (a cluster stage folder)
    needs_distance: bool = False  # a 'distance' column
    needs_score: bool = False  # refuses to run without --score-column
    streams: bool = True  # one-shot: any row count; else the per-row columns in memory
    # takes one row of each set of rows with identical vectors (the input's vector_hash):
    # the first in keyed order; the others are never drawn
    one_per_vector: bool = False
    stratifies: bool = True  # runs within each stratum of --stratify-column


@dataclass(frozen=True)
class SortColumns:
    """One batch of the per-row columns a one-shot strategy orders rows by."""

    keys: np.ndarray  # uint64 keyed hash of (seed, id)
    cluster: np.ndarray | None = None  # int32
    distance: np.ndarray | None = None  # float32
    score: np.ndarray | None = None  # float64
    top: np.ndarray | None = None  # per cluster: its largest score / T (cluster_top)
    temperature: float = 1.0


class Strategy:
    """A registered strategy class: constructed as ``cls(options)``."""

    names: ClassVar[tuple[str, ...]]  # the --strategy name
    summary: ClassVar[str]  # its paragraph in `dataselect sample --help`
    Options: ClassVar[type[Any]] = NoOptions
    traits: ClassVar[StrategyTraits] = StrategyTraits()
    default_allocation: ClassVar[str] = "proportional"  # --allocation when not given
    artifacts: ClassVar[tuple[str, ...]] = ()  # files of its own beside the selection

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    @classmethod
    def matches(cls, name: str) -> bool:
        return name in cls.names

    @classmethod
    def check(cls, options: Any, config: Any) -> None:
        """Refuse options (or combinations with the sample config) it cannot run with."""

    @classmethod
    def cost_notes(cls, options: Any) -> list[str]:
        """What the dry run's estimate leaves out for it."""
        return []

    @classmethod
    def vector_passes(cls, options: Any) -> int:
        """Extra reads of the embed folder's vectors it makes (for the dry run)."""
        return 0

    @classmethod
    def working_bytes(cls, options: Any, rows: int, dim: int) -> float:
        """Memory it needs beyond the pool's per-row columns, at most (for the dry run)."""
        return 0.0


class OneShotStrategy(Strategy):
    """A selection by per-row sort keys within groups (clusters, or one group)."""

    per_cluster: ClassVar[bool] = True  # a quota per cluster (--allocation), else one group
    keyed: ClassVar[bool] = True  # reads the keyed draw (kmeans-closest does not)
    needs_cluster_top: ClassVar[bool] = False  # reads each cluster's largest score / T
    primary_type: ClassVar[type[np.generic]] = np.float64
    draw: ClassVar[str] = ""  # how a row was chosen in its cluster, for its reason

    def sort_keys(self, rows: SortColumns) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(group, primary, secondary) per row: in each group the rows with the smallest
        (primary, secondary, id) are taken."""
        raise NotImplementedError

    def reasons(self, group: np.ndarray, rank: np.ndarray, quota: np.ndarray) -> list[str]:
        """Why each chosen row was kept, from its group, its 0-based rank in the group and
        the groups' quotas."""
        return [
            f"{self.draw} (rank {r + 1} of {quota[c]} in cluster {c})"
            for c, r in zip(group.tolist(), rank.tolist(), strict=True)
        ]


@dataclass
class SampleContext:
    """What an adaptive strategy may read besides the pool."""

    dataset: InputDataset  # the sample stage's input (cluster or score folder)
    lineage: Lineage
    ids: pa.Array  # the pool's ids (its order)
    seed: int
    temperature: float
    output: StageOutput | None = None  # the selection folder (stored feedback)
    allocation: str = "proportional"  # --allocation, resolved
    positions: pa.Table | None = None  # the pool's rows: id, shard, row (input position)

    @property
    def spill_folder(self) -> Path | None:
        """Where temporary files go: beside the output (its file system), else the system's
        temporary folder."""
        return None if self.output is None else self.output.folder.parent

    def vectors(self, folder: str | Path) -> SpilledVectors:
        """Every pool row's embedding, written once to a temporary file in ``folder`` and
        read back a group of rows at a time (``SpilledVectors.take``, by pool row)."""
        from dataselect.sampling.vectors import SpilledVectors

        assert self.positions is not None
        dim = int(self.lineage.embed.params["dim"])
        return SpilledVectors(folder, self.lineage.embed_folder, self.positions, dim)


class AdaptiveStrategy(Strategy):
    """Rounds or pulls over the per-row columns held in memory."""

    traits: ClassVar[StrategyTraits] = StrategyTraits(needs_clusters=True, streams=False)
    timed_as: ClassVar[str] = "kmeans-random"  # the dry run times its per-row work as this

    def prepare(self, dataset: InputDataset) -> None:
        """Refuse, before anything is read, an input it cannot use (a DataError)."""

    def choose(self, pool: Pool, budget: int, context: SampleContext) -> Selection:
        raise NotImplementedError

    def decision_columns(self, rows: np.ndarray) -> dict[str, pa.Array]:
        """Extra columns of decisions.parquet for the chosen pool rows (e.g. their round)."""
        return {}

    def facts(self, output: StageOutput, context: SampleContext) -> dict[str, Any]:
        """Facts for the manifest and selection.json (and any artifacts of its own)."""
        return {}
