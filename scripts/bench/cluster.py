"""Cluster benchmark: `dataselect cluster` from Parquet vs raw FAISS on the same vectors in memory.

A synthetic clustered corpus (default 1M x 384 float32 in 20 shards, k = 1000) is written to
a temporary folder and passed through `dataselect embed --vector-column embedding` (not timed,
like the raw run's load), since the cluster stage's input is an embed folder. In fresh child
processes, one after the other:
- ours: the cluster stage (keyed sample, k-means++ seeds, FAISS k-means, assignment from
  Parquet, outputs written), wall time and peak memory (VmHWM);
- ours with the vectors decoded by pyarrow (the page reader of io/vector_pages.py turned
  off): what reading the vectors from their pages gains;
- raw: the same vectors loaded into memory first (not timed), then FAISS k-means on a random
  sample of the same size (same niter, seed), then one flat-index search over all rows;
- ours again on the corpus doubled (2N rows), for peak memory when the corpus doubles.
Assignment speed is reported as GFLOP/s (2 N k d per pass) next to a numpy matrix multiply
of the same shape per batch (the machine's practical limit), measured just before and just
after the first run: on a shared machine the cores' speed drifts by 10% over minutes, so
the share is taken against the GEMM rate of the same minutes (the mean of the two).

    python scripts/bench/cluster.py                    # 1M rows, k = 1000 (~10 min, 2 cores)
    python scripts/bench/cluster.py --rows 100000 --k 100   # quick

Writes scripts/bench/results/cluster.md and cluster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results"
DIM = 384
NITER = 20
MAX_POINTS = 256
BATCH = 16_384


def write_corpus(folder: Path, rows: int, shards: int, centers: int, seed: int = 0) -> None:
    """Normalised points around `centers` random directions, written shard by shard."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, DIM)).astype(np.float32)
    folder.mkdir(parents=True)
    per = rows // shards
    for s in range(shards):
        labels = rng.integers(0, centers, per)
        x = means[labels] + 0.6 * rng.standard_normal((per, DIM)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        table = pa.table(
            {
                "id": pa.array(np.arange(s * per, (s + 1) * per, dtype=np.int64)),
                "embedding": pa.FixedSizeListArray.from_arrays(x.reshape(-1), DIM),
            }
        )
        pq.write_table(table, folder / f"part-{s:05d}.parquet", row_group_size=BATCH * 4)


def embed_folder(source: Path, out: Path) -> None:
    """The corpus as the embed stage writes it (validated, unit-norm), the cluster input."""
    from dataselect.embedding.stage import EmbedConfig, embed

    embed(source, out, EmbedConfig(vector_column="embedding", id_column="id"), quiet=True)


def peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_ours(source: str, out: str, k: int, pyarrow_decode: bool = False) -> dict:
    from dataselect.clustering.stage import ClusterConfig, cluster

    if pyarrow_decode:  # the ablation: vectors decoded by pyarrow, not copied from pages
        from dataselect.io.vector_pages import PlainVectors

        PlainVectors.open = classmethod(lambda *args: None)  # type: ignore[method-assign]

    started = time.perf_counter()
    result = cluster(
        source, out, ClusterConfig(k=k, niter=NITER, max_points_per_centroid=MAX_POINTS), quiet=True
    )
    seconds = time.perf_counter() - started
    shard_seconds = sum(float(s["seconds"]) for s in result.manifest.shards)
    return {"seconds": seconds, "assign_seconds": shard_seconds, "rows": result.rows}


def child_raw(source: str, k: int) -> dict:
    import faiss

    table = pq.read_table(source, columns=["embedding"])  # the embed folder's parts
    x = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, DIM)
    x = np.ascontiguousarray(x, dtype=np.float32)
    del table
    started = time.perf_counter()
    size = min(len(x), k * MAX_POINTS)
    sample = x[np.random.default_rng(0).choice(len(x), size, replace=False)]
    kmeans = faiss.Kmeans(DIM, k, niter=NITER, seed=0, spherical=True,
                          max_points_per_centroid=MAX_POINTS, verbose=False)  # fmt: skip
    kmeans.train(sample)
    fitted = time.perf_counter()
    index = faiss.IndexFlatIP(DIM)
    index.add(kmeans.centroids)
    for start in range(0, len(x), BATCH):
        index.search(x[start : start + BATCH], 1)
    done = time.perf_counter()
    return {"seconds": done - started, "fit_seconds": fitted - started,
            "assign_seconds": done - fitted, "rows": len(x)}  # fmt: skip


def child_matmul(k: int) -> dict:
    """numpy's GEMM rate on one batch's shape: the best of 5 rounds of 10 products (the
    machine's practical limit; a busy moment lowers one round, not the best)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    b = rng.standard_normal((DIM, k)).astype(np.float32)
    a @ b
    reps, best = 10, float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - started) / reps)
    return {"gflops": 2 * BATCH * DIM * k / best / 1e9}


def run_child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--k", type=int, default=1000)
    args = parser.parse_args()
    n, k = args.rows, args.k
    flops_per_pass = 2 * n * k * DIM
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, rows, shards in (("x1", n, args.shards), ("x2", 2 * n, 2 * args.shards)):
            write_corpus(root / f"{name}-raw", rows, shards, centers=k)
            embed_folder(root / f"{name}-raw", root / name)
            shutil.rmtree(root / f"{name}-raw")
        before = run_child("matmul", str(k))
        ours = run_child("ours", str(root / "x1"), str(root / "out1"), str(k))
        after = run_child("matmul", str(k))
        decoded = run_child("ours-pyarrow", str(root / "x1"), str(root / "out3"), str(k))
        raw = run_child("raw", str(root / "x1"), str(k))
        doubled = run_child("ours", str(root / "x2"), str(root / "out2"), str(k))
    matmul = {"gflops": (before["gflops"] + after["gflops"]) / 2}
    rows = [
        {"run": f"dataselect cluster, {n:,} rows", "seconds": ours["seconds"],
         "assign_gflops": flops_per_pass / ours["assign_seconds"] / 1e9,
         "peak_mb": ours["peak_mb"]},
        {"run": f"dataselect cluster, {n:,} rows, vectors decoded by pyarrow",
         "seconds": decoded["seconds"],
         "assign_gflops": flops_per_pass / decoded["assign_seconds"] / 1e9,
         "peak_mb": decoded["peak_mb"]},
        {"run": f"raw FAISS in memory, {n:,} rows", "seconds": raw["seconds"],
         "assign_gflops": flops_per_pass / raw["assign_seconds"] / 1e9, "peak_mb": raw["peak_mb"]},
        {"run": f"dataselect cluster, {2 * n:,} rows", "seconds": doubled["seconds"],
         "assign_gflops": 2 * flops_per_pass / doubled["assign_seconds"] / 1e9,
         "peak_mb": doubled["peak_mb"]},
        {"run": f"numpy matmul ({BATCH} x {DIM}) @ ({DIM} x {k}), before / after the first "
                f"run: {before['gflops']:.0f} / {after['gflops']:.0f}, mean", "seconds": None,
         "assign_gflops": matmul["gflops"], "peak_mb": None},
    ]  # fmt: skip
    ratio = ours["seconds"] / raw["seconds"]
    share = rows[0]["assign_gflops"] / matmul["gflops"]
    lines = [
        "# cluster benchmark",
        "",
        f"`python scripts/bench/cluster.py --rows {n} --k {k}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}. {args.shards} shards, d = {DIM}, "
        f"niter = {NITER}, fit sample = min(N, {MAX_POINTS} k). Input: the corpus as an embed "
        "folder (made untimed, as the raw run's load is). dataselect's assign GFLOP/s "
        "counts its whole per-shard time (read, validate, search, distances, hashes, "
        "write).",
        "",
        "| run | seconds | assign GFLOP/s | peak MB |",
        "|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["run"]] + [
            "" if row[c] is None else f"{row[c]:,.1f}"
            for c in ("seconds", "assign_gflops", "peak_mb")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Ratio dataselect / raw FAISS (wall time): {ratio:.2f} (target <= 1.15).",
        f"dataselect's assignment: {rows[0]['assign_gflops']:.0f} GFLOP/s, {share:.1%} of this "
        f"machine's GEMM rate ({matmul['gflops']:.0f} GFLOP/s, the matmul row; target >= 80%).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "cluster.md").write_text(text)
    (RESULTS / "cluster.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "ratio": ratio,
                "assign_share_of_gemm": share,
                "n": n,
                "k": k,
                "gemm_before": before["gflops"],
                "gemm_after": after["gflops"],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind in ("ours", "ours-pyarrow"):
            result = child_ours(rest[0], rest[1], int(rest[2]), kind == "ours-pyarrow")
        elif kind == "raw":
            result = child_raw(rest[0], int(rest[1]))
        else:
            result = child_matmul(int(rest[0]))
        print(json.dumps({**result, "peak_mb": peak_mb()}))
    else:
        main()
