"""The parts of the cluster stage's assignment pass, each timed alone, old way against new.

On a synthetic embed folder (default 200,000 x 384 in 4 shards, k = 1000), single-threaded
unless said, old and new alternated, best of 15 rounds:
- reading the vectors: copied out of a mapped file (the page reader before 2026-12-04)
  against ``PlainVectors.read`` (``preadv`` into the batch);
- writing the stage's output rows: every column with a dictionary (before) against the
  stage's schema (ids, distances and hashes ``UNIQUE``: no dictionary);
- FAISS's single-threaded search rate by rows per search (the stage searches 1,024);
- the whole pass (``ClusterStage.process`` over the shards, output not written) against the
  same searches on batches already in memory, as shares of a numpy GEMM rate measured just
  before each (2 cores).

    python scripts/bench/assign_parts.py               # about 1 minute on 2 cores
    python scripts/bench/assign_parts.py --rows 50000  # quick

Writes scripts/bench/results/assign_parts.md and .json.
"""

from __future__ import annotations

import argparse
import mmap
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from cluster import DIM, embed_folder, write_corpus
from common import write_results

from dataselect.clustering import kmeans
from dataselect.clustering.config import ClusterConfig
from dataselect.clustering.stage import ClusterStage
from dataselect.io.format import parquet_options
from dataselect.io.sources import open_stage_input
from dataselect.io.vector_pages import PlainVectors
from dataselect.keyed import vector_hashes

K = 1000


def best(work: Callable[[], object], rounds: int = 5) -> float:
    work()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def paired(before: Callable[[], object], after: Callable[[], object]) -> tuple[float, float]:
    """The best of 15 rounds of each, the two alternated (a busy moment of a shared
    machine then slows both, not one)."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(16):
        for work, kept in zip((before, after), times, strict=True):
            started = time.perf_counter()
            work()
            kept.append(time.perf_counter() - started)
    return min(times[0][1:]), min(times[1][1:])


def mapped_read(plain: PlainVectors, start: int, stop: int, mapped: mmap.mmap) -> np.ndarray:
    """The page reader's read before: each page's floats copied out of a map of the file."""
    out = np.empty((stop - start, plain.dim), dtype=np.float32)
    flat, first, last = out.reshape(-1), start * plain.dim, stop * plain.dim
    page = int(np.searchsorted(plain._starts, first, side="right")) - 1
    at = first
    while at < last:
        end = min(last, int(plain._starts[page + 1]))
        offset = int(plain._offsets[page]) + 4 * (at - int(plain._starts[page]))
        flat[at - first : end - first] = np.frombuffer(mapped, "<f4", end - at, offset)
        at, page = end, page + 1
    return out


def gemm_rate(x: np.ndarray, centroids: np.ndarray) -> float:
    """numpy's GEMM rate (GFLOP/s, 2 cores) on 16,384-row products."""
    a, b = x[:16384], np.ascontiguousarray(centroids.T)
    return 2 * len(a) * DIM * K / best(lambda: a @ b) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    rows_out: list[dict[str, object]] = []

    def row(part: str, before: float | None, after: float, unit: str) -> None:
        rows_out.append({"part": part, "before": before, "after": after, "unit": unit})

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_corpus(root / "raw", args.rows, 4, centers=K)
        embed_folder(root / "raw", root / "e")
        dataset = open_stage_input(root / "e")
        shards = dataset.shards
        rng = np.random.default_rng(0)
        centroids = rng.standard_normal((K, DIM)).astype(np.float32)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        np.save(root / "c.npy", centroids)

        def read_all(mapped_copy: bool) -> None:
            for shard in shards:
                plain = shard.plain_vectors("embedding", DIM)
                assert plain is not None
                with plain, open(shard.path, "rb") as handle:
                    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                        for start in range(0, plain.rows, kmeans.SEARCH_ROWS):
                            stop = min(start + kmeans.SEARCH_ROWS, plain.rows)
                            if mapped_copy:
                                mapped_read(plain, start, stop, mapped)
                            else:
                                plain.read(start, stop)

        per_m = 1e6 / args.rows
        mapped_s, read_s = paired(lambda: read_all(True), lambda: read_all(False))
        row("read the vectors (s per 1M rows)", mapped_s * per_m, read_s * per_m, "s")

        stage = ClusterStage(dataset, ClusterConfig(centroids=str(root / "c.npy")))
        stage.centroids, stage.assigner = centroids, kmeans.Assigner(centroids, "cosine")
        table = pa.Table.from_batches(list(stage.process(shards[0])))
        plain_schema = pa.schema([field.remove_metadata() for field in stage.schema])
        sizes: dict[str, int] = {}

        def write(schema: pa.Schema) -> None:
            sink = pa.BufferOutputStream()
            with pq.ParquetWriter(sink, schema, **parquet_options(schema)) as writer:
                for part in table.cast(schema).to_batches(kmeans.READ_ROWS):
                    writer.write_batch(part)
            sizes[str(schema.field("id").metadata)] = sink.getvalue().size

        per_m_out = 1e6 / table.num_rows
        dictionary_s, unique_s = paired(lambda: write(plain_schema), lambda: write(stage.schema))
        row("write the output rows (s per 1M rows)", dictionary_s * per_m_out,
            unique_s * per_m_out, "s")  # fmt: skip
        before_mb, after_mb = (v * per_m_out / 1e6 for v in sizes.values())
        row("output file (MB per 1M rows)", before_mb, after_mb, "MB")

        faiss.omp_set_num_threads(1)
        x = np.concatenate([v for _, v in kmeans.iter_vectors(shards[0], "embedding", DIM, "id",
                                                               True, 16384)])  # fmt: skip
        for piece in (512, 1024, 4096, 8192):
            seconds = best(lambda p=piece: [stage.assigner.index.search(x[i : i + p], 1)  # type: ignore[union-attr]
                                            for i in range(0, len(x), p)])  # fmt: skip
            row(f"FAISS search, 1 thread, {piece:,} rows per search (GFLOP/s)", None,
                2 * len(x) * DIM * K / seconds / 1e9, "GFLOP/s")  # fmt: skip
        faiss.omp_set_num_threads(2)

        flops = 2 * args.rows * DIM * K
        in_memory = [batch for shard in shards for batch in kmeans.iter_vectors(
            shard, "embedding", DIM, "id", True, kmeans.SEARCH_ROWS)]  # fmt: skip

        def searched(source: Callable[[], object]) -> None:
            for _ in source():  # type: ignore[attr-defined]
                pass

        pass_share = []
        for _ in range(3):
            gemm = gemm_rate(x, centroids)
            memory_s = best(lambda: searched(lambda: stage.assigner.assign_stream(  # type: ignore[union-attr]
                iter(in_memory), per_row=vector_hashes)), rounds=1)  # fmt: skip
            stage_s = best(lambda: searched(lambda: (
                part for shard in shards for part in stage.process(shard))), rounds=1)  # fmt: skip
            pass_share.append((flops / memory_s / 1e9 / gemm, flops / stage_s / 1e9 / gemm))
        memory_share, stage_share = (float(np.median(v)) for v in zip(*pass_share, strict=True))
        row("the pass on batches in memory (share of the GEMM rate, median of 3)", None,
            memory_share, "share")  # fmt: skip
        row("the pass read from the shards (share of the GEMM rate, median of 3)", None,
            stage_share, "share")  # fmt: skip

    lines = [
        "# assignment pass, part by part",
        "",
        f"`python scripts/bench/assign_parts.py --rows {args.rows}` ({time.strftime('%Y-%m-%d')},"
        f" {args.rows:,} x {DIM} in 4 shards, k = {K}); before: the way of the code before "
        "2026-12-04 (see the script's docstring). Single-threaded, best of 15 rounds (old and "
        "new alternated; FAISS: best of 5), except the last two rows (2 cores, output not "
        "written).",
        "",
        "| part | before | after | unit |",
        "|---|---:|---:|---|",
    ]
    for item in rows_out:
        cells = ["" if item[c] is None else f"{item[c]:,.3f}" for c in ("before", "after")]
        lines.append(f"| {item['part']} | {cells[0]} | {cells[1]} | {item['unit']} |")
    write_results("assign_parts", lines, rows_out)


if __name__ == "__main__":
    main()
