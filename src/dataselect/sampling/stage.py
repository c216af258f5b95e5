"""The sample stage: a reduction over small per-row columns, then the chosen rows written out.

INPUT is a cluster (or later score) stage folder. Its id / cluster / distance / score
columns are read into memory (a few bytes per row), a strategy picks exactly the budget,
and the chosen rows are written with all their original columns, found by following the
manifests back to the source data: OUTPUT part i holds the chosen rows of source shard i,
so a selection is itself a dataset folder. Beside them: decisions.parquet (every row: id,
cluster, score, selected, reason) and selection.json (parameters, counts, metrics).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect.clustering.kmeans import keyed_sample
from dataselect.errors import DataError, UsageError
from dataselect.io.ids import batch_ids
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard, open_input, open_stage_input
from dataselect.keyed import row_keys
from dataselect.lineage import trace_lineage
from dataselect.manifest import MANIFEST_NAME
from dataselect.sampling.metrics import cluster_coverage, cluster_entropy, vendi_scores
from dataselect.sampling.strategies import (
    ALLOCATIONS,
    NEEDS_CLUSTERS,
    NEEDS_SCORE,
    STRATEGIES,
    Pool,
    select,
)
from dataselect.stage import StageResult, run_stage

DECISIONS = "decisions.parquet"
SELECTION = "selection.json"
SELECT_STREAM = 2  # keyed-randomness stream of the samplers
METRICS_SAMPLE_ROWS = 20_000


@dataclass
class SampleConfig:
    """Options of ``dataselect sample`` (see its --help)."""

    strategy: str = "kmeans-closest"
    budget: str = "5%"  # rows ("1000") or a share of the rows ("5%")
    score_column: str | None = None
    allocation: str | None = None  # default: equal for kmeans-closest, else proportional
    temperature: float = 1.0
    seed: int = 0
    budget_tokens: int | None = None  # instead of budget: a total token count
    token_column: str | None = None  # tokens per row; default: whitespace tokens of the text

    def check(self) -> None:
        if self.budget_tokens is not None and self.budget_tokens < 1:
            raise UsageError("--budget-tokens must be at least 1")
        if self.strategy not in STRATEGIES:
            raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}")
        if self.allocation is not None and self.allocation not in ALLOCATIONS:
            raise UsageError(f"--allocation must be one of {', '.join(ALLOCATIONS)}")
        if self.strategy in NEEDS_SCORE and not self.score_column:
            raise UsageError(f"--strategy {self.strategy} needs --score-column")
        if self.temperature <= 0:
            raise UsageError("--temperature must be positive")

    @property
    def resolved_allocation(self) -> str:
        if self.allocation:
            return self.allocation
        return "equal" if self.strategy == "kmeans-closest" else "proportional"


def parse_budget(budget: str, rows: int) -> int:
    """'1000' -> 1000 rows; '5%' -> round(5% of rows), at least 1. Must fit the data."""
    text = str(budget).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if not 0 < share <= 100:
                raise ValueError
            count = max(1, round(rows * share / 100))
        else:
            count = int(text)
    except ValueError:
        raise UsageError(f"--budget must be a row count or a percentage, not {budget!r}") from None
    if count < 1:
        raise UsageError("--budget must be at least 1 row")
    if count > rows:
        raise UsageError(f"--budget {count:,} is larger than the data ({rows:,} rows)")
    return count


class SampleStage:
    name = "sample"
    artifacts = (DECISIONS, SELECTION)

    def __init__(self, dataset: InputDataset, config: SampleConfig) -> None:
        config.check()
        self.dataset = dataset
        self.config = config
        names = dataset.schema.names
        if "id" not in names:
            raise DataError(f"{dataset.path}: no 'id' column (give a cluster stage folder)")
        if config.strategy in NEEDS_CLUSTERS and "cluster" not in names:
            raise DataError(
                f"{dataset.path}: --strategy {config.strategy} needs a 'cluster' column "
                "(give a cluster stage folder)"
            )
        if config.strategy == "kmeans-closest" and "distance" not in names:
            raise DataError(f"{dataset.path}: --strategy kmeans-closest needs a 'distance' column")
        if config.score_column:
            dataset.require_columns([config.score_column], what="score column")
        self.lineage = trace_lineage(Path(dataset.path))
        self.ids, self.pool = self._read_pool()
        if config.budget_tokens is None:
            self.budget = parse_budget(config.budget, len(self.ids))
            self.tokens_selected: int | None = None
        else:
            self.budget, self.tokens_selected = self._rows_for_tokens(config.budget_tokens)
        extra = [pa.field("id", pa.string())] if self.lineage.id_column is None else []
        self.schema = pa.schema(extra + list(self.lineage.source.schema))
        self.chosen: pa.Array | None = None

    def _read_pool(self) -> tuple[pa.Array, Pool]:
        """The small per-row columns of every shard, in id order; duplicate ids are refused."""
        wanted = ["id"] + [
            c
            for c in ("cluster", "distance", self.config.score_column)
            if c and c in self.dataset.schema.names
        ]
        tables = [
            pa.Table.from_batches(list(shard.iter_batches(wanted, batch_rows=1 << 16)))
            if shard.rows
            else None
            for shard in self.dataset.shards
        ]
        table = pa.concat_tables([t for t in tables if t is not None])
        table = table.sort_by([("id", "ascending")])
        ids = table.column("id").combine_chunks()
        if len(ids) > 1:
            same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
            if pc.any(same).as_py():
                dup = ids[int(pc.index(same, True).as_py())].as_py()
                raise DataError(f"{self.dataset.path}: duplicate id {dup!r} across shards")
        pool = Pool(keys=row_keys(ids, self.config.seed, SELECT_STREAM))
        if "cluster" in table.column_names:
            pool.cluster = table.column("cluster").to_numpy().astype(np.int32)
        if "distance" in table.column_names:
            pool.distance = table.column("distance").to_numpy()
        if self.config.score_column:
            score = table.column(self.config.score_column)
            values = score.to_numpy(zero_copy_only=False).astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(values))
            if score.null_count or len(bad):
                row = ids[int(bad[0])].as_py() if len(bad) else "?"
                raise DataError(
                    f"{self.dataset.path}: column '{self.config.score_column}' has a NaN, "
                    f"infinite or null score (id {row!r})"
                )
            pool.score = values
        return ids, pool

    def _row_tokens(self) -> np.ndarray:
        """Tokens per row, in pool (id) order: a source column, or whitespace tokens of the
        text the embed stage embedded."""
        from dataselect.embedding.text import TextSpec

        source, embed = self.lineage.source, self.lineage.embed.params
        column = self.config.token_column
        if column is None and embed.get("embedder") == "precomputed":
            raise UsageError(
                "--budget-tokens: the input was embedded from vectors; name --token-column"
            )
        spec = None if column else TextSpec(embed["text_column"], embed["template"])
        if column:
            source.require_columns([column], what="token column")
        needed = [column] if column else spec.columns  # type: ignore[union-attr]
        if self.lineage.id_column:
            needed = [self.lineage.id_column, *needed]
        ids, counts = [], []
        for shard in source.shards:
            offset = 0
            for batch in shard.iter_batches(list(dict.fromkeys(needed)), batch_rows=1 << 15):
                ids.append(batch_ids(batch, shard, offset, self.lineage.id_column))
                if column:
                    counts.append(batch.column(column).to_numpy(zero_copy_only=False))
                else:
                    texts = spec.texts(batch, shard, offset)  # type: ignore[union-attr]
                    counts.append(np.fromiter((len(t.split()) for t in texts), np.int64))
                offset += batch.num_rows
        table = pa.table({"id": pa.concat_arrays(ids), "tokens": np.concatenate(counts)})
        table = table.sort_by([("id", "ascending")])
        if not table.column("id").combine_chunks().equals(self.ids):
            raise DataError(f"{source.path}: its rows no longer match {self.dataset.path}")
        tokens = table.column("tokens").to_numpy().astype(np.float64)
        if not np.isfinite(tokens).all() or (tokens < 0).any():
            raise DataError(f"{source.path}: token counts must be finite and not negative")
        return tokens

    def _rows_for_tokens(self, budget_tokens: int) -> tuple[int, int]:
        """The most rows whose selection fits the token budget (binary search over the row
        budget; the strategy's own order decides which rows)."""
        tokens = self._row_tokens()
        config = self.config

        def used(rows: int) -> float:
            chosen = select(
                self.pool, config.strategy, rows, config.resolved_allocation, config.temperature
            )
            return float(tokens[chosen.rows].sum())

        low, high = 0, len(tokens)
        while low < high:
            middle = (low + high + 1) // 2
            if used(middle) <= budget_tokens:
                low = middle
            else:
                high = middle - 1
        if low == 0:
            raise UsageError(f"--budget-tokens {budget_tokens:,}: not even one row fits")
        return low, int(used(low))

    def params(self) -> dict[str, Any]:
        params = asdict(self.config)
        params["allocation"] = self.config.resolved_allocation
        params["budget_rows"] = self.budget
        return params

    # -- stage hooks -------------------------------------------------------------------
    def setup(self, output: StageOutput) -> None:
        config = self.config
        self.selection = select(
            self.pool, config.strategy, self.budget, config.resolved_allocation, config.temperature
        )
        self.chosen = self.ids.take(pa.array(np.sort(self.selection.rows)))

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        assert self.chosen is not None
        id_column = self.lineage.id_column
        offset = 0
        for batch in shard.iter_batches(self.lineage.source.schema.names, batch_rows=1 << 15):
            ids = batch_ids(batch, shard, offset, id_column)
            offset += batch.num_rows
            keep = pc.is_in(ids, value_set=self.chosen)
            if id_column is None:
                batch = pa.RecordBatch.from_arrays(
                    [ids, *batch.columns], names=["id", *batch.schema.names]
                )
            yield batch.filter(keep)

    def finish(self, output: StageOutput) -> dict[str, Any]:
        selected = np.zeros(len(self.ids), dtype=bool)
        selected[self.selection.rows] = True
        written = sum(int(r["rows"]) for r in output.done.values())
        if written != self.budget:
            raise DataError(
                f"{output.folder}: {written} rows were found in the source for a budget of "
                f"{self.budget}: the source no longer matches the embed stage"
            )
        columns: dict[str, Any] = {"id": self.ids}
        if self.pool.cluster is not None:
            columns["cluster"] = pa.array(self.pool.cluster)
        if self.pool.score is not None:
            columns["score"] = pa.array(self.pool.score.astype(np.float32))
        columns["selected"] = pa.array(selected)
        columns["reason"] = pa.array(self.selection.reasons.tolist(), type=pa.string())
        buffer = pa.BufferOutputStream()
        pq.write_table(pa.table(columns), buffer, compression="zstd")
        output.write_artifact(DECISIONS, buffer.getvalue().to_pybytes())
        facts = {"budget_rows": self.budget, "rows_in": len(self.ids), **self._metrics(selected)}
        if self.tokens_selected is not None:
            facts["tokens_selected"] = self.tokens_selected
        report = {"strategy": self.config.strategy, "params": self.params(), **facts}
        output.write_artifact(
            SELECTION, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()
        )
        return facts

    def _metrics(self, selected: np.ndarray) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if self.pool.cluster is not None:
            k = int(self.pool.cluster.max()) + 1
            chosen_clusters = self.pool.cluster[selected]
            counts = np.bincount(chosen_clusters, minlength=k)
            facts["counts_per_cluster"] = {str(c): int(n) for c, n in enumerate(counts) if n}
            facts["cluster_coverage"] = round(cluster_coverage(chosen_clusters, k), 4)
            facts["cluster_entropy"] = round(cluster_entropy(chosen_clusters), 4)
            facts["corpus_cluster_entropy"] = round(cluster_entropy(self.pool.cluster), 4)
        embed = open_input(self.lineage.embed_folder)
        dim = int(self.lineage.embed.params["dim"])
        vectors = []
        for shard in embed.shards:
            for batch in shard.iter_batches(["id", "embedding"], batch_rows=1 << 15):
                keep = pc.is_in(batch.column("id"), value_set=self.chosen)
                picked = batch.filter(keep).column("embedding")
                if len(picked):
                    vectors.append(picked.flatten().to_numpy().reshape(-1, dim))
        facts["vendi_selected"] = vendi_scores(np.concatenate(vectors))
        size = min(len(self.ids), METRICS_SAMPLE_ROWS)
        corpus = keyed_sample(embed, "embedding", dim, "id", size, self.config.seed, trusted=True)
        facts["vendi_corpus"] = vendi_scores(corpus)
        facts["vendi_corpus_rows"] = size
        return facts


def sample(
    input: str | Path,
    output: str | Path,
    config: SampleConfig | None = None,
    overwrite: bool | str = False,
    quiet: bool = False,
) -> StageResult:
    """Select ``config.budget`` rows of a cluster folder into the dataset folder ``output``."""
    config = config or SampleConfig()
    config.check()
    dataset = open_stage_input(input)
    if dataset.manifest is None:
        raise DataError(f"{input}: give a cluster stage folder (it has no {MANIFEST_NAME})")
    stage = SampleStage(dataset, config)
    return run_stage(
        stage,
        stage.lineage.source,
        output,
        overwrite=overwrite,
        quiet=quiet,
        identity_input=dataset,
    )
