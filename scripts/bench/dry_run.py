"""How good are the `--dry-run` estimates? Each stage's estimate next to the real run.

For every stage: the dry run's peak memory, time and output size, then the stage run for
real in its own process (peak resident memory from wait4, wall time, bytes written).
Corpora: a synthetic 300,000 x 128 float32 vector corpus (k = 300) and, when the shared
datasets are present, banking77.train embedded with MiniLM (the embed probe times the model).

    python scripts/bench/dry_run.py

Writes scripts/bench/results/dry_run.md and .json.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import write_results

from dataselect.planning import estimate_command, measure_command

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def synthetic(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    centers = rng.standard_normal((40, 128)).astype(np.float32)
    for s in range(3):
        x = centers[rng.integers(0, 40, 100_000)]
        x = x + rng.standard_normal((100_000, 128), dtype=np.float32)
        ids = [f"doc-{s}-{i:07d}" for i in range(100_000)]
        table = pa.table({"id": ids, "vec": pa.FixedSizeListArray.from_arrays(x.reshape(-1), 128)})
        pq.write_table(table, folder / f"part-{s}.parquet", row_group_size=25_000)
    return folder


def main() -> None:
    rows = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs = {
            "synthetic 300k x 128": [
                ("embed", synthetic(root / "vectors"), root / "embed", "--vector-column", "vec"),
                ("cluster", root / "embed", root / "cluster", "--k", 300),
                ("score", root / "cluster", root / "score", "--scorer", "column:distance"),
                ("sample", root / "score", root / "sample", "--budget", "5%"),
            ]
        }
        if DATASETS.is_dir():
            runs["banking77.train, MiniLM"] = [
                ("embed", DATASETS / "banking77.train.parquet", root / "b-embed", "--embedder",
                 "minilm", "--device", "cpu"),
                ("cluster", root / "b-embed", root / "b-cluster", "--k", 100),
                ("sample", root / "b-cluster", root / "b-sample", "--budget", "5%"),
            ]  # fmt: skip
        for corpus, stages in runs.items():
            for stage in stages:
                plan = estimate_command(*stage)
                memory, seconds = measure_command(*stage, "-q")
                row = {
                    "corpus": corpus,
                    "stage": stage[0],
                    "memory_estimate_mb": plan["peak_memory_mb"],
                    "memory_measured_mb": round(memory, 1),
                    "seconds_estimate": plan["seconds"],
                    "seconds_measured": round(seconds, 1),
                    "output_estimate_mb": plan["output_mb"],
                    "output_measured_mb": round(folder_mb(Path(stage[2])), 1),
                    "details": plan["details"],
                }
                rows.append(row)
                print(row, flush=True)
    write(rows, time.perf_counter() - started)


def write(rows: list[dict], seconds: float) -> None:
    lines = [
        "# dry-run estimates vs real runs",
        "",
        f"`python scripts/bench/dry_run.py`, {time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} min, "
        "2 cores. Estimate: `--dry-run --json`; measured: the same command run for real in "
        "its own process (peak memory of it and its worker processes, wall time including "
        "start-up, bytes in OUTPUT).",
        "",
        "| corpus | stage | memory est. / measured (MB) | ratio | time est. / measured (s) "
        "| ratio | output est. / measured (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = r["memory_estimate_mb"] / r["memory_measured_mb"]
        time_ratio = r["seconds_estimate"] / max(r["seconds_measured"], 1e-9)
        lines.append(
            f"| {r['corpus']} | {r['stage']} | {r['memory_estimate_mb']:,.0f} / "
            f"{r['memory_measured_mb']:,.0f} | {memory:.2f} | {r['seconds_estimate']:,.1f} / "
            f"{r['seconds_measured']:,.1f} | {time_ratio:.2f} | {r['output_estimate_mb']:,.1f} / "
            f"{r['output_measured_mb']:,.1f} |"
        )
    write_results("dry_run", lines, rows)


if __name__ == "__main__":
    main()
