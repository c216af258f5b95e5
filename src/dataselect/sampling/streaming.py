"""Bounded selection over a stream of batches: the one-shot strategies at any row count.

A one-shot strategy (``strategy.OneShotStrategy``) is "in each group, the ``quota[g]``
rows with the smallest sort key", the key being one or two numbers and then the id (ties
break by id, as everywhere). ``BoundedTop`` keeps only the rows that can
still win: a new row is screened against its group's current cut-off (the key of the
group's last kept row, once the group is full), and the kept set is cut back to the quotas
by one sort whenever it has doubled. Memory is O(budget + batch), not O(rows), and the
result equals sorting every row at once by the same sort keys (tests/test_streaming.py
checks it against ``strategies.select``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.clustering.kmeans import SAMPLE_STREAM
from dataselect.errors import DataError
from dataselect.io.readahead import ordered_map
from dataselect.io.sources import InputDataset, InputShard
from dataselect.keyed import row_keys_streams
from dataselect.sampling.identical import IdenticalCopies
from dataselect.sampling.strategies import allocate, softmax_logits
from dataselect.sampling.strategy import OneShotStrategy, SortColumns

SORT_KEYS = [("group", "ascending"), ("primary", "ascending"), ("secondary", "ascending"),
             ("id", "ascending")]  # fmt: skip
MIN_PRUNE_ROWS = 1 << 16
BATCH_ROWS = 1 << 16
SELECT_STREAM = 2  # keyed-randomness stream of the samplers


class BoundedTop:
    """The rows with the smallest (primary, secondary, id) in each group, at most
    ``quota[g]`` of group g, over rows given a batch at a time."""

    def __init__(
        self, quota: np.ndarray, primary: type[np.generic], prune_rows: int | None = None
    ) -> None:
        self.quota = np.asarray(quota, dtype=np.int64)
        self.primary_type = np.dtype(primary)
        top = np.inf if self.primary_type.kind == "f" else np.iinfo(self.primary_type).max
        self.cut = np.full(len(self.quota), top, dtype=self.primary_type)
        self.open = self.quota > 0
        self.parts: list[pa.Table] = []
        self.rows = 0  # rows held in parts
        self.limit = prune_rows or max(2 * int(self.quota.sum()), MIN_PRUNE_ROWS)

    def add(
        self,
        group: np.ndarray,
        primary: np.ndarray,
        ids: pa.Array,
        secondary: np.ndarray | None = None,
        payload: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Offer one batch of rows (``payload`` columns travel with the kept rows)."""
        group = np.asarray(group, dtype=np.int32)
        primary = np.asarray(primary, dtype=self.primary_type)
        keep = self.open[group] & (primary <= self.cut[group])
        if not keep.any():
            return
        if secondary is None:
            secondary = np.zeros(len(group), dtype=np.uint64)
        where = np.flatnonzero(keep)
        columns = {
            "group": pa.array(group[where]),
            "primary": pa.array(primary[where]),
            "secondary": pa.array(np.asarray(secondary)[where]),
            "id": ids.take(pa.array(where)),
        }
        for name, values in (payload or {}).items():
            columns[name] = pa.array(np.asarray(values)[where])
        self.parts.append(pa.table(columns))
        self.rows += len(where)
        if self.rows > self.limit:
            self._prune()

    def _prune(self) -> None:
        table = pa.concat_tables(self.parts).sort_by(SORT_KEYS)
        group = table.column("group").to_numpy()
        rank = ranks_in_groups(group)
        kept = rank < self.quota[group]
        table = table.filter(pa.array(kept))
        group, rank = group[kept], rank[kept]
        last = rank == self.quota[group] - 1  # the last row of a full group: its cut-off
        primary = table.column("primary").to_numpy()
        self.cut[group[last]] = primary[last]
        self.parts = [table]
        self.rows = table.num_rows

    def result(self) -> pa.Table:
        """The kept rows sorted by (group, primary, secondary, id), with their 0-based rank
        within the group."""
        if not self.parts:
            return pa.table({"group": pa.array([], pa.int32()), "rank": pa.array([], pa.int64())})
        self._prune()
        table = self.parts[0]
        return table.append_column(
            "rank", pa.array(ranks_in_groups(table.column("group").to_numpy()))
        )


def ranks_in_groups(group: np.ndarray) -> np.ndarray:
    """Each row's 0-based place in its group, for rows sorted by group."""
    return np.arange(len(group)) - np.searchsorted(group, group, side="left")


@dataclass
class StreamedSelection:
    """What the passes over the sample input found."""

    chosen: pa.Table  # the kept rows: group, primary, secondary, id, cluster?, score?, rank
    quota: np.ndarray  # rows per group (per cluster, or one group for random / top-k)
    sizes: np.ndarray | None  # rows per cluster of the whole input
    corpus_sample: pa.Table  # id, shard, row of a keyed sample of the input, in key order
    duplicate_check: Future[None]  # raises DataError on an id found in two shards


def select_streaming(
    dataset: InputDataset,
    strategy: OneShotStrategy,
    budget: int,
    allocation: str,
    temperature: float,
    seed: int,
    score_column: str | None,
    sample_rows: int,
    known_sizes: np.ndarray | None = None,
    skip: IdenticalCopies | None = None,
) -> StreamedSelection:
    """A one-shot strategy's rows from two passes over the input's small columns.

    Pass 1 (cluster and score columns only): cluster sizes, hence the quotas, and for kmq
    each cluster's largest score. Pass 2 (with the ids): the bounded selection, a keyed
    sample of ``sample_rows`` corpus ids for the diversity metrics, and the ids' keyed
    hashes for the duplicate check (8 bytes a row, on disk past ``HashBuckets.MEMORY_ROWS``).

    ``known_sizes`` (the cluster stage's clusters.parquet) spares pass 1 where only the
    sizes are needed; pass 2 then counts the rows per cluster and refuses a mismatch.
    ``skip``: rows never drawn (later copies of identical vectors); quotas count the others.
    """
    names = dataset.schema.names
    has_cluster = "cluster" in names
    if has_cluster and known_sizes is not None and not strategy.needs_cluster_top:
        sizes, top = np.asarray(known_sizes, dtype=np.int64), None
    elif has_cluster:
        sizes, top = _cluster_pass(dataset, score_column if strategy.needs_cluster_top else None,
                                   temperature)  # fmt: skip
    else:
        sizes, top = None, None
    counted = np.zeros(0 if sizes is None else len(sizes), dtype=np.int64)
    keyed = strategy.keyed or skip is not None
    streams = (SAMPLE_STREAM, SELECT_STREAM) if keyed else (SAMPLE_STREAM,)
    if strategy.per_cluster:
        assert sizes is not None
        quota = allocate(sizes if skip is None else skip.eligible_sizes(sizes), budget,
                         allocation)  # fmt: skip
    else:
        quota = np.array([budget], dtype=np.int64)
    selector = BoundedTop(quota, strategy.primary_type)
    corpus = BoundedTop(np.array([sample_rows]), np.uint64)
    hashes = HashBuckets(dataset.rows or 0)
    wanted = ["id"] + [c for c in ("cluster", "distance", score_column) if c and c in names]
    at = 0
    for number, batches in shards_read_ahead(dataset, wanted):
        offset = 0
        for batch in batches:
            ids = batch.column("id")
            where: dict[
                str, np.ndarray
            ] = {  # where each row is: the input's shard i maps to source and embed shard i
                "shard": np.full(len(ids), number, dtype=np.int32),
                "row": np.arange(offset, offset + len(ids), dtype=np.int64),
            }
            offset += len(ids)
            sample_keys, *select = row_keys_streams(ids, seed, streams)
            select_keys = select[0] if select else sample_keys  # kmeans-closest: unused
            hashes.add(sample_keys)
            at += len(ids)
            cluster = None
            if has_cluster:
                cluster = checked_clusters(batch.column("cluster"), len(counted), dataset.path)
                counted += np.bincount(cluster, minlength=len(counted))
            distance = batch.column("distance").to_numpy() if "distance" in wanted else None
            score = checked_scores(batch, score_column, dataset.path) if score_column else None
            corpus.add(np.zeros(len(ids), np.int32), sample_keys, ids, payload=where)
            if skip is not None:  # later copies of identical vectors are never offered
                drawable = skip.drawable(select_keys)
                ids, select_keys = ids.filter(pa.array(drawable)), select_keys[drawable]
                where = {name: v[drawable] for name, v in where.items()}
                cluster = None if cluster is None else cluster[drawable]
                distance = None if distance is None else distance[drawable]
                score = None if score is None else score[drawable]
            rows = SortColumns(select_keys, cluster, distance, score, top, temperature)
            group, primary, secondary = strategy.sort_keys(rows)
            payload: dict[str, np.ndarray] = {
                name: v for name, v in (("cluster", cluster), ("score", score)) if v is not None
            }
            selector.add(group, primary, ids, secondary, payload | where)
    if at != dataset.rows:
        raise DataError(
            f"{dataset.path}: its files hold {at:,} rows, its metadata {dataset.rows:,}"
        )
    if sizes is not None and not np.array_equal(counted, sizes):
        raise DataError(f"{dataset.path}: its cluster column does not match the cluster "
                        "stage's clusters.parquet (rerun the stages after it)")  # fmt: skip
    # sorting 8 bytes a row takes a while (0.6 s at 10M): it runs beside the write-out and
    # the stage waits for it before finishing (a failure then rolls back what was written)
    pool = ThreadPoolExecutor(max_workers=1)
    duplicate_check = pool.submit(refuse_duplicate_ids, dataset, hashes, seed)
    pool.shutdown(wait=False)
    corpus_sample = corpus.result().select(["id", "shard", "row"]).combine_chunks()
    return StreamedSelection(selector.result(), quota, sizes, corpus_sample, duplicate_check)


def _cluster_pass(
    dataset: InputDataset, score_column: str | None, temperature: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows per cluster, and (given a score column) each cluster's largest score / T."""
    columns = ["cluster"] + ([score_column] if score_column else [])
    sizes = np.zeros(0, dtype=np.int64)
    top = np.full(0, -np.inf)
    for batch in (b for _, batches in shards_read_ahead(dataset, columns) for b in batches):
        cluster = checked_clusters(batch.column("cluster"), None, dataset.path)
        k = int(cluster.max()) + 1 if len(cluster) else 0
        if k > len(sizes):
            sizes = np.concatenate([sizes, np.zeros(k - len(sizes), np.int64)])
            top = np.concatenate([top, np.full(k - len(top), -np.inf)])
        sizes += np.bincount(cluster, minlength=len(sizes))
        if score_column:
            score = batch.column(score_column).to_numpy(zero_copy_only=False)
            score = score.astype(np.float64)
            finite = np.isfinite(score)  # a NaN is refused, with its id, in pass 2
            np.maximum.at(top, cluster[finite], softmax_logits(score[finite], temperature))
    return sizes, (top if score_column else None)


def shards_read_ahead(
    dataset: InputDataset, columns: list[str]
) -> Iterator[tuple[int, list[pa.RecordBatch]]]:
    """(shard number, its batches of ``columns``) for each shard with rows, in order, read a
    few shards ahead in threads: a pass's reading then overlaps its work on earlier shards."""
    shards = [(number, shard) for number, shard in enumerate(dataset.shards) if shard.rows]

    def read(job: tuple[int, InputShard]) -> tuple[int, list[pa.RecordBatch]]:
        return job[0], list(job[1].iter_batches(columns, batch_rows=BATCH_ROWS))

    return ordered_map(read, shards)


def checked_clusters(column: pa.Array, k: int | None, path: object) -> np.ndarray:
    """A batch's cluster ids as int32; null or negative ones are refused, and (given ``k``
    clusters) ones of k or more."""
    if column.null_count:
        raise DataError(f"{path}: column 'cluster' has a null or negative id")
    cluster = column.to_numpy().astype(np.int32)
    if len(cluster) and cluster.min() < 0:
        raise DataError(f"{path}: column 'cluster' has a null or negative id")
    if k is not None and len(cluster) and cluster.max() >= k:
        raise DataError(f"{path}: column 'cluster' has an id outside 0..{k - 1}")
    return cluster


def checked_scores(batch: pa.RecordBatch, column: str, path: object) -> np.ndarray:
    """A batch's scores as float64; a NaN, infinite or null score is refused with its id."""
    scores = batch.column(column)
    values = scores.to_numpy(zero_copy_only=False).astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if scores.null_count or len(bad):
        row = batch.column("id")[int(bad[0])].as_py() if len(bad) else "?"
        raise DataError(f"{path}: column '{column}' has a NaN, infinite or null score (id {row!r})")
    return values


class HashBuckets:
    """Every row's 64-bit id hash, for finding repeats: in memory for up to ``MEMORY_ROWS``
    rows, else spilled to 16 anonymous temporary files by the hash's top 4 bits (deleted by
    the system even after a crash), so that memory holds one bucket at a time (1/16th)."""

    MEMORY_ROWS = 1 << 20
    BUCKETS = 16

    def __init__(self, rows: int) -> None:
        self.memory: list[np.ndarray] | None = [] if rows <= self.MEMORY_ROWS else None
        self.files = [] if self.memory is not None else [
            tempfile.TemporaryFile(prefix="dataselect-ids-") for _ in range(self.BUCKETS)
        ]  # fmt: skip

    def add(self, hashes: np.ndarray) -> None:
        if self.memory is not None:
            self.memory.append(hashes)
            return
        bucket = (hashes >> np.uint64(60)).astype(np.int8)
        try:
            for b, file in enumerate(self.files):
                hashes[bucket == b].tofile(file)
        except OSError as exc:
            raise DataError(
                f"cannot write the duplicate-id check's temporary files in "
                f"{tempfile.gettempdir()} ({exc.strerror}); set TMPDIR to a larger disk"
            ) from exc

    def repeated(self) -> np.ndarray:
        """The hashes that occur more than once (a bucket in memory at a time)."""
        found = []
        for part in self._buckets():
            part.sort()
            found.append(np.unique(part[1:][part[1:] == part[:-1]]))
        return np.concatenate(found) if found else np.zeros(0, np.uint64)

    def _buckets(self) -> Iterator[np.ndarray]:
        if self.memory is not None:
            if self.memory:
                yield np.concatenate(self.memory)
            return
        for file in self.files:
            file.seek(0)
            part = np.fromfile(file, dtype=np.uint64)
            file.close()
            yield part


def refuse_duplicate_ids(dataset: InputDataset, hashes: HashBuckets, seed: int) -> None:
    """Ids must be unique across shards. Sorting the rows' 64-bit keyed hashes finds equal
    pairs; only then are the ids behind those hashes read again and compared (two different
    ids may share a hash)."""
    suspects = hashes.repeated()
    if not len(suspects):
        return
    found = []
    for shard in dataset.shards:
        if not shard.rows:
            continue
        for batch in shard.iter_batches(["id"], batch_rows=BATCH_ROWS):
            ids = batch.column("id")
            keys = row_keys_streams(ids, seed, (SAMPLE_STREAM,))[0]
            hit = np.isin(keys, suspects)
            if hit.any():
                found.append(ids.filter(pa.array(hit)))
    counts = pa.concat_arrays(found).value_counts()
    repeated = counts.filter(pc.greater(counts.field("counts"), 1))
    if len(repeated):
        first = sorted(repeated.field("values").to_pylist())[0]
        raise DataError(f"{dataset.path}: duplicate id {first!r} across shards")
