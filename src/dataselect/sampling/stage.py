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
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect.clustering.kmeans import SAMPLE_STREAM
from dataselect.errors import DataError, UsageError
from dataselect.io.atomic import write_bytes_atomic
from dataselect.io.ids import batch_ids, derived_ids
from dataselect.io.output import StageOutput
from dataselect.io.readahead import ordered_map
from dataselect.io.sources import InputDataset, InputShard, open_input, open_stage_input
from dataselect.keyed import row_keys
from dataselect.lineage import trace_lineage
from dataselect.manifest import MANIFEST_NAME, read_manifest
from dataselect.sampling.bandit import BanditParams, BanditResult, NeighbourCredit, run_bandit
from dataselect.sampling.feedback import (
    ProbeFeedback,
    digest,
    feedback_path,
    normalised_feedback,
    stored_feedback,
)
from dataselect.sampling.iterative import IterativeParams, IterativeResult, run_iterative
from dataselect.sampling.metrics import (
    cluster_coverage,
    cluster_entropy,
    counts_entropy,
    vendi_scores,
)
from dataselect.sampling.strategies import (
    ALLOCATIONS,
    NEEDS_CLUSTERS,
    NEEDS_SCORE,
    STRATEGIES,
    Pool,
    Selection,
    reason_texts,
    select,
)
from dataselect.sampling.streaming import (
    SELECT_STREAM,
    BoundedTop,
    checked_scores,
    select_streaming,
)
from dataselect.scoring.rows import RowReader
from dataselect.stage import SchedulingTraits, StageResult, run_stage

DECISIONS = "decisions.parquet"
SELECTION = "selection.json"
PULLS = "pulls.parquet"
FEEDBACK_KINDS = ("probe",)
ITERATIVE_OPTIONS = ("rounds", "feedback", "label_column", "shrinkage", "step", "max_update",
                     "feedback_digests")  # fmt: skip
BANDIT_OPTIONS = ("probes", "block", "alpha", "tau", "neighbour_radius")
METRICS_SAMPLE_ROWS = 20_000
READ_ROWS = 1 << 14  # the read batch of the write-out (source rows) and the Vendi pass
WRITE_ROWS = 1 << 16  # the most chosen rows in one row group of an output part
ONE_SHOT = ("random", "top-k", "kmeans-closest", "kmeans-random", "kmq")


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
    # iterative (see sampling/iterative.py)
    rounds: int = 3
    feedback: str | None = None  # "probe": built-in loop; None: rounds via `dataselect refine`
    label_column: str | None = None  # for --feedback probe
    shrinkage: float = 5.0
    step: float = 3.0
    max_update: float = 2.0
    feedback_digests: tuple[str, ...] = ()  # set by refine: SHA-256 of each round's feedback
    # bandit (see sampling/bandit.py)
    probes: int = 10
    block: int = 5
    alpha: float = 3.0
    tau: float | None = None  # default: the score column's median
    neighbour_radius: float | None = None

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
        if self.strategy == "iterative":
            self._check_iterative()
        if self.strategy == "bandit":
            if self.probes < 1 or self.block < 1 or self.alpha < 0:
                raise UsageError("--probes and --block must be at least 1, --alpha not negative")
            if self.neighbour_radius is not None and not 0 < self.neighbour_radius <= 2:
                raise UsageError("--neighbour-radius is a cosine distance in (0, 2]")

    def _check_iterative(self) -> None:
        if self.rounds < 1:
            raise UsageError("--rounds must be at least 1")
        if self.feedback is not None and self.feedback not in FEEDBACK_KINDS:
            raise UsageError(
                "--feedback must be 'probe' (or left out: each round's feedback then comes "
                "from `dataselect refine OUTPUT --feedback FILE`)"
            )
        if self.feedback == "probe" and not self.label_column:
            raise UsageError("--feedback probe needs --label-column")
        if self.budget_tokens is not None:
            raise UsageError("--budget-tokens does not work with --strategy iterative")
        if self.shrinkage < 0 or self.step <= 0 or self.max_update <= 0:
            raise UsageError("--shrinkage must be >= 0, --step and --max-update positive")

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


def strategy_params(config: SampleConfig) -> dict[str, Any]:
    """The config as recorded in the manifest: only the options the strategy uses."""
    params = asdict(config)
    params["allocation"] = config.resolved_allocation
    params["feedback_digests"] = list(config.feedback_digests)
    unused = (() if config.strategy == "iterative" else ITERATIVE_OPTIONS) + (
        () if config.strategy == "bandit" else BANDIT_OPTIONS
    )
    return {key: value for key, value in params.items() if key not in unused}


def config_from_params(params: dict[str, Any]) -> SampleConfig:
    names = {f for f in SampleConfig.__dataclass_fields__}
    config = SampleConfig(**{k: v for k, v in params.items() if k in names})
    config.feedback_digests = tuple(config.feedback_digests)
    return config


def check_sample_input(dataset: InputDataset, config: SampleConfig) -> None:
    """Refuse, with one line, an input that lacks what the strategy reads."""
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
        kind = dataset.schema.field(config.score_column).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise DataError(
                f"{dataset.path}: score column '{config.score_column}' is {kind}, not numeric"
            )


class SampleStage:
    name = "sample"
    artifacts = (DECISIONS, SELECTION, PULLS)
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
        self.probe_reader: RowReader | None = None
        if config.strategy == "iterative" and config.feedback == "probe":
            self.probe_reader = RowReader(dataset.path, label_column=config.label_column,
                                          dataset=dataset)  # fmt: skip
            self.probe_reader.check(["embedding", "label"])
        # one-shot strategies stream; the adaptive ones and token budgets hold the pool
        self.streams = config.strategy in ONE_SHOT and config.budget_tokens is None
        self.tokens_selected: int | None = None
        if self.streams:
            self.budget = parse_budget(config.budget, dataset.rows)
        else:
            self.ids, self.pool = self._read_pool()
            if config.budget_tokens is None:
                self.budget = parse_budget(config.budget, len(self.ids))
            else:
                self.budget, self.tokens_selected = self._rows_for_tokens(config.budget_tokens)
        extra = [pa.field("id", pa.string())] if self.lineage.id_column is None else []
        self.schema = pa.schema(extra + list(self.lineage.source.schema))
        self.positions: dict[int, pa.Table] = {}
        self.duplicate_check: Future[None] | None = None  # streamed: awaited in finish
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
            for c in ("cluster", "distance", self.config.score_column)
            if c and c in self.dataset.schema.names
        ]
        tables = [
            with_positions(
                pa.Table.from_batches(list(shard.iter_batches(wanted, batch_rows=1 << 16))),
                number,
            )
            for number, shard in enumerate(self.dataset.shards)
            if shard.rows
        ]
        table = pa.concat_tables(tables).sort_by([("id", "ascending")])
        self.pool_positions = table.select(["shard", "row"])
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
        """The chosen rows for ``budget`` (iterative and bandit keep their details)."""
        config = self.config
        if config.strategy == "bandit":
            self.bandit = run_bandit(self.pool, budget, self._bandit_params(), self._neighbours())
            return self.bandit.selection
        if config.strategy == "iterative":
            assert output is not None
            params = IterativeParams(config.rounds, config.temperature, config.shrinkage,
                                     config.step, config.max_update)  # fmt: skip
            if self.probe_reader is not None:
                source = ProbeFeedback(self.probe_reader, self.ids, config.seed)
            else:
                source = stored_feedback(output.folder, config.feedback_digests, self.ids)
            self.iterative = run_iterative(self.pool, budget, params, source)
            return self.iterative.selection
        return select(self.pool, config.strategy, budget, config.resolved_allocation,
                      config.temperature)  # fmt: skip

    def _bandit_params(self) -> BanditParams:
        assert self.pool.score is not None
        config = self.config
        tau = float(np.median(self.pool.score)) if config.tau is None else config.tau
        return BanditParams(config.probes, config.block, config.alpha, tau)

    def _neighbours(self) -> NeighbourCredit | None:
        if self.config.neighbour_radius is None:
            return None
        from dataselect.clustering.stage import CENTROIDS

        folder = self.lineage.cluster_folder
        if folder is None or not (folder / CENTROIDS).exists():
            raise DataError(f"{self.dataset.path}: --neighbour-radius needs the cluster "
                            f"folder's {CENTROIDS}")  # fmt: skip
        centroids = np.load(folder / CENTROIDS, allow_pickle=False)
        return NeighbourCredit(centroids.astype(np.float64), self.config.neighbour_radius)

    # -- stage hooks -------------------------------------------------------------------
    def setup(self, output: StageOutput) -> None:
        """Choose the rows: the decisions table (sorted by id), the cluster sizes and the
        keyed corpus sample the metrics use."""
        if self.streams:
            self._choose_streaming()
        else:
            self._choose_in_memory(output)
        self.positions = rows_by_shard(self.chosen_rows)

    def _choose_streaming(self) -> None:
        config = self.config
        found = select_streaming(self.dataset, config.strategy, self.budget,
                                 config.resolved_allocation, config.temperature, config.seed,
                                 config.score_column, METRICS_SAMPLE_ROWS,
                                 self._cluster_sizes())  # fmt: skip
        chosen = found.chosen
        group, rank = chosen.column("group").to_numpy(), chosen.column("rank").to_numpy()
        self.decisions = decisions_table(
            chosen.column("id"),
            chosen.column("cluster") if "cluster" in chosen.column_names else None,
            chosen.column("score") if "score" in chosen.column_names else None,
            reason_texts(config.strategy, group, rank, found.quota),
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
        self.decisions = decisions_table(
            self.ids.take(rows),
            None if pool.cluster is None else pa.array(pool.cluster).take(rows),
            None if pool.score is None else pa.array(pool.score).take(rows),
            self.selection.reasons[self.selection.rows].tolist(),
            None if self.config.strategy != "iterative" else
            pa.array(self.iterative.round_of_row).take(rows),
        )  # fmt: skip
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
        report = {"strategy": self.config.strategy, "params": self.params(), **facts}
        output.write_artifact(
            SELECTION, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode()
        )
        return facts

    def _adaptive_facts(self, output: StageOutput) -> dict[str, Any]:
        """Per-round weights of iterative, pull statistics of bandit (and its pull log)."""
        config = self.config
        if config.strategy == "iterative":
            result: IterativeResult = self.iterative
            facts: dict[str, Any] = {
                "rounds": config.rounds,
                "rounds_done": result.rounds_done,
                "complete": result.rounds_done == config.rounds,
                "round_history": result.history,
                "next_weights": [round(float(w), 6) for w in result.weights],
            }
            if result.rounds_done < config.rounds:
                facts["next"] = "dataselect refine THIS_FOLDER --feedback FILE"
            return facts
        if config.strategy == "bandit":
            bandit: BanditResult = self.bandit
            log = pa.table({key: pa.array(values) for key, values in bandit.pulls.items()})
            output.write_artifact(PULLS, parquet_bytes(log))
            kinds = bandit.pulls["kind"]
            return {
                "tau": self._bandit_params().tau,
                "pulls": int((kinds != "fill").sum()),
                "rows_filled": int(bandit.pulls["admitted"][kinds == "fill"].sum()),
                "arms": bandit.arms,
            }
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


def decisions_table(
    ids: pa.Array | pa.ChunkedArray,
    cluster: pa.Array | pa.ChunkedArray | None,
    score: pa.Array | pa.ChunkedArray | None,
    reasons: list[str],
    round_: pa.Array | None = None,
) -> pa.Table:
    """One row per selected row, sorted by id: why it was kept (a row not listed was not)."""
    columns: dict[str, Any] = {"id": ids}
    if cluster is not None:
        columns["cluster"] = cluster
    if score is not None:
        columns["score"] = pc.cast(score, pa.float32())
    columns["selected"] = pa.array(np.ones(len(ids), dtype=bool))
    if round_ is not None:
        columns["round"] = round_
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


def rows_at(
    batches: Iterable[pa.RecordBatch], rows: np.ndarray
) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """The rows at the sorted positions ``rows`` of a shard read batch by batch: for each
    batch holding some, (first, last, those rows) with ``rows[first:last]`` their positions."""
    offset = 0
    for batch in batches:
        first, last = (int(i) for i in np.searchsorted(rows, [offset, offset + batch.num_rows]))
        if last > first:
            yield first, last, batch.take(pa.array(rows[first:last] - offset))
        offset += batch.num_rows


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


def embeddings_of(embed_folder: Path, wanted: list[pa.Table], dim: int) -> list[np.ndarray]:
    """The vectors of each table of rows (id, shard, row), in its order, from one pass over
    the embed folder, taken by position (input shard i is embed shard i, row for row) and
    checked by id."""
    every = pa.concat_tables([w.select(["id", "shard", "row"]) for w in wanted])
    shard, row = every.column("shard").to_numpy(), every.column("row").to_numpy()
    order = np.lexsort((row, shard))
    shard, row = shard[order], row[order]
    ids = every.column("id").combine_chunks().take(pa.array(order))
    vectors = np.zeros((len(order), dim), dtype=np.float32)
    found = 0
    parts = open_input(embed_folder).shards
    bounds = np.searchsorted(shard, np.arange(len(parts) + 1))  # part i: bounds[i]..[i + 1]
    spans = zip(parts, bounds[:-1], bounds[1:], strict=True)
    jobs = [(part, int(lo), int(hi)) for part, lo, hi in spans if hi > lo]

    def pick(job: tuple[InputShard, int, int]) -> list[tuple[int, int, pa.RecordBatch]]:
        """The job's rows of one embed part: read side by side with the other parts."""
        part, lo, hi = job
        return list(rows_at(part.iter_batches(["id", "embedding"], READ_ROWS), row[lo:hi]))

    for (part, lo, _), picks in zip(jobs, ordered_map(pick, jobs), strict=True):
        for first, last, picked in picks:
            if not picked.column("id").equals(ids.slice(lo + first, last - first)):
                raise DataError(f"{part.describe()}: its rows no longer match the "
                                "selection's input (rerun the stages after it)")  # fmt: skip
            vectors[order[lo + first : lo + last]] = vectors_of(picked, dim)
            found += last - first
    if found != len(order):
        raise DataError(f"{embed_folder}: {len(order) - found:,} selected or sampled rows are "
                        "not in the embed folder")  # fmt: skip
    bounds = np.cumsum([0] + [w.num_rows for w in wanted])
    return [vectors[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def vectors_of(batch: pa.RecordBatch, dim: int) -> np.ndarray:
    return batch.column("embedding").flatten().to_numpy().reshape(-1, dim)


def parquet_bytes(table: pa.Table) -> bytes:
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue().to_pybytes()


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


def refine(
    output: str | Path,
    feedback: str | Path,
    feedback_column: str = "score",
    quiet: bool = False,
) -> StageResult:
    """Run the next round of an iterative selection with ``feedback`` on its rows so far.

    The feedback is stored in OUTPUT/feedback/ and its digest joins the selection's
    parameters; then the sample stage reruns with them, replacing the previous round's files
    (the stored feedback of every earlier round replays it). Giving the feedback of the last
    round again is a no-op; after a crash it finishes that round.
    """
    folder = Path(output)
    manifest = read_manifest(folder)
    if manifest.stage != "sample" or manifest.params.get("strategy") != "iterative":
        raise UsageError(
            f"{folder}: not an iterative selection (make one with "
            "`dataselect sample --strategy iterative`)"
        )
    config = config_from_params(manifest.params)
    if config.feedback == "probe":
        raise UsageError(f"{folder}: runs all its rounds itself (--feedback probe)")
    input_path = manifest.input["path"]
    dataset = open_stage_input(input_path)
    data = normalised_feedback(feedback, feedback_column, dataset.schema.field("id").type)
    new = digest(data)
    digests = config.feedback_digests
    if digests and new == digests[-1]:  # already applied: nothing to do, or finish a crash
        return sample(input_path, folder, config, quiet=quiet)
    if not manifest.complete:
        again = "`dataselect refine` with its feedback" if digests else "`dataselect sample`"
        raise UsageError(f"{folder}: its last round did not finish; rerun {again} first")
    finished = len(digests) + 1
    if finished >= config.rounds:
        raise UsageError(f"{folder}: all {config.rounds} rounds are done; nothing to refine")
    _check_feedback_ids(folder, data, feedback)
    path = feedback_path(folder, finished)
    path.parent.mkdir(exist_ok=True)
    write_bytes_atomic(path, data)
    config.feedback_digests = (*digests, new)
    return sample(input_path, folder, config, overwrite="stale", quiet=quiet)


def _check_feedback_ids(folder: Path, data: bytes, feedback: str | Path) -> None:
    """Refuse feedback that names none of the selected rows, before anything is replaced."""
    decisions = pq.read_table(folder / DECISIONS, columns=["id", "selected"])
    selected = decisions.filter(decisions.column("selected")).column("id")
    ids = pq.read_table(pa.BufferReader(data), columns=["id"]).column("id")
    if not pc.any(pc.is_in(ids, value_set=selected.combine_chunks())).as_py():
        raise DataError(f"{feedback}: no feedback id is among the {len(selected):,} rows selected")


def refined_rounds(input: str | Path, output: str | Path, config: SampleConfig) -> tuple[str, ...]:
    """The feedback digests `refine` added to the iterative selection in ``output``, when it
    was made from the same input with the same settings: `dataselect run` carries them, so
    rerunning a pipeline keeps the rounds instead of starting again from round 1."""
    folder = Path(output)
    if config.strategy != "iterative" or config.feedback is not None:
        return config.feedback_digests  # only refine's rounds are carried
    if not (folder / MANIFEST_NAME).exists():
        return config.feedback_digests
    try:
        manifest = read_manifest(folder)
        fingerprint = open_stage_input(input).fingerprint()
    except DataError:
        return config.feedback_digests
    ignore = ("feedback_digests", "budget_rows")
    old = {k: v for k, v in manifest.params.items() if k not in ignore}
    new = {k: v for k, v in strategy_params(config).items() if k not in ignore}
    if manifest.stage != "sample" or old != new or manifest.input.get("fingerprint") != fingerprint:
        return config.feedback_digests
    return tuple(manifest.params.get("feedback_digests", ()))
