"""Scale: a synthetic corpus of N rows through embed (precomputed vectors), cluster and sample,
at N / 2 and N rows, so memory that grows with the rows shows up.

Per stage and size: wall time and peak resident memory of the real command in its own
process (`dataselect.planning.measure_command`), rows per second; and, for the sample stage,
two floors, each the time `pq.read_table` alone takes in a fresh process: its per-row
columns (id, cluster, distance of the cluster folder), and every column it reads (those,
plus all the source columns it writes the chosen rows from, plus the embed folder's id and
embedding for the Vendi scores).

    python scripts/bench/scale.py                          # 10M rows, 64-d, k = 10,000
    python scripts/bench/scale.py --rows 1000000 --k 1000  # a smaller check
    python scripts/bench/scale.py --workdir W --keep       # keep the folders in W, then
    python scripts/bench/scale.py --workdir W --stages sample   # rerun one stage on them

Writes scripts/bench/results/scale.md and .json (scale-ROWS.* when --rows is not 10M).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import write_results

from dataselect.planning import measure_command

FILE_ROWS = 1_000_000
READ_COLUMNS = """
import sys, time, glob, pyarrow.parquet as pq
started = time.perf_counter()
for spec in sys.argv[1:]:
    folder, _, columns = spec.partition(":")
    for path in sorted(glob.glob(folder + "/part-*.parquet")):
        pq.read_table(path, columns=columns.split(",") if columns else None)
print(time.perf_counter() - started)
"""


def read_seconds(*specs: str) -> float:
    """pyarrow's time to read FOLDER:COLUMNS (every column when none are named)."""
    done = subprocess.run([sys.executable, "-c", READ_COLUMNS, *specs], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return round(float(done.stdout), 2)


def write_corpus(folder: Path, rows: int, dim: int, clusters: int) -> None:
    """Gaussian blobs around ``clusters`` centres, in files of 1M rows (row groups of 100k)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    folder.mkdir(parents=True)
    for f, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        x = centres[rng.integers(0, clusters, n)]
        x += 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
        ids = pa.array([f"doc-{start + i:010d}" for i in range(n)])
        table = pa.table({"id": ids, "vec": pa.FixedSizeListArray.from_arrays(x.reshape(-1), dim)})
        pq.write_table(table, folder / f"part-{f:04d}.parquet", row_group_size=100_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10_000)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--budget", default="1%")
    parser.add_argument("--strategy", default="kmeans-closest", help="the sample stage's")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the folders in --workdir")
    parser.add_argument("--stages", default="embed,cluster,sample",
                        help="stages to run; the others' folders must be in --workdir")  # fmt: skip
    args = parser.parse_args()
    if (args.keep or args.stages != "embed,cluster,sample") and args.workdir is None:
        parser.error("--keep and --stages need --workdir")
    todo = args.stages.split(",")
    results = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        tmp = (
            args.workdir
            if args.keep
            else stack.enter_context(tempfile.TemporaryDirectory(dir=args.workdir))
        )
        for rows in (args.rows // 2, args.rows):
            root = Path(tmp) / str(rows)
            if "embed" in todo:
                subprocess.run(["rm", "-rf", str(root)], check=False)
                write_corpus(root / "vectors", rows, args.dim, clusters=2 * args.k)
            stages = [
                ("embed", root / "vectors", root / "embed", "--vector-column", "vec"),
                ("cluster", root / "embed", root / "cluster", "--k", args.k, "--niter", args.niter),
                (
                    "sample",
                    root / "cluster",
                    root / "sample",
                    "--budget",
                    args.budget,
                    "--strategy",
                    args.strategy,
                ),  # fmt: skip
            ]
            columns = f"{root / 'cluster'}:id,cluster,distance"
            everything = (columns, f"{root / 'vectors'}:", f"{root / 'embed'}:id,embedding")
            for stage in [s for s in stages if s[0] in todo]:
                subprocess.run(["rm", "-rf", str(stage[2])], check=False)
                if stage[0] == "sample":  # the page cache as warm for the stage as for the floor
                    read_seconds(*everything)
                peak, seconds = measure_command(*stage, "-q")
                row = {
                    "rows": rows,
                    "stage": stage[0],
                    "seconds": round(seconds, 1),
                    "peak_mb": round(peak, 1),
                    "rows_per_second": round(rows / seconds),
                }
                if stage[0] == "sample":
                    row["read_columns_seconds"] = read_seconds(columns)
                    row["read_all_seconds"] = read_seconds(*everything)
                if stage[0] == "cluster":
                    manifest = json.loads((root / "cluster" / "_manifest.json").read_text())
                    row["fit_sample_rows"] = manifest["outputs"].get("sample_rows")
                row["measured"] = time.strftime("%Y-%m-%d %H:%M")
                results.append(row)
                print(row, flush=True)
            if not args.keep:  # free the disk
                subprocess.run(["rm", "-rf", str(root)], check=False)
    write(args, kept_rows(args, todo) + results, time.perf_counter() - started)


def kept_rows(args: argparse.Namespace, todo: list[str]) -> list[dict]:
    """With --stages, the earlier results of the stages not rerun (same corpus settings)."""
    path = Path(__file__).parent / "results" / f"{result_name(args)}.json"
    if todo == ["embed", "cluster", "sample"] or not path.exists():
        return []
    return [r for r in json.loads(path.read_text()) if r["stage"] not in todo]


def result_name(args: argparse.Namespace) -> str:
    """scale (the default run), scale-ROWS and/or -niterN for other settings."""
    name = "scale" if args.rows == 10_000_000 else f"scale-{args.rows}"
    name = name if args.niter == 20 else f"{name}-niter{args.niter}"
    name = name if args.dim == 64 else f"{name}-d{args.dim}"
    return name if args.strategy == "kmeans-closest" else f"{name}-{args.strategy}"


def todo_of(results: list[dict]) -> list[str]:
    return sorted({r["stage"] for r in results if "measured" in r})


def write(args: argparse.Namespace, results: list[dict], seconds: float) -> None:
    lines = [
        "# scale",
        "",
        f"`python scripts/bench/scale.py --rows {args.rows} --dim {args.dim} --k {args.k} "
        f"--niter {args.niter} --strategy {args.strategy}`, {time.strftime('%Y-%m-%d')}, "
        f"{seconds / 60:.0f} min, 2 cores. "
        "Synthetic "
        f"{args.dim}-d float32 blobs; embed takes the vectors (validated, normalised); cluster "
        f"k = {args.k}, {args.niter} iterations; sample {args.strategy} {args.budget}. Wall time "
        "and peak memory of each command and its worker processes (start-up included); the "
        "sample stage runs after one untimed read of everything it reads, so the page cache is "
        "as warm for it as for the floors.",
        "",
        "| rows | stage | wall s | rows/s | peak MB | notes |",
        "|---|---|---|---|---|---|",
    ]
    results = sorted(results, key=lambda r: (r["rows"], ["embed", "cluster", "sample"].index(
        r["stage"])))  # fmt: skip
    kept = sorted({r["stage"] for r in results if "measured" not in r})
    if kept and len(kept) < len(results):
        rerun = ",".join(todo_of(results))
        lines.insert(3, f"The {' and '.join(kept)} rows are from the earlier full run; the "
                     f"others were rerun with `--stages {rerun}`.")  # fmt: skip
    for r in results:
        notes = ""
        if "read_columns_seconds" in r:
            ratio = r["seconds"] / max(r["read_columns_seconds"], 1e-9)
            notes = (
                f"pyarrow reads its per-row columns in {r['read_columns_seconds']} s: {ratio:.1f}x"
            )
        if "read_all_seconds" in r:
            ratio = r["seconds"] / max(r["read_all_seconds"], 1e-9)
            notes += f"; everything it reads in {r['read_all_seconds']} s: {ratio:.1f}x"
        if r.get("fit_sample_rows"):
            notes = f"fit sample {r['fit_sample_rows']:,} rows"
        lines.append(
            f"| {r['rows']:,} | {r['stage']} | {r['seconds']:,} | "
            f"{r['rows_per_second']:,} | {r['peak_mb']:,.0f} | {notes} |"
        )
    write_results(result_name(args), lines, results)


if __name__ == "__main__":
    main()
