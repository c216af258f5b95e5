"""The per-row fields a scorer needs (text, embedding, label, cluster, any column), read in
step from wherever they live: the input folder itself, or its embed folder and source data.

Per-row stages keep shards and row order, so part i of a cluster folder, part i of its embed
folder and shard i of the source hold the same rows in the same order (see lineage.py); the
reader zips them batch by batch and checks that the ids agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.embedding.text import TextSpec
from dataselect.errors import DataError, UsageError
from dataselect.io.ids import batch_ids, resolve_id_column
from dataselect.io.sources import InputDataset, InputShard, open_input, open_stage_input
from dataselect.lineage import Lineage, trace_lineage

FIELDS = ("text", "embedding", "label", "cluster")


@dataclass
class Rows:
    """One batch of rows: ids and the fields that were asked for."""

    ids: pa.Array
    text: list[str] | None = None
    embedding: np.ndarray | None = None
    label: np.ndarray | None = None
    cluster: np.ndarray | None = None
    columns: dict[str, pa.Array] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def rebatched(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """The same rows cut into batches of exactly ``rows`` (the last one shorter)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            batch = batch.slice(take)
            count += take
            if count == rows:
                yield _joined(pending)
                pending, count = [], 0
    if count:
        yield _joined(pending)


def _joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches(batches).combine_chunks()
    joined = table.to_batches()
    return joined[0] if joined else batches[0].slice(0, 0)


class RowReader:
    """Reads ids plus named fields of a dataset (raw data or any stage folder)."""

    def __init__(
        self,
        path: str | Path,
        text: TextSpec | None = None,
        label_column: str | None = None,
        id_column: str | None = None,
        what: str = "input",
        dataset: InputDataset | None = None,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.dataset: InputDataset = dataset or open_stage_input(path)
        self.staged = self.dataset.manifest is not None
        self.lineage: Lineage | None = trace_lineage(self.path) if self.staged else None
        if self.staged:
            self.id_column: str | None = "id"
            self.source = self.lineage.source if self.lineage else self.dataset
        else:
            self.id_column = resolve_id_column(self.dataset, id_column)
            self.source = self.dataset
        self.text = text or self.default_text()
        self.label_column = label_column
        self._embed: InputDataset | None = None

    # -- what can be read --------------------------------------------------------------
    def default_text(self) -> TextSpec:
        """The text the embed stage embedded, when there was one; else a 'text' column."""
        params = self.lineage.embed.params if self.lineage else {}
        if params.get("embedder") not in (None, "precomputed") and params.get("text_column"):
            return TextSpec(params["text_column"], params.get("template"))
        return TextSpec()

    @property
    def dim(self) -> int:
        if "embedding" in self.dataset.schema.names:
            return int(self.dataset.schema.field("embedding").type.list_size)
        if self.lineage is None:
            raise DataError(f"{self.path}: no embeddings (give an embed, cluster or score folder)")
        return int(self.lineage.embed.params["dim"])

    def check(self, fields: Sequence[str], columns: Sequence[str] = ()) -> None:
        """Refuse early, with one line, a field this dataset cannot provide."""
        if "text" in fields:
            self.text.validate(self.source)
        if "embedding" in fields:
            self.dim  # noqa: B018 - raises when there are none
        if "label" in fields:
            if self.label_column is None:
                raise UsageError(f"{self.what}: a label column is needed (--label-column)")
            self._label_home().require_columns([self.label_column], what="label column")
        if "cluster" in fields and "cluster" not in self.dataset.schema.names:
            raise DataError(
                f"{self.path}: no 'cluster' column (give a cluster folder, or --label-column)"
            )
        for name in columns:
            self._column_home(name)

    def _label_home(self) -> InputDataset:
        assert self.label_column is not None
        if self.label_column in self.dataset.schema.names:
            return self.dataset
        return self.source

    def _column_home(self, name: str) -> InputDataset:
        for dataset in (self.dataset, self.source):
            if name in dataset.schema.names:
                return dataset
        raise DataError(f"{self.path}: no column '{name}' here or in its source data")

    @property
    def rows(self) -> int:
        return int(self.dataset.rows or 0)

    # -- reading -----------------------------------------------------------------------
    def iter_rows(
        self, fields: Sequence[str], columns: Sequence[str] = (), batch_rows: int = 8192
    ) -> Iterator[Rows]:
        for shard in self.dataset.shards:
            yield from self.shard_rows(shard.index, fields, columns, batch_rows)

    def shard_rows(
        self,
        index: int,
        fields: Sequence[str],
        columns: Sequence[str] = (),
        batch_rows: int = 8192,
    ) -> Iterator[Rows]:
        """Rows of shard ``index`` in batches of ``batch_rows``, every field aligned."""
        shard = self.dataset.shards[index]
        own = [self.id_column] if self.id_column else []
        if "cluster" in fields:
            own.append("cluster")
        if "embedding" in fields and "embedding" in self.dataset.schema.names:
            own.append("embedding")
        from_source: list[str] = []
        if "text" in fields:
            from_source += self.text.columns
        wanted = list(columns) + (
            [self.label_column] if "label" in fields and self.label_column else []
        )
        for name in wanted:
            if self._column_home(name) is self.dataset:
                own.append(name)
            else:
                from_source.append(name)
        if not self.staged:  # raw data: everything is in the input itself
            own, from_source = own + from_source, []
        own = list(dict.fromkeys(own))
        streams: list[Iterator[pa.RecordBatch]] = [
            rebatched(shard.iter_batches(own, batch_rows=batch_rows), batch_rows)
        ]
        embed_here = "embedding" in fields and "embedding" not in own
        if embed_here:
            embed_shard = self._embed_dataset().shards[index]
            streams.append(
                rebatched(embed_shard.iter_batches(["id", "embedding"], batch_rows), batch_rows)
            )
        source_shard = self.source.shards[index] if self.staged else shard
        lineage_id = self.lineage.id_column if self.lineage else self.id_column
        if from_source and self.staged:
            names = list(dict.fromkeys(([lineage_id] if lineage_id else []) + from_source))
            streams.append(rebatched(source_shard.iter_batches(names, batch_rows), batch_rows))
        offset = 0
        for parts in _zip_exact(streams, shard):
            mine = parts[0]
            ids = batch_ids(mine, shard, offset, self.id_column)
            rows = Rows(ids=ids)
            merged = {name: mine.column(name) for name in mine.schema.names}
            if embed_here:
                self._check_ids(ids, parts[1].column("id"), "embed folder")
                merged["embedding"] = parts[1].column("embedding")
            if from_source and self.staged:
                source = parts[-1]
                self._check_ids(ids, batch_ids(source, source_shard, offset, lineage_id), "source")
                merged.update({name: source.column(name) for name in source.schema.names})
            if "text" in fields:
                text_batch = pa.RecordBatch.from_arrays(
                    [merged[c] for c in self.text.columns], names=self.text.columns
                )
                rows.text = self.text.texts(text_batch, source_shard, offset)
            if "embedding" in fields:
                values = merged["embedding"]
                rows.embedding = (
                    values.flatten().to_numpy(zero_copy_only=False).reshape(-1, self.dim)
                ).astype(np.float32, copy=False)
            if "label" in fields and self.label_column:
                rows.label = _labels(merged[self.label_column], source_shard, offset)
            if "cluster" in fields:
                rows.cluster = merged["cluster"].to_numpy(zero_copy_only=False)
            rows.columns = {name: merged[name] for name in columns}
            offset += len(ids)
            yield rows

    def _embed_dataset(self) -> InputDataset:
        if self._embed is None:
            assert self.lineage is not None
            self._embed = open_input(self.lineage.embed_folder)
        return self._embed

    def _check_ids(self, ids: pa.Array, other: pa.Array, where: str) -> None:
        if not ids.equals(other.cast(ids.type)):
            raise DataError(f"{self.path}: its rows no longer match its {where}")


def _zip_exact(
    streams: list[Iterator[pa.RecordBatch]], shard: InputShard
) -> Iterator[list[pa.RecordBatch]]:
    """Batches of every stream side by side; streams of different lengths are an error."""
    while True:
        parts = [next(stream, None) for stream in streams]
        if all(part is None for part in parts):
            return
        batches = [part for part in parts if part is not None]
        if len(batches) != len(parts) or len({b.num_rows for b in batches}) != 1:
            raise DataError(f"{shard.path}: its rows no longer match the data it came from")
        yield batches


def _labels(values: pa.Array, shard: InputShard, offset: int) -> np.ndarray:
    if values.null_count:
        row = shard.first_row + offset + int(pc.index(pc.is_null(values), True).as_py())
        raise DataError(f"{shard.path}: null label at row {row}")
    return values.to_numpy(zero_copy_only=False)
