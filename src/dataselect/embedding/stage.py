"""The embed stage: rows -> (id, embedding) with unit-norm float32 vectors, shard by shard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from dataselect.embedding.config import EmbedConfig
from dataselect.embedding.text import TextSpec
from dataselect.embedding.vectors import check_vector_column, first_vector_dim, normalised_vectors
from dataselect.errors import UsageError
from dataselect.io.ids import batch_ids, check_unique, id_type, resolve_id_column
from dataselect.io.sources import (
    InputDataset,
    InputShard,
    open_stage_input,
)
from dataselect.progress import Reporter
from dataselect.stage import PerRowStage, SchedulingTraits, StageResult, reading_inputs, run_stage

READ_ROWS = 8192  # rows per read batch, per encode call and per output row group


class Embedder(Protocol):
    name: str
    dim: int

    def identity(self) -> dict[str, object]: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


def make_embedder(config: EmbedConfig) -> Embedder:
    if config.embedder == "hashing":
        from dataselect.embedding.hashing import HashingEmbedder

        return HashingEmbedder(dim=config.dim or 384, seed=config.seed)
    if config.embedder == "static":
        from dataselect.embedding.static import StaticEmbedder

        return StaticEmbedder(dim=config.dim, model=config.model, model_cache=config.model_cache)
    from dataselect.embedding.minilm import MiniLMEmbedder

    return MiniLMEmbedder(device=config.device, batch_size=config.batch_size,
                          backend=config.backend, model_cache=config.model_cache)  # fmt: skip


class EmbedStage(PerRowStage):
    """Per shard: read ids and text (or vectors), write id + embedding."""

    name = "embed"

    def __init__(self, dataset: InputDataset, config: EmbedConfig) -> None:
        config.check()
        self.config = config
        self.id_column = resolve_id_column(dataset, config.id_column)
        self.embedder: Embedder | None = None
        self.text: TextSpec | None = None
        if config.vector_column is not None:
            fixed = check_vector_column(dataset, config.vector_column)
            found = fixed or first_vector_dim(dataset, config.vector_column)
            if config.dim is not None and found != config.dim:
                raise UsageError(
                    f"--dim {config.dim}: column '{config.vector_column}' holds vectors of "
                    f"dimension {found}"
                )
            self.dim = found
            value_columns = [config.vector_column]
        else:
            self.text = TextSpec(config.text_column, config.template)
            self.text.validate(dataset)
            self.embedder = make_embedder(config)
            self.dim = self.embedder.dim
            # MiniLM's torch already runs on every core (see ``engine.resolve_workers``)
            self.traits = SchedulingTraits(uses_every_core=self.embedder.name == "minilm")
            value_columns = self.text.columns
        self.columns = list(
            dict.fromkeys(([self.id_column] if self.id_column else []) + value_columns)
        )
        self.schema = pa.schema(
            [
                pa.field("id", id_type(dataset, self.id_column), nullable=False),
                pa.field("embedding", pa.list_(pa.float32(), self.dim), nullable=False),
            ]
        )

    def params(self) -> dict[str, Any]:
        """Everything that decides the output bytes (compared on resume)."""
        params = asdict(self.config)
        params.pop("model_cache")  # where models are kept: not what they compute
        if params["model"] is None:
            params.pop("model")  # (the embedder's identity names its model)
        if params["backend"] == "torch" or self.embedder is None or self.embedder.name != "minilm":
            params.pop("backend")  # (folders made before --backend resume as before)
        params["id_column"] = self.id_column
        params["dim"] = self.dim
        if self.embedder is None:
            params.update(embedder="precomputed", batch_size=None, device=None)
        else:
            params.update(self.embedder.identity())
            if self.embedder.name in ("hashing", "static"):
                params.update(batch_size=None, device=None)
        return params

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        offset = 0
        seen: list[pa.Array] = []
        for batch in shard.iter_batches(self.columns, batch_rows=READ_ROWS):
            ids = batch_ids(batch, shard, offset, self.id_column)
            seen.append(ids)
            if self.text is not None and self.embedder is not None:
                vectors = self.embedder.embed(self.text.texts(batch, shard, offset))
            else:
                assert self.config.vector_column is not None
                vectors = normalised_vectors(
                    batch.column(self.config.vector_column),
                    self.dim,
                    shard,
                    offset,
                    self.config.vector_column,
                )
            offset += batch.num_rows
            yield pa.RecordBatch.from_arrays(
                [ids, pa.FixedSizeListArray.from_arrays(vectors.reshape(-1), self.dim)],
                schema=self.schema,
            )
        if seen:
            check_unique(pa.concat_arrays(seen), shard)


def embed(
    input: str | Path,
    output: str | Path,
    config: EmbedConfig | None = None,
    overwrite: bool | str = False,
    quiet: bool = False,
) -> StageResult:
    """Embed every row of ``input`` into the stage folder ``output``; returns what it did."""
    config = config or EmbedConfig()
    config.check()
    with reading_inputs(input):  # no run replaces what this one reads
        dataset = open_stage_input(input, shard_rows=config.shard_rows)
        stage = EmbedStage(dataset, config)
        if stage.embedder is not None and stage.embedder.name != "hashing":
            # a model built on first use (an ONNX export, a distillation: up to a minute) is
            # built here, logged, before the stage's parameters name its checksum
            with Reporter("embed", dataset.rows, len(dataset.shards), quiet=quiet) as reporter:
                reporter.phase(f"load the {stage.embedder.name} model")
                stage.embedder.identity()
        return run_stage(
            stage,
            dataset,
            output,
            outputs={"dim": stage.dim},
            overwrite=overwrite,
            quiet=quiet,
        )
