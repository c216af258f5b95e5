"""The options of the cluster stage (``dataselect cluster``, the ``cluster:`` section)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataselect.errors import UsageError
from dataselect.options import StageConfig, at_least, one_of, option, seed_option

METRICS = ("cosine", "l2")
DEFAULT_K_GRID = (8, 16, 32, 64, 128, 256, 512, 1024)


def parse_k(value: Any) -> int | str:
    """--k: a positive number of clusters, or "auto"."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"must be a positive integer or 'auto', not {value!r}")
    return value


def parse_grid(value: Any) -> tuple[int, ...]:
    """--k-grid: integers, as "8,16,32" or a list; sorted, each once."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        if isinstance(items, (int, str)) or any(isinstance(v, bool) for v in items):
            raise ValueError
        grid = tuple(sorted({int(v) for v in items if str(v).strip()}))
    except (TypeError, ValueError):
        raise UsageError(f"must be integers separated by commas, not {value!r}") from None
    if not grid or grid[0] < 2:
        raise UsageError(f"must be integers of at least 2, not {value!r}")
    return grid


@dataclass
class ClusterConfig(StageConfig):
    """Options of ``dataselect cluster`` (see its --help)."""

    k: int | str = option(
        100, "Number of clusters, or 'auto' (best silhouette on a grid).", flags=("--k",),
        parse=parse_k, cli_type=str,
    )  # fmt: skip
    k_grid: tuple[int, ...] = option(
        DEFAULT_K_GRID, "Candidates for --k auto, comma-separated.", parse=parse_grid,
        cli_type=str,
    )  # fmt: skip
    niter: int = option(20, "k-means iterations.", parse=at_least(1))
    max_points_per_centroid: int = option(
        256, "The fit sample holds at most k x this many rows.", parse=at_least(1)
    )
    metric: str = option("cosine", "cosine (spherical k-means) or l2.", parse=one_of(*METRICS))
    vector_column: str = option("embedding", "Column holding the vectors.")
    id_column: str | None = option(None, "Column with unique row ids \\[default: 'id' if present].")
    centroids: str | None = option(
        None,
        "Assign to these centroids (a k x d .npy file, or a cluster folder's) instead of fitting.",
        path=True,
    )
    seed: int = seed_option()
