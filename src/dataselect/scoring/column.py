"""A numeric column the user computed (a reward model's score, say), passed through as
score_<column> so the samplers can use it like any other score."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.errors import DataError
from dataselect.io.output import StageOutput
from dataselect.options import NoOptions
from dataselect.scoring.rows import RowReader, Rows
from dataselect.scoring.scorer import BaseScorer, ScoreContext


class ColumnScorer(BaseScorer):
    names = ("column:NAME",)
    summary = "a numeric column you computed (e.g. a reward model), as score_NAME."
    one_per_name = True

    @classmethod
    def matches(cls, name: str) -> bool:
        return name.startswith("column:") and len(name) > len("column:")

    def __init__(self, names: list[str], options: NoOptions, context: ScoreContext) -> None:
        (name,) = names
        column = name.split(":", 1)[1]
        self.needs = ()
        self.column = column
        self.name = f"column:{column}"
        self.columns = (column,)
        self.output = "score_" + column

    def fields(self) -> list[pa.Field]:
        return [pa.field(self.output, pa.float32(), nullable=False)]

    def params(self) -> dict[str, Any]:
        return {"column": self.column}

    def fit(self, reader: RowReader, output: StageOutput) -> dict[str, Any]:
        home = reader.dataset if self.column in reader.dataset.schema.names else reader.source
        kind = home.schema.field(self.column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise DataError(f"{home.path}: column '{self.column}' is {kind}, not numeric")
        return {}

    def score(self, rows: Rows) -> dict[str, np.ndarray]:
        values = rows.columns[self.column]
        if values.null_count:
            first = rows.ids[int(pc.index(pc.is_null(values), True).as_py())].as_py()
            raise DataError(f"column '{self.column}' has a null value (id {first!r})")
        return {self.output: values.to_numpy(zero_copy_only=False).astype(np.float32)}
