"""The corpus's own words in a report: texts of chosen rows, label counts, duplicate pairs.

Rows are found by position. Per-row stages keep the source's row order (``lineage.py``), so
row p of the sample stage's input is row p of the data the embed stage read. One pass over
the source reads the text columns (and the label column): memory holds a batch, the texts
of the rows the report shows, and a count per label.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.embedding.text import TextSpec, is_text_like
from dataselect.errors import DataError, UsageError
from dataselect.io.sources import InputDataset
from dataselect.lineage import trace_lineage

READ_ROWS = 8192
TEXT_CHARS = 2_000  # kept of each text read: cards show less, topics read this much


@dataclass
class Source:
    """The data the embed stage read, and what of it the report shows."""

    dataset: InputDataset
    text: TextSpec | None  # None: the source holds no text column (precomputed vectors)
    label_column: str | None

    @property
    def text_name(self) -> str:
        if self.text is None:
            return "(no text column)"
        if self.text.template is not None:
            return f"template {self.text.template!r}"
        return f"column '{self.text.column}'"


@dataclass
class SourceFacts:
    """What one pass over the source gave: texts by position, label counts."""

    texts: dict[int, str] = field(default_factory=dict)
    labels_corpus: Counter[str] = field(default_factory=Counter)
    labels_selected: Counter[str] = field(default_factory=Counter)


def find_source(
    selection_folder: Path, text_column: str | None, label_column: str | None
) -> Source:
    """The source behind a selection; its text: ``text_column``, else what the embed stage
    embedded, else (vectors given) the first text column that is not the id; its labels:
    ``label_column``, else a column named 'label'."""
    lineage = trace_lineage(selection_folder)
    dataset = lineage.source
    names = dataset.schema.names
    text: TextSpec | None
    if text_column is not None:
        text = TextSpec(text_column)
        text.validate(dataset)
    elif lineage.embed.params.get("vector_column") is None:
        params = lineage.embed.params
        text = TextSpec(params.get("text_column") or "text", params.get("template"))
    else:
        candidates = [n for n in names if n != lineage.id_column
                      and is_text_like(dataset.schema.field(n).type)]  # fmt: skip
        text = TextSpec(candidates[0]) if candidates else None
    if label_column is not None and label_column not in names:
        raise UsageError(f"--label-column {label_column}: {dataset.path} has no such column "
                         f"(it has {', '.join(names)})")  # fmt: skip
    if label_column is None and "label" in names:
        label_column = "label"
    return Source(dataset, text, label_column)


def read_source(source: Source, positions: np.ndarray, selected: np.ndarray) -> SourceFacts:
    """The texts at ``positions`` (sorted, unique) and, with a label column, the label counts
    of every row and of the ``selected`` ones (a bool per row)."""
    facts = SourceFacts()
    columns = list(source.text.columns) if source.text is not None else []
    if source.label_column is not None and source.label_column not in columns:
        columns.append(source.label_column)
    if not columns:
        return facts
    offset = 0
    for shard in source.dataset.shards:
        for batch in shard.iter_batches(columns, batch_rows=READ_ROWS):
            end = offset + batch.num_rows
            if source.text is not None:
                lo, hi = np.searchsorted(positions, [offset, end])
                if hi > lo:
                    wanted = positions[lo:hi]
                    taken = _without_nulls(batch.take(pa.array(wanted - offset)))
                    texts = source.text.texts(taken, shard, 0)
                    facts.texts.update(
                        zip(wanted.tolist(), (t[:TEXT_CHARS] for t in texts), strict=True)
                    )
            if source.label_column is not None:
                labels = batch.column(source.label_column)
                _count(facts.labels_corpus, labels)
                _count(facts.labels_selected, labels.filter(pa.array(selected[offset:end])))
            offset = end
    if offset != len(selected):
        raise DataError(f"{source.dataset.path}: holds {offset:,} rows, the selection's input "
                        f"{len(selected):,}; rerun the stages from embed")  # fmt: skip
    return facts


def _without_nulls(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A null text shows as empty (a source given with --vector-column may have some)."""
    columns = [
        pc.fill_null(c, "") if c.null_count and pa.types.is_string(c.type) else c
        for c in batch.columns
    ]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _count(counter: Counter[str], labels: pa.Array) -> None:
    counts = pc.value_counts(labels)
    for value, count in zip(
        counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
    ):
        counter["(null)" if value is None else str(value)] += int(count)
