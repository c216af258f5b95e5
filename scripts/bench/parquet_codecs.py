"""Parquet codec benchmark for embedding columns: file size and read time per codec.

Why vector columns are written uncompressed (see src/dataselect/io/format.py): unit-norm
float32 embeddings barely compress, but a compressed column costs time on every read, and
the cluster stage reads its input twice. Writes one shard of 50,000 x 384 unit vectors per
codec and reads its embedding column back (single-threaded, as the stages read; best of 9
round-robin rounds after a warm-up).

    python scripts/bench/parquet_codecs.py       # a few seconds

Writes scripts/bench/results/parquet_codecs.md.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS = Path(__file__).resolve().parent / "results"
ROWS, DIM, REPEATS = 50_000, 384, 9
CODECS = ("none", "snappy", "lz4", "zstd")


def read_seconds(path: Path) -> float:
    started = time.perf_counter()
    table = pq.read_table(path, columns=["embedding"], use_threads=False)
    table.column("embedding").combine_chunks().flatten().to_numpy()
    return time.perf_counter() - started


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    table = pa.table(
        {
            "id": pa.array(np.arange(ROWS, dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(x.reshape(-1), DIM),
        }
    )
    best = dict.fromkeys(CODECS, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        paths = {codec: Path(tmp) / f"{codec}.parquet" for codec in CODECS}
        for codec, path in paths.items():
            pq.write_table(table, path, compression={"id": "zstd", "embedding.list.element": codec})
        for _ in range(REPEATS + 1):  # round-robin, so drift hits every codec alike
            for codec, path in paths.items():
                best[codec] = min(best[codec], read_seconds(path))
        rows = [(c, paths[c].stat().st_size / 1e6, best[c]) for c in CODECS]
    base = dict((codec, seconds) for codec, _, seconds in rows)["none"]
    lines = [
        "# Parquet codecs for an embedding column",
        "",
        f"`python scripts/bench/parquet_codecs.py` on {platform.machine()}, {os.cpu_count()} "
        f"cores, {time.strftime('%Y-%m-%d')}. {ROWS:,} x {DIM} unit float32 vectors, one file, "
        "read single-threaded (best of 9 round-robin rounds, after one warm-up round).",
        "",
        "| codec | MB | read ms | read time / uncompressed |",
        "|---|---|---|---|",
    ]
    lines += [f"| {c} | {mb:.1f} | {s * 1000:.0f} | {s / base:.2f} |" for c, mb, s in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "parquet_codecs.md").write_text(text)


if __name__ == "__main__":
    main()
