"""The dedup stage: input shard i -> part i with id, the input's cluster/distance/score
columns carried along, and per row ``keep``, ``duplicate_of`` (the id of the kept row it
duplicates), ``similarity``, ``dedup_method`` and ``contaminated_by`` (the evaluation row it
duplicates, with --against).

Duplicates cross shards, so the decisions are a reduction made once before the shards
(``setup``): every row is read, the methods run in order (exact, minhash, semantic; a row
dropped by one is not compared again), and the dropped rows are kept as an artifact
(``duplicates.parquet``) so a resumed run writes the same shards. The kept row of a group is
the first in keyed order (semantic: the closest to its centroid, or the highest score), so
the result does not depend on sharding or engine. The sample stage draws only kept rows.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.deduplication.config import DedupConfig
from dataselect.deduplication.groups import NO_ROW, Verdicts, exact_groups, keep_first
from dataselect.deduplication.minhash import Signatures, candidate_pairs
from dataselect.deduplication.semantic import VectorIndex, VectorsByCluster, similar_pairs
from dataselect.deduplication.text import normalised, text_hashes
from dataselect.errors import DataError, UsageError
from dataselect.io.ids import id_type
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard, open_stage_input
from dataselect.keyed import row_keys
from dataselect.scoring.rows import RowReader
from dataselect.stage import SchedulingTraits, StageResult, reading_inputs, run_stage

CARRIED = ("cluster", "distance", "vector_hash")  # and score columns: what the samplers read
SCORE_PREFIXES = ("score_", "heuristic_")
DEDUP_STREAM = 9  # keyed-randomness stream of the order that decides which row is kept
READ_ROWS = 8192
DUPLICATES = "duplicates.parquet"  # the dropped rows: row, duplicate_of, similarity, ...
FACTS = "dedup.json"
METHOD_CODES = {"exact": 1, "minhash": 2, "semantic": 3}
# dedup_method by code (0: kept, null), for a vectorised take
METHOD_COLUMN = pa.array([None, *sorted(METHOD_CODES, key=METHOD_CODES.__getitem__)], pa.string())


@dataclass
class Decisions:
    """Per input row (numbered across shards in order): the row it duplicates, how similar,
    by which method, and the evaluation row it matches (contamination)."""

    duplicate_of: np.ndarray  # int64 row number, NO_ROW when kept (or contaminated only)
    similarity: np.ndarray  # float32
    method: np.ndarray  # int8: METHOD_CODES, 0 when kept
    contaminated_by: dict[int, str] = field(default_factory=dict)  # row -> "FILE:id"

    @classmethod
    def none(cls, n: int) -> Decisions:
        return cls(np.full(n, NO_ROW, np.int64), np.full(n, np.nan, np.float32),
                   np.zeros(n, np.int8))  # fmt: skip

    @property
    def dropped(self) -> np.ndarray:
        return self.method != 0

    def record(self, rows: np.ndarray, verdicts: Verdicts, method: str) -> None:
        """Verdicts over ``rows`` (positions into them) by ``method``."""
        hit = verdicts.dropped
        self.duplicate_of[rows[hit]] = rows[verdicts.duplicate_of[hit]]
        self.similarity[rows[hit]] = verdicts.similarity[hit]
        self.method[rows[hit]] = METHOD_CODES[method]

    def contaminate(self, rows: np.ndarray, matches: list[str], sims: np.ndarray,
                    method: str) -> None:  # fmt: skip
        for row, match, sim in zip(rows.tolist(), matches, sims.tolist(), strict=True):
            if self.method[row] == 0:
                self.method[row] = METHOD_CODES[method]
                self.similarity[row] = sim
                self.contaminated_by[row] = match

    def resolve_chains(self) -> None:
        """Point every dropped row at the kept row that stands for its group: a row dropped
        by exact may name a row that minhash or semantic dropped later. (``similarity`` stays
        the one to the row it was matched with.) A group whose row was found in an
        evaluation set is contaminated with it."""
        target = self.duplicate_of.copy()
        for _ in range(len(METHOD_CODES) + 1):  # each method adds at most one link
            linked = target != NO_ROW
            next_hop = np.where(linked, target, 0)
            further = linked & (self.duplicate_of[next_hop] != NO_ROW)
            if not further.any():
                break
            target[further] = self.duplicate_of[next_hop[further]]
        for row in np.flatnonzero(target != NO_ROW).tolist():
            root = int(target[row])
            if root in self.contaminated_by:
                self.contaminated_by[row] = self.contaminated_by[root]
                target[row] = NO_ROW
        self.duplicate_of = target

    def to_parquet(self) -> bytes:
        rows = np.flatnonzero(self.dropped)
        table = pa.table({
            "row": pa.array(rows, pa.int64()),
            "duplicate_of": pa.array(self.duplicate_of[rows], pa.int64()),
            "similarity": pa.array(self.similarity[rows], pa.float32()),
            "method": pa.array(self.method[rows], pa.int8()),
            "contaminated_by": pa.array([self.contaminated_by.get(r) for r in rows.tolist()],
                                        pa.string()),
        })  # fmt: skip
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    @classmethod
    def from_parquet(cls, path: Path, n: int) -> Decisions:
        table = pq.read_table(path)
        decisions = cls.none(n)
        rows = table.column("row").to_numpy()
        decisions.duplicate_of[rows] = table.column("duplicate_of").to_numpy()
        decisions.similarity[rows] = table.column("similarity").to_numpy()
        decisions.method[rows] = table.column("method").to_numpy()
        for row, match in zip(rows.tolist(), table.column("contaminated_by").to_pylist(),
                              strict=True):  # fmt: skip
            if match is not None:
                decisions.contaminated_by[row] = match
        return decisions


class DedupStage:
    name = "dedup"
    traits = SchedulingTraits(shards_in_threads=True)  # writing is pyarrow work
    artifacts: tuple[str, ...] = (DUPLICATES, FACTS)

    def __init__(self, dataset: InputDataset, config: DedupConfig) -> None:
        config.check()
        if dataset.manifest is None:
            raise UsageError(f"{dataset.path}: give a stage folder (embed, cluster or score), "
                             "not raw data: dedup writes what the sample stage reads")  # fmt: skip
        self.dataset = dataset
        self.config = config
        self.reader = RowReader(dataset.path, text=config.text_spec(), dataset=dataset)
        self.fields = ["text"] if config.reads_text else []
        self.reader.check(self.fields)
        names = dataset.schema.names
        if "semantic" in config.method:
            self.reader.check(["embedding", "cluster"])
            if "distance" not in names and config.keep == "closest":
                raise DataError(f"{dataset.path}: no 'distance' column (semantic --keep "
                                "closest needs a cluster or score folder)")  # fmt: skip
        if config.keep == "score" and config.score_column not in names:
            raise DataError(f"{dataset.path}: no column '{config.score_column}'")
        self.carried = [
            f for f in dataset.schema if f.name in CARRIED or f.name.startswith(SCORE_PREFIXES)
        ]
        ids = id_type(dataset, "id")
        self.schema = pa.schema(
            [pa.field("id", ids, nullable=False), *self.carried,
             pa.field("keep", pa.bool_(), nullable=False), pa.field("duplicate_of", ids),
             pa.field("similarity", pa.float32()), pa.field("dedup_method", pa.string()),
             pa.field("contaminated_by", pa.string())]
        )  # fmt: skip
        self.starts = np.cumsum([0] + [int(s.rows or 0) for s in dataset.shards])
        self.decisions: Decisions | None = None
        self.ids: pa.Array | None = None
        self.facts: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        params = self.config.values()
        params["text"] = asdict(self.reader.text) if self.fields else None
        params.update({name: list(params[name]) for name in ("method", "normalize")})
        params["against"] = [_fingerprint(path) for path in self.config.against]
        return params

    # -- the reduction ----------------------------------------------------------------------
    def setup(self, output: StageOutput) -> None:
        rows = int(self.starts[-1])
        saved, facts = output.saved_artifact(DUPLICATES), output.saved_artifact(FACTS)
        self.ids = self._all_ids()
        if saved is not None and facts is not None:  # resumed: the decisions as made
            self.decisions = Decisions.from_parquet(saved, rows)
            self.facts = json.loads(facts.read_text())
            return
        self.decisions, self.facts = find_duplicates(self, output.folder)
        output.write_artifact(FACTS, json.dumps(self.facts, sort_keys=True).encode())
        output.write_artifact(DUPLICATES, self.decisions.to_parquet())

    def _all_ids(self) -> pa.Array:
        parts = [b.column("id") for s in self.dataset.shards for b in s.iter_batches(["id"])]
        id_kind = self.schema.field("id").type
        ids = pa.concat_arrays(parts) if parts else pa.array([], id_kind)
        if len(ids) != int(self.starts[-1]):
            raise DataError(f"{self.dataset.path}: its shards hold other rows than its manifest")
        return ids

    # -- the shards ---------------------------------------------------------------------------
    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        assert self.decisions is not None and self.ids is not None
        decisions, start = self.decisions, int(self.starts[shard.index])
        carried = [f.name for f in self.carried]
        for batch in shard.iter_batches(["id", *carried], batch_rows=READ_ROWS):
            rows = np.arange(start, start + batch.num_rows)
            start += batch.num_rows
            dup = decisions.duplicate_of[rows]
            method = decisions.method[rows]
            dropped = method != 0
            has_dup = dup != NO_ROW
            # the kept row's id (a null index takes a null)
            duplicate_of = self.ids.take(pa.array(dup, pa.int64(), mask=~has_dup))
            columns = [batch.column("id"), *(batch.column(c) for c in carried),
                       pa.array(~dropped), duplicate_of,
                       pa.array(decisions.similarity[rows], pa.float32(), mask=~dropped),
                       METHOD_COLUMN.take(pa.array(method)), self._contaminated(rows)]  # fmt: skip
            yield pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def _contaminated(self, rows: np.ndarray) -> pa.Array:
        """contaminated_by of ``rows`` (null for most: only matched rows are in the dict)."""
        assert self.decisions is not None
        found = self.decisions.contaminated_by
        if not found:
            return pa.nulls(len(rows), pa.string())
        return pa.array([found.get(r) for r in rows.tolist()], pa.string())

    def finish(self, output: StageOutput) -> dict[str, Any]:
        return dict(self.facts)  # rows_kept, dropped (per method), contaminated (per set)


def find_duplicates(stage: DedupStage, scratch: Path) -> tuple[Decisions, dict[str, Any]]:
    """Every method in order over the rows still kept; the decisions and their facts."""
    config, reader = stage.config, stage.reader
    assert stage.ids is not None
    n = len(stage.ids)
    decisions = Decisions.none(n)
    keys = row_keys(stage.ids, config.seed, DEDUP_STREAM)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(keys, kind="stable")] = np.arange(n)
    evals = [EvalSet(path, config, stage) for path in config.against]
    facts: dict[str, Any] = {"dropped": {}, "contaminated": {}}
    signatures: Signatures | None = None
    hashes = np.zeros((n, 2), dtype=np.uint64)
    try:
        if config.reads_text:
            if "minhash" in config.method:
                extra = sum(e.rows for e in evals)
                signatures = Signatures(n + extra, config.num_perm, config.seed, scratch)
            at = 0
            for rows in reader.iter_rows(["text"], batch_rows=READ_ROWS):
                texts = normalised(pa.array(rows.text, pa.string()), config.normalize)
                hashes[at : at + len(texts)] = text_hashes(texts)
                if signatures is not None:
                    signatures.add(at, texts, config.ngram_unit, config.ngram)
                at += len(texts)
            for e in evals:
                e.read_text(signatures, at)
                at += e.rows
        if "exact" in config.method:
            for e in evals:
                e.exact_matches(hashes, decisions)
            alive = np.flatnonzero(~decisions.dropped)
            decisions.record(alive, exact_groups(rank[alive], hashes[alive]), "exact")
        if "minhash" in config.method:
            assert signatures is not None
            for e in evals:
                e.near_matches(signatures.matrix, np.flatnonzero(~decisions.dropped), decisions)
            alive = np.flatnonzero(~decisions.dropped)
            a, b, sim = _concat(candidate_pairs(signatures.matrix, alive, config.threshold))
            local = np.full(n, -1, dtype=np.int64)
            local[alive] = np.arange(len(alive))
            decisions.record(alive, keep_first(rank[alive], local[a], local[b], sim), "minhash")
        if "semantic" in config.method:
            semantic(stage, rank, decisions, evals, scratch)
        decisions.resolve_chains()
    finally:
        if signatures is not None:
            signatures.close()
    for name, code in METHOD_CODES.items():
        if name in config.method:
            facts["dropped"][name] = int(((decisions.method == code)
                                          & (decisions.duplicate_of != NO_ROW)).sum())  # fmt: skip
    for e in evals:
        facts["contaminated"][e.name] = sum(
            1 for match in decisions.contaminated_by.values() if match.startswith(e.name + ":")
        )
    facts["rows_kept"] = int((~decisions.dropped).sum())
    facts["signature_bytes_per_row"] = 4 * config.num_perm if "minhash" in config.method else 0
    return decisions, facts


def semantic(stage: DedupStage, rank: np.ndarray, decisions: Decisions,
             evals: list[EvalSet], scratch: Path) -> None:  # fmt: skip
    """SemDeDup over the rows still kept: vectors grouped by cluster, pairs within each."""
    config, reader = stage.config, stage.reader
    n = len(rank)
    cluster = np.zeros(n, dtype=np.int64)
    order_value = np.zeros(n, dtype=np.float64)  # lower is kept first
    column = "distance" if config.keep == "closest" else str(config.score_column)
    at = 0
    for rows in reader.iter_rows(["cluster"], [column], batch_rows=READ_ROWS):
        assert rows.cluster is not None
        cluster[at : at + len(rows)] = rows.cluster
        values = rows.columns[column].to_numpy(zero_copy_only=False).astype(np.float64)
        order_value[at : at + len(rows)] = values if config.keep == "closest" else -values
        at += len(rows)
    order_value = np.nan_to_num(order_value, nan=np.inf)
    alive = np.flatnonzero(~decisions.dropped)
    store = VectorsByCluster(alive, cluster[alive], reader.dim, scratch)
    try:
        at = 0
        for rows in reader.iter_rows(["embedding"], batch_rows=READ_ROWS):
            assert rows.embedding is not None
            store.add(np.arange(at, at + len(rows)), rows.embedding)
            at += len(rows)
        for e in evals:
            e.semantic_matches(store, decisions)
        semantic_rank = np.empty(n, dtype=np.int64)
        semantic_rank[np.lexsort((rank, order_value))] = np.arange(n)
        for members, vectors in store.clusters():
            members_alive = ~decisions.dropped[members]
            members, vectors = members[members_alive], vectors[members_alive]
            if len(members) < 2:
                continue
            i, j, sim = similar_pairs(vectors, config.eps)
            verdicts = keep_first(semantic_rank[members], i, j, sim)
            decisions.record(members, verdicts, "semantic")
    finally:
        store.close()


class EvalSet:
    """An evaluation set given with --against: its rows' text hashes, signatures or
    vectors, matched against the input's (an input row that matches is contaminated)."""

    def __init__(self, path: str, config: DedupConfig, stage: DedupStage) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.config = config
        dataset = open_stage_input(path)
        text = config.text_spec() or stage.reader.text
        self.reader = RowReader(path, text=text, dataset=dataset, what=f"--against {path}")
        if config.reads_text:
            self.reader.check(["text"])
        if "semantic" in config.method:
            self.reader.check(["embedding"])
            if self.reader.dim != stage.reader.dim:
                raise DataError(
                    f"--against {path}: {self.reader.dim}-d vectors, the input's are "
                    f"{stage.reader.dim}-d (embed it as the input was)"
                )
        self.rows = self.reader.rows
        self.ids: list[str] = []
        self.hashes = np.zeros((0, 2), dtype=np.uint64)
        self.first_signature = 0

    def read_text(self, signatures: Signatures | None, at: int) -> None:
        parts, ids = [], []
        self.first_signature = at
        for rows in self.reader.iter_rows(["text"], batch_rows=READ_ROWS):
            texts = normalised(pa.array(rows.text, pa.string()), self.config.normalize)
            parts.append(text_hashes(texts))
            if signatures is not None:
                signatures.add(at, texts, self.config.ngram_unit, self.config.ngram)
            at += len(texts)
            ids += [str(v) for v in rows.ids.to_pylist()]
        self.ids = ids
        self.hashes = np.concatenate(parts) if parts else self.hashes

    def _ids(self) -> list[str]:
        if not self.ids:
            self.ids = [str(v) for r in self.reader.iter_rows([]) for v in r.ids.to_pylist()]
        return self.ids

    def exact_matches(self, hashes: np.ndarray, decisions: Decisions) -> None:
        """Input rows whose text hash is an evaluation row's (the first such row named)."""
        if not len(self.hashes):
            return
        whole = np.dtype((np.void, 16))  # a 128-bit hash as one comparable value
        mine = np.ascontiguousarray(self.hashes).view(whole).ravel()
        order = np.argsort(mine, kind="stable")
        alive = np.flatnonzero(~decisions.dropped)
        asked = np.ascontiguousarray(hashes[alive]).view(whole).ravel()
        at = np.minimum(np.searchsorted(mine[order], asked), len(order) - 1)
        hit = mine[order][at] == asked
        matched = order[at[hit]]
        decisions.contaminate(alive[hit], [f"{self.name}:{self.ids[k]}" for k in matched],
                              np.ones(int(hit.sum()), np.float32), "exact")  # fmt: skip

    def near_matches(self, matrix: np.ndarray, alive: np.ndarray, decisions: Decisions) -> None:
        mine = np.arange(self.first_signature, self.first_signature + self.rows)
        a, b, sim = _concat(candidate_pairs(matrix, alive, self.config.threshold, mine))
        self._contaminate(b, a - self.first_signature, sim, decisions, "minhash")

    def semantic_matches(self, store: VectorsByCluster, decisions: Decisions) -> None:
        vectors = np.concatenate([r.embedding for r in self.reader.iter_rows(["embedding"])
                                  if r.embedding is not None])  # fmt: skip
        index = VectorIndex(vectors)
        for members, member_vectors in store.clusters():
            i, j, sim = index.similar(member_vectors, self.config.eps)
            self._contaminate(members[i], j, sim, decisions, "semantic")

    def _contaminate(self, rows: np.ndarray, matched: np.ndarray, sim: np.ndarray,
                     decisions: Decisions, method: str) -> None:  # fmt: skip
        """For each input row, its most similar evaluation row (ties: the first)."""
        if len(rows) == 0:
            return
        order = np.lexsort((matched, -sim, rows))
        rows, matched, sim = rows[order], matched[order], sim[order]
        first = np.r_[True, rows[1:] != rows[:-1]]
        ids = self._ids()
        decisions.contaminate(rows[first], [f"{self.name}:{ids[k]}" for k in matched[first]],
                              sim[first], method)  # fmt: skip


COMPACT_PAIRS = 1 << 22  # pending pairs past which repeats are dropped (a pair is found
# once per band it shares, up to b times)


def _concat(pairs: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[
        np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The pairs, each once (sorted by (a, b)), compacted as they come so that repeats found
    in several bands do not pile up."""
    a_all = np.zeros(0, dtype=np.int64)
    b_all = np.zeros(0, dtype=np.int64)
    s_all = np.zeros(0, dtype=np.float32)
    pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    count = 0

    def compact() -> None:
        nonlocal a_all, b_all, s_all, pending, count
        a = np.concatenate([a_all, *(p[0] for p in pending)])
        b = np.concatenate([b_all, *(p[1] for p in pending)])
        sim = np.concatenate([s_all, *(p[2] for p in pending)])
        order = np.lexsort((b, a))
        a, b, sim = a[order], b[order], sim[order]
        first = np.ones(len(a), dtype=bool)
        first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
        a_all, b_all, s_all = a[first], b[first], sim[first]
        pending, count = [], 0

    for part in pairs:
        pending.append(part)
        count += len(part[0])
        if count >= COMPACT_PAIRS:
            compact()
    compact()
    return a_all, b_all, s_all


def _fingerprint(path: str) -> dict[str, Any]:
    """An evaluation set's identity for the stage's parameters (a change redoes the stage)."""
    from dataselect.scoring.scorer import file_digest

    return {"path": str(Path(path).resolve()), "sha256": file_digest(path)}


def dedup(
    input: str | Path,
    output: str | Path,
    config: DedupConfig | None = None,
    overwrite: bool | str = False,
    quiet: bool = False,
) -> StageResult:
    """Mark the duplicates among the rows of ``input`` (a stage folder) in ``output``."""
    config = config or DedupConfig()
    config.check()
    with reading_inputs(input):
        dataset = open_stage_input(input)
        stage = DedupStage(dataset, config)
        return run_stage(stage, dataset, output, overwrite=overwrite, quiet=quiet)
