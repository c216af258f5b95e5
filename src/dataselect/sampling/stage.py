"""The sample stage: a reduction over small per-row columns, then the chosen rows written out.

INPUT is a cluster (or later score) stage folder. Its id / cluster / distance / score
columns are read into memory (a few bytes per row), a strategy picks exactly the budget,
and the chosen rows are written with all their original columns, found by following the
manifests back to the source data: OUTPUT part i holds the chosen rows of source shard i,
so a selection is itself a dataset folder. Beside them, under names Parquet readers skip:
__artifacts__/decisions.parquet (every row: id, cluster, score, selected, reason) and
_selection.json (parameters, counts, metrics).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect import progress
from dataselect.clustering.kmeans import SAMPLE_STREAM
from dataselect.errors import DataError, UsageError
from dataselect.io.atomic import write_bytes_atomic
from dataselect.io.folder_state import artifact_path
from dataselect.io.ids import batch_ids, derived_ids
from dataselect.io.lock import writing
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard, open_stage_input
from dataselect.keyed import row_keys
from dataselect.lineage import trace_lineage
from dataselect.manifest import MANIFEST_NAME, read_manifest
from dataselect.progress import Reporter
from dataselect.sampling.config import SampleConfig
from dataselect.sampling.feedback import digest, feedback_path, normalised_feedback
from dataselect.sampling.files import DECISIONS, SELECTION
from dataselect.sampling.identical import VECTOR_HASH, identical_copies, later_copies
from dataselect.sampling.iterative import IterativeStrategy
from dataselect.sampling.metrics import (
    cluster_coverage,
    cluster_entropy,
    counts_entropy,
    vendi_scores,
)
from dataselect.sampling.registry import STRATEGIES
from dataselect.sampling.strata import stratum_budgets, stratum_codes
from dataselect.sampling.strategies import Pool, Selection, select
from dataselect.sampling.strategy import (
    AdaptiveStrategy,
    OneShotStrategy,
    SampleContext,
)
from dataselect.sampling.streaming import (
    SELECT_STREAM,
    BoundedTop,
    checked_scores,
    select_streaming,
)
from dataselect.sampling.vectors import READ_ROWS, embeddings_of, rows_at
from dataselect.stage import SchedulingTraits, StageResult, reading_inputs, run_stage

METRICS_SAMPLE_ROWS = 20_000
KEEP_COLUMN = "keep"  # a dedup stage's verdict: rows with keep false are never drawn
WRITE_ROWS = 1 << 16  # the most chosen rows in one row group of an output part


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


def strategy_params(config: SampleConfig) -> dict[str, Any]:
    """The config as recorded in the manifest: the sample stage's own options (the
    allocation resolved) and the options of the strategy chosen, not those of the others."""
    params = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in config.values().items()
        if key not in config.options
    }
    params["allocation"] = config.resolved_allocation
    for key, value in asdict(config.options_for(config.entry)).items():
        params[key] = list(value) if isinstance(value, tuple) else value
    return params


def config_from_params(params: dict[str, Any]) -> SampleConfig:
    known = {spec.name for spec in SampleConfig.option_specs()}
    return SampleConfig(**{k: v for k, v in params.items() if k in known})


def check_sample_input(dataset: InputDataset, config: SampleConfig) -> None:
    """Refuse, with one line, an input that lacks what the strategy reads."""
    names = dataset.schema.names
    traits = config.entry.traits
    if "id" not in names:
        raise DataError(f"{dataset.path}: no 'id' column (give a cluster stage folder)")
    if traits.needs_clusters and "cluster" not in names:
        raise DataError(
            f"{dataset.path}: --strategy {config.strategy} needs a 'cluster' column "
            "(give a cluster stage folder)"
        )
    if traits.needs_distance and "distance" not in names:
        raise DataError(f"{dataset.path}: --strategy {config.strategy} needs a 'distance' column")
    if config.score_column:
        dataset.require_columns([config.score_column], what="score column")
        kind = dataset.schema.field(config.score_column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise DataError(
                f"{dataset.path}: score column '{config.score_column}' is {kind}, not numeric"
            )


class SampleStage:
    name = "sample"
    artifacts = (DECISIONS, SELECTION, *(a for entry in STRATEGIES for a in entry.artifacts))
    # the write-out is pyarrow reading and writing, which releases the GIL: its shards run
    # side by side in threads (worker processes measured slower: 15-16 s against 6-9 s at
    # 5M rows, each re-importing and being sent the selection; README, "Engines")
    traits = SchedulingTraits(shards_in_threads=True)

    def __init__(self, dataset: InputDataset, config: SampleConfig) -> None:
        config.check()
        check_sample_input(dataset, config)
        self.dataset = dataset
        self.config = config
        self.lineage = trace_lineage(Path(dataset.path))
        self.strategy = config.make_strategy()
        if isinstance(self.strategy, AdaptiveStrategy):
            self.strategy.prepare(dataset)
        # one-shot strategies stream; the adaptive ones, token budgets and a dedup stage's
        # input (only its kept rows are drawn) hold the pool
        self.deduplicated = KEEP_COLUMN in dataset.schema.names
        # kmeans-closest, top-k: one row of each set of identical vectors (sampling/identical)
        self.one_per_vector = (config.entry.traits.one_per_vector
                               and VECTOR_HASH in dataset.schema.names)  # fmt: skip
        self.streams = (self.strategy.traits.streams and config.budget_tokens is None
                        and not self.deduplicated and not config.stratify_column)  # fmt: skip
        self.strata: tuple[np.ndarray, list[str]] | None = None
        self.stratum_facts: dict[str, Any] = {}
        self.tokens_selected: int | None = None
        if self.streams:
            self.budget = parse_budget(config.budget, dataset.rows or 0)
        else:
            self.ids, self.pool = self._read_pool()
            if config.stratify_column:
                self.strata = stratum_codes(self._source_column(config.stratify_column))
            if config.budget_tokens is None and self.one_per_vector and not self.deduplicated:
                # a share of every row, as when streamed; identical vectors count once
                self.budget = parse_budget(config.budget, dataset.rows or len(self.ids))
                check_distinct(self.budget, len(self.ids))
            elif config.budget_tokens is None:
                self.budget = parse_budget(config.budget, len(self.ids))
            else:
                self.budget, self.tokens_selected = self._rows_for_tokens(config.budget_tokens)
        extra = [pa.field("id", pa.string())] if self.lineage.id_column is None else []
        self.schema = pa.schema(extra + list(self.lineage.source.schema))
        self.positions: dict[int, pa.Table] = {}
        self.duplicate_check: Future[None] | None = None  # streamed: awaited in finish
        self.rows_out: int | None = None  # the rows it writes, once chosen (setup)
        sources = len(self.lineage.source.shards)
        if sources != len(dataset.shards):
            raise DataError(f"{self.lineage.source.path}: {sources} shards, but "
                            f"{dataset.path} has {len(dataset.shards)}: the source "
                            "no longer matches the embed stage")  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        """What a worker process needs to write its shard: not the pool."""
        return {"lineage": self.lineage, "positions": self.positions, "schema": self.schema}

    def _read_pool(self) -> tuple[pa.Array, Pool]:
        """The small per-row columns of every shard, in id order; duplicate ids are refused."""
        wanted = ["id"] + [
            c
            for c in ("cluster", "distance", self.config.score_column, KEEP_COLUMN, VECTOR_HASH)
            if c and c in self.dataset.schema.names
        ]
        progress.phase(f"read the pool ({', '.join(wanted)})", self.dataset.rows, "rows")
        tables = [
            with_positions(pa.Table.from_batches(list(_counted(shard, wanted))), number)
            for number, shard in enumerate(self.dataset.shards)
            if shard.rows
        ]
        progress.phase("order and key the pool")
        table = pa.concat_tables(tables).sort_by([("id", "ascending")])
        self.pool_positions = table.select(["shard", "row"])
        ids = table.column("id").combine_chunks()
        if len(ids) > 1:
            same = pc.equal(ids.slice(1), ids.slice(0, len(ids) - 1))
            if pc.any(same).as_py():
                dup = ids[int(pc.index(same, True).as_py())].as_py()
                raise DataError(f"{self.dataset.path}: duplicate id {dup!r} across shards")
        if self.deduplicated:  # a dedup stage's rows: only the kept ones are drawn
            table = table.filter(pc.fill_null(table.column(KEEP_COLUMN), False))
            if not table.num_rows:
                raise DataError(f"{self.dataset.path}: no row is kept")
        keys = row_keys(table.column("id").combine_chunks(), self.config.seed, SELECT_STREAM)
        if self.one_per_vector:  # one row of each set of identical vectors
            hashes = table.column(VECTOR_HASH).to_numpy().astype(np.uint64)
            drawable = ~later_copies(hashes, keys)
            table, keys = table.filter(pa.array(drawable)), keys[drawable]
        self.pool_positions = table.select(["shard", "row"])
        ids = table.column("id").combine_chunks()
        pool = Pool(keys=keys)
        if "cluster" in table.column_names:
            pool.cluster = table.column("cluster").to_numpy().astype(np.int32)
        if "distance" in table.column_names:
            pool.distance = table.column("distance").to_numpy()
        if self.config.score_column:
            batch = pa.RecordBatch.from_arrays(
                [ids, table.column(self.config.score_column).combine_chunks()],
                names=["id", self.config.score_column],
            )
            pool.score = checked_scores(batch, self.config.score_column, self.dataset.path)
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
        aligned = self._in_pool_order(ids, pa.array(np.concatenate(counts)))
        tokens = aligned.to_numpy(zero_copy_only=False).astype(np.float64)
        if not np.isfinite(tokens).all() or (tokens < 0).any():
            raise DataError(f"{source.path}: token counts must be finite and not negative")
        return tokens

    def _source_column(self, column: str) -> pa.Array:
        """A column of the source data, in pool (id) order."""
        source = self.lineage.source
        source.require_columns([column], what="stratify column")
        needed = list(dict.fromkeys([*filter(None, [self.lineage.id_column]), column]))
        ids, values = [], []
        for shard in source.shards:
            offset = 0
            for batch in shard.iter_batches(needed, batch_rows=1 << 15):
                ids.append(batch_ids(batch, shard, offset, self.lineage.id_column))
                values.append(batch.column(column))
                offset += batch.num_rows
        return self._in_pool_order(ids, pa.concat_arrays(values))

    def _in_pool_order(self, ids: list[pa.Array], values: pa.Array) -> pa.Array:
        """Values read from the source (with their ids, in source order) in pool order: by
        id, only the drawable rows; refused when the source's rows no longer match."""
        table = pa.table({"id": pa.concat_arrays(ids), "value": values})
        table = table.sort_by([("id", "ascending")])
        if self.deduplicated or self.one_per_vector:  # the pool holds only drawable rows
            table = table.filter(pc.is_in(table.column("id"), value_set=self.ids))
        if not table.column("id").combine_chunks().equals(self.ids):
            raise DataError(f"{self.lineage.source.path}: its rows no longer match "
                            f"{self.dataset.path}")  # fmt: skip
        return table.column("value").combine_chunks()

    def _rows_for_tokens(self, budget_tokens: int) -> tuple[int, int]:
        """The most rows whose selection fits the token budget (binary search over the row
        budget; the strategy's own order decides which rows)."""
        tokens = self._row_tokens()
        if budget_tokens > tokens.sum():  # as a row budget larger than the data
            raise UsageError(f"--budget-tokens {budget_tokens:,} is larger than the data "
                             f"({int(tokens.sum()):,} tokens in {len(tokens):,} rows)")  # fmt: skip

        def used(rows: int) -> float:
            return float(tokens[self._select(rows).rows].sum())

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
        return strategy_params(self.config) | {"budget_rows": self.budget}

    def _select(self, budget: int, output: StageOutput | None = None) -> Selection:
        """The chosen rows for ``budget`` (an adaptive strategy keeps its details); with
        --stratify-column, the budget split over the strata and each selected on its own."""
        if self.strata is None:
            self.extra_columns = None
            return self._select_within(self.strategy, None, budget, output)
        config = self.config
        codes, names = self.strata
        sizes = np.bincount(codes, minlength=len(names))
        budgets = stratum_budgets(sizes, names, budget, config.stratum_budget, config.mixture)
        reasons = np.full(len(self.pool), "not selected", dtype=object)
        chosen: list[np.ndarray] = []
        extra: dict[str, list[pa.Array]] = {}
        self.stratum_facts = {}
        for s in np.flatnonzero(budgets).tolist():
            rows = np.flatnonzero(codes == s)
            strategy = config.make_strategy()  # its own state per stratum
            part = self._select_within(strategy, rows, int(budgets[s]), output)
            picked = rows[part.rows]
            chosen.append(picked)
            reasons[picked] = [f"stratum {names[s]}: {r}" for r in part.reasons[part.rows]]
            if isinstance(strategy, AdaptiveStrategy):
                for key, column in strategy.decision_columns(part.rows).items():
                    extra.setdefault(key, []).append(column)
                context = self._context(output, rows)
                self.stratum_facts[names[s]] = strategy.facts(output, context) if output else {}
        self.extra_columns = {key: pa.concat_arrays(parts) for key, parts in extra.items()}
        self.stratum_counts = {
            names[s]: {"rows": int(sizes[s]), "selected": int(budgets[s])}
            for s in range(len(names))
        }
        rows = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
        return Selection(rows=rows, reasons=reasons)

    def _select_within(
        self, strategy: Any, rows: np.ndarray | None, budget: int, output: StageOutput | None
    ) -> Selection:
        """``strategy``'s choice of ``budget`` among the pool ``rows`` (all when None), as
        indices into those rows."""
        config = self.config
        pool = self.pool if rows is None else self.pool.subset(rows)
        if isinstance(strategy, AdaptiveStrategy):
            return strategy.choose(pool, budget, self._context(output, rows))
        assert isinstance(strategy, OneShotStrategy)
        return select(pool, strategy, budget, config.resolved_allocation, config.temperature)

    def _context(self, output: StageOutput | None, rows: np.ndarray | None = None) -> SampleContext:
        """What an adaptive strategy reads besides the pool (of ``rows`` when given)."""
        ids = self.ids if rows is None else self.ids.take(pa.array(rows))
        positions = self.pool_positions.add_column(0, "id", self.ids)
        if rows is not None:
            positions = positions.take(pa.array(rows))
        return SampleContext(self.dataset, self.lineage, ids, self.config.seed,
                             self.config.temperature, output, self.config.resolved_allocation,
                             positions)  # fmt: skip

    # -- stage hooks -------------------------------------------------------------------
    def setup(self, output: StageOutput) -> None:
        """Choose the rows: the decisions table (sorted by id), the cluster sizes and the
        keyed corpus sample the metrics use."""
        if self.streams:
            self._choose_streaming()
        else:
            self._choose_in_memory(output)
        self.positions = rows_by_shard(self.chosen_rows)
        self.rows_out = self.decisions.num_rows  # the total of the write phase (run_stage)

    def _choose_streaming(self) -> None:
        config, strategy = self.config, self.strategy
        assert isinstance(strategy, OneShotStrategy)
        skip = None
        if self.one_per_vector:
            skip = identical_copies(self.dataset, config.seed, SELECT_STREAM)
            check_distinct(self.budget, int(self.dataset.rows or 0) - len(skip.keys))
        found = select_streaming(self.dataset, strategy, self.budget,
                                 config.resolved_allocation, config.temperature, config.seed,
                                 config.score_column, METRICS_SAMPLE_ROWS,
                                 self._cluster_sizes(), skip)  # fmt: skip
        chosen = found.chosen
        group, rank = chosen.column("group").to_numpy(), chosen.column("rank").to_numpy()
        self.decisions = decisions_table(
            chosen.column("id"),
            chosen.column("cluster") if "cluster" in chosen.column_names else None,
            chosen.column("score") if "score" in chosen.column_names else None,
            strategy.reasons(group, rank, found.quota),
        )
        self.chosen_rows = chosen.select(["id", "shard", "row"])
        self.sizes = found.sizes
        self.corpus_sample = found.corpus_sample
        self.duplicate_check = found.duplicate_check

    def _cluster_sizes(self) -> np.ndarray | None:
        """Rows per cluster from the cluster stage's clusters.parquet, when it is there, up
        to the last cluster with rows, as when the sizes are counted from the rows (cluster
        coverage divides by this count)."""
        from dataselect.clustering.stage import read_cluster_sizes

        folder = self.lineage.cluster_folder
        sizes = None if folder is None else read_cluster_sizes(folder)
        if sizes is None or not sizes.any():
            return sizes
        return sizes[: int(np.flatnonzero(sizes).max()) + 1]

    def _choose_in_memory(self, output: StageOutput) -> None:
        self.selection = self._select(self.budget, output)
        rows = pa.array(self.selection.rows)
        pool = self.pool
        extra = self.extra_columns
        if extra is None and isinstance(self.strategy, AdaptiveStrategy):
            extra = self.strategy.decision_columns(self.selection.rows)
        self.decisions = decisions_table(
            self.ids.take(rows),
            None if pool.cluster is None else pa.array(pool.cluster).take(rows),
            None if pool.score is None else pa.array(pool.score).take(rows),
            self.selection.reasons[self.selection.rows].tolist(),
            extra,
        )
        self.sizes = None
        if pool.cluster is not None:
            self.sizes = np.bincount(pool.cluster, minlength=int(pool.cluster.max()) + 1)
        every = self.pool_positions.add_column(0, "id", self.ids)
        self.chosen_rows = every.take(rows)
        self.corpus_sample = keyed_sample(every, self.config.seed, METRICS_SAMPLE_ROWS)

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        """The chosen rows of one source shard, taken by position (shard i of the input is
        shard i of the source, row for row); their ids are checked against the selection."""
        chosen = self.positions.get(shard.index)
        if chosen is None:
            return
        id_column = self.lineage.id_column
        rows = chosen.column("row").to_numpy()
        # small reads (a vector column decodes through several copies of its batch), joined
        # into row groups of up to WRITE_ROWS chosen rows, whatever the read batch size
        batches = shard.iter_batches(self.lineage.source.schema.names, READ_ROWS, threads=True)
        held: list[pa.RecordBatch] = []
        for first, last, picked in rows_at(batches, rows):
            if id_column is None:
                ids = derived_ids(shard, rows[first:last])
                picked = pa.RecordBatch.from_arrays(
                    [ids, *picked.columns], names=["id", *picked.schema.names]
                )
            else:
                ids = batch_ids(picked, shard, 0, id_column)
            if not ids.equals(chosen.column("id").slice(first, last - first).combine_chunks()):
                raise DataError(f"{shard.describe()}: its rows no longer match the "
                                "embed stage's (rerun the stages after it)")  # fmt: skip
            held.append(picked)
            if sum(batch.num_rows for batch in held) >= WRITE_ROWS:
                yield joined(held)
                held = []
        if held:
            yield joined(held)

    def finish(self, output: StageOutput) -> dict[str, Any]:
        if self.duplicate_check is not None:
            self.duplicate_check.result()  # its DataError, if any
        written = sum(int(r["rows"]) for r in output.done.values())
        if written != self.decisions.num_rows:
            raise DataError(
                f"{output.folder}: {written} rows were found in the source for "
                f"{self.decisions.num_rows} selected: the source no longer matches the embed stage"
            )
        output.write_artifact(DECISIONS, parquet_bytes(self.decisions))
        facts = {
            "budget_rows": self.budget,
            "rows_in": self.dataset.rows,
            "rows_selected": self.decisions.num_rows,
            **self._metrics(),
            **self._adaptive_facts(output),
        }
        if self.tokens_selected is not None:
            facts["tokens_selected"] = self.tokens_selected
        if self.deduplicated:  # drawn from the kept rows only
            facts["rows_kept"] = len(self.ids)
        report = {"strategy": self.config.strategy, "params": self.params(), **facts}
        output.write_artifact(
            SELECTION, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()
        )
        return facts

    def _adaptive_facts(self, output: StageOutput) -> dict[str, Any]:
        """Per-round weights of iterative, pull statistics of bandit, and the like; with
        strata, the rows per stratum (and an adaptive strategy's facts per stratum)."""
        if self.strata is not None:
            facts: dict[str, Any] = {"strata": self.stratum_counts}
            if any(self.stratum_facts.values()):
                facts["per_stratum"] = self.stratum_facts
            return facts
        if isinstance(self.strategy, AdaptiveStrategy):
            return self.strategy.facts(output, self._context(output))
        return {}

    def _metrics(self) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if self.sizes is not None:
            k = len(self.sizes)
            chosen_clusters = self.decisions.column("cluster").to_numpy()
            counts = np.bincount(chosen_clusters, minlength=k)
            facts["counts_per_cluster"] = {str(c): int(n) for c, n in enumerate(counts) if n}
            facts["cluster_coverage"] = round(cluster_coverage(chosen_clusters, k), 4)
            facts["cluster_entropy"] = round(cluster_entropy(chosen_clusters), 4)
            facts["corpus_cluster_entropy"] = round(counts_entropy(self.sizes), 4)
        # one pass over the embeddings: a keyed sample of the selected rows, and the corpus
        # sample (the fit sample's keyed rule), each in key order
        selected = keyed_sample(self.chosen_rows, self.config.seed, METRICS_SAMPLE_ROWS)
        vectors = embeddings_of(self.lineage.embed_folder, [selected, self.corpus_sample],
                                int(self.lineage.embed.params["dim"]))  # fmt: skip
        facts["vendi_selected"] = vendi_scores(vectors[0])
        facts["vendi_selected_rows"] = len(selected)
        facts["vendi_corpus"] = vendi_scores(vectors[1])
        facts["vendi_corpus_rows"] = len(self.corpus_sample)
        return facts


def check_distinct(budget: int, distinct: int) -> None:
    """A budget above the rows a one-row-per-vector strategy may draw is a usage error."""
    if budget > distinct:
        raise UsageError(f"--budget {budget:,} is larger than the distinct rows "
                         f"({distinct:,}: identical vectors count once)")  # fmt: skip


def decisions_table(
    ids: pa.Array | pa.ChunkedArray,
    cluster: pa.Array | pa.ChunkedArray | None,
    score: pa.Array | pa.ChunkedArray | None,
    reasons: list[str],
    extra: dict[str, pa.Array] | None = None,
) -> pa.Table:
    """One row per selected row, sorted by id: why it was kept (a row not listed was not)."""
    columns: dict[str, Any] = {"id": ids}
    if cluster is not None:
        columns["cluster"] = cluster
    if score is not None:
        columns["score"] = pc.cast(score, pa.float32())
    columns["selected"] = pa.array(np.ones(len(ids), dtype=bool))
    columns.update(extra or {})  # e.g. iterative's round
    columns["reason"] = pa.array(reasons, type=pa.string())
    return pa.table(columns).sort_by([("id", "ascending")]).combine_chunks()


def keyed_sample(table: pa.Table, seed: int, rows: int) -> pa.Table:
    """At most ``rows`` rows of ``table`` (id, shard, row): those whose id has the smallest
    keyed hash, in key order (the k-means fit sample's rule), taken a chunk at a time."""
    top = BoundedTop(np.array([rows]), np.uint64)
    for start in range(0, table.num_rows, 1 << 16):
        chunk = table.slice(start, 1 << 16)
        ids = chunk.column("id").combine_chunks()
        where = {name: chunk.column(name).to_numpy() for name in ("shard", "row")}
        top.add(np.zeros(len(ids), np.int32), row_keys(ids, seed, SAMPLE_STREAM), ids,
                payload=where)  # fmt: skip
    if not table.num_rows:
        return table
    return top.result().select(["id", "shard", "row"]).combine_chunks()


def joined(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch of the rows of ``batches`` (same schema), in order."""
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def with_positions(table: pa.Table, shard: int) -> pa.Table:
    """``table`` (one input shard's rows, in order) with its shard number and row numbers."""
    table = table.append_column("shard", pa.array(np.full(table.num_rows, shard, np.int32)))
    return table.append_column("row", pa.array(np.arange(table.num_rows, dtype=np.int64)))


def rows_by_shard(rows: pa.Table) -> dict[int, pa.Table]:
    """Rows (id, shard, row) grouped by shard, each group sorted by row."""
    rows = rows.sort_by([("shard", "ascending"), ("row", "ascending")])
    shard = rows.column("shard").to_numpy()
    cuts = np.flatnonzero(np.diff(shard)) + 1
    return {
        int(shard[start]): rows.slice(start, end - start).combine_chunks()
        for start, end in zip([0, *cuts], [*cuts, len(shard)], strict=True)
        if end > start
    }


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue().to_pybytes()


def _counted(shard: InputShard, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """A shard's batches, each counted in the running reporter's phase (if any)."""
    for batch in shard.iter_batches(columns, batch_rows=1 << 16):
        progress.step(batch.num_rows)
        yield batch


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
    with reading_inputs(input):  # no run replaces what this one reads
        dataset = open_stage_input(input)
        if dataset.manifest is None:
            raise DataError(f"{input}: give a cluster stage folder (it has no {MANIFEST_NAME})")
        # the pool is read before the stage runs (its budget is part of the manifest): a
        # reporter of its own, so a long read is logged like every other phase
        with Reporter("sample", dataset.rows, len(dataset.shards), quiet=quiet):
            stage = SampleStage(dataset, config)
        return run_stage(
            stage,
            stage.lineage.source,
            output,
            overwrite=overwrite,
            quiet=quiet,
            identity_input=dataset,
        )


def refine(
    output: str | Path,
    feedback: str | Path,
    feedback_column: str = "score",
    quiet: bool = False,
) -> StageResult:
    """Run the next round of an iterative selection with ``feedback`` on its rows so far.

    The feedback is stored in OUTPUT/_feedback/ and its digest joins the selection's
    parameters; then the sample stage reruns with them, replacing the previous round's files
    (the stored feedback of every earlier round replays it). Giving the feedback of the last
    round again is a no-op; after a crash it finishes that round.
    """
    folder = Path(output)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such selection folder")
    with writing(folder):  # one refine (or sample) at a time: no round is lost
        manifest = read_manifest(folder)
        if manifest.stage != "sample" or not IterativeStrategy.matches(
            str(manifest.params.get("strategy"))
        ):
            raise UsageError(
                f"{folder}: not an iterative selection (make one with "
                "`dataselect sample --strategy iterative`)"
            )
        config = config_from_params(manifest.params)
        options = config.options
        if options["feedback"] == "probe":
            raise UsageError(f"{folder}: runs all its rounds itself (--feedback probe)")
        input_path = manifest.input["path"]
        dataset = open_stage_input(input_path)
        data = normalised_feedback(feedback, feedback_column, dataset.schema.field("id").type)
        new = digest(data)
        digests = options["feedback_digests"]
        if digests and new == digests[-1]:  # already applied: nothing to do, or finish a crash
            return sample(input_path, folder, config, quiet=quiet)
        if not manifest.complete:
            again = "`dataselect refine` with its feedback" if digests else "`dataselect sample`"
            raise UsageError(f"{folder}: its last round did not finish; rerun {again} first")
        finished = len(digests) + 1
        if finished >= options["rounds"]:
            raise UsageError(
                f"{folder}: all {options['rounds']} rounds are done; nothing to refine"
            )
        _check_feedback_ids(folder, data, feedback)
        path = feedback_path(folder, finished)
        path.parent.mkdir(exist_ok=True)
        write_bytes_atomic(path, data)
        options["feedback_digests"] = (*digests, new)
        return sample(input_path, folder, config, overwrite="stale", quiet=quiet)


def _check_feedback_ids(folder: Path, data: bytes, feedback: str | Path) -> None:
    """Refuse feedback that names none of the selected rows, before anything is replaced."""
    decisions = pq.read_table(artifact_path(folder, DECISIONS), columns=["id", "selected"])
    selected = decisions.filter(decisions.column("selected")).column("id")
    ids = pq.read_table(pa.BufferReader(data), columns=["id"]).column("id")
    if not pc.any(pc.is_in(ids, value_set=selected.combine_chunks())).as_py():
        raise DataError(f"{feedback}: no feedback id is among the {len(selected):,} rows selected")


def refined_rounds(input: str | Path, output: str | Path, config: SampleConfig) -> tuple[str, ...]:
    """The feedback digests `refine` added to the iterative selection in ``output``, when it
    was made from the same input with the same settings: `dataselect run` carries them, so
    rerunning a pipeline keeps the rounds instead of starting again from round 1."""
    folder = Path(output)
    given: tuple[str, ...] = config.options["feedback_digests"]
    if config.entry is not IterativeStrategy or config.options["feedback"] is not None:
        return given  # only refine's rounds are carried
    if not (folder / MANIFEST_NAME).exists():
        return given
    try:
        manifest = read_manifest(folder)
        fingerprint = open_stage_input(input).fingerprint()
    except DataError:
        return given
    ignore = ("feedback_digests", "budget_rows")
    old = {k: v for k, v in manifest.params.items() if k not in ignore}
    new = {k: v for k, v in strategy_params(config).items() if k not in ignore}
    if manifest.stage != "sample" or old != new or manifest.input.get("fingerprint") != fingerprint:
        return given
    return tuple(manifest.params.get("feedback_digests", ()))
