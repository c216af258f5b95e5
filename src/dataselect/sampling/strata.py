"""Stratified budgets (``--stratify-column``): the budget split over a column's values (a
label, a source, a language), then the strategy run within each stratum on its own rows.

Shares are proportional to the strata's rows, equal (what a small stratum cannot use goes
to the others), or given by a mixture of weights (``--mixture``: values it does not name
get no rows). Every split sums to the budget exactly and never asks a stratum for more
rows than it holds (``allocate`` / ``allocate_weighted``, as for clusters).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.errors import DataError, UsageError
from dataselect.sampling.strategies import allocate, allocate_weighted

STRATUM_BUDGETS = ("proportional", "equal")
NULL_STRATUM = "(null)"


def parse_mixture(value: Any) -> tuple[str, ...]:
    """--mixture: a JSON or YAML file of {value: weight}, a mapping (in a YAML config) or
    value=weight,... text; kept as sorted "value=weight" items so the manifest holds the
    weights themselves (a rerun with other weights is another selection)."""
    if value is None or value == () or value == [] or value == "":
        return ()
    if isinstance(value, dict):
        pairs = value
    elif isinstance(value, (list, tuple)):
        pairs = dict(str(v).split("=", 1) for v in value)
    elif isinstance(value, str) and "=" in value and not Path(value).is_file():
        pairs = dict(part.split("=", 1) for part in value.split(",") if part.strip())
    else:
        path = Path(str(value))
        if not path.is_file():
            raise UsageError(f"{value}: no such mixture file")
        import yaml

        try:
            pairs = json.loads(path.read_text()) if path.suffix == ".json" else (
                yaml.safe_load(path.read_text()))  # fmt: skip
        except (ValueError, yaml.YAMLError) as exc:
            raise UsageError(f"{path}: not a JSON or YAML mapping ({exc})") from None
        if not isinstance(pairs, dict):
            raise UsageError(f"{path}: must map each value to a weight")
    weights: dict[str, float] = {}
    for name, weight in pairs.items():
        try:
            number = float(weight)
        except (TypeError, ValueError):
            raise UsageError(f"weight of {name!r} is not a number: {weight!r}") from None
        if not np.isfinite(number) or number < 0:
            raise UsageError(f"weight of {name!r} must be finite and not negative")
        weights[str(name).strip()] = number
    if not weights or sum(weights.values()) <= 0:
        raise UsageError("the mixture needs a positive weight")
    return tuple(f"{name}={weights[name]:g}" for name in sorted(weights))


def mixture_weights(items: tuple[str, ...]) -> dict[str, float]:
    return {name: float(weight) for name, weight in (i.rsplit("=", 1) for i in items)}


def stratum_codes(values: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Each row's stratum (int32) and the strata's names, sorted (null is "(null)")."""
    text = pc.fill_null(values.cast(pa.string()), NULL_STRATUM)
    names = sorted(set(pc.unique(text).to_pylist()))
    codes = pc.index_in(text, value_set=pa.array(names, pa.string())).to_numpy()
    return codes.astype(np.int32), names


def stratum_budgets(
    sizes: np.ndarray, names: list[str], budget: int, mode: str, mixture: tuple[str, ...]
) -> np.ndarray:
    """Rows to select per stratum: sums to ``budget``, never above a stratum's rows."""
    if not mixture:
        return allocate(sizes, budget, mode)
    weights = mixture_weights(mixture)
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise DataError(f"--mixture names {', '.join(map(repr, unknown))}, which the stratify "
                        f"column does not hold (it holds {len(names)} values)")  # fmt: skip
    shares = np.array([weights.get(name, 0.0) for name in names])
    capacity = np.where(shares > 0, sizes, 0)
    if budget > int(capacity.sum()):
        raise UsageError(f"--budget {budget:,} is larger than the rows of the mixture's "
                         f"values ({int(capacity.sum()):,})")  # fmt: skip
    return allocate_weighted(shares, capacity, budget)
