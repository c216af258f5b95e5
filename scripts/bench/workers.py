"""--workers N against one process: hashing embed of T0 instructions cut into 4 files.

Wall time of the real command with --workers 1, 2 (each in its own process), and whether
every output shard has the same bytes.

    python scripts/bench/workers.py

Writes scripts/bench/results/workers.md and .json.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from common import write_results

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
FILES = 4


def main() -> None:
    source = DATASETS / "t0_instructions.all.parquet"
    if not source.exists():
        raise SystemExit(f"needs {source}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = pq.read_table(source)
        (root / "t0").mkdir()
        step = -(-table.num_rows // FILES)
        for i in range(FILES):
            pq.write_table(table.slice(i * step, step), root / "t0" / f"part-{i}.parquet")
        outputs = {}
        for workers in (1, 2):
            out = root / f"workers-{workers}"
            started = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "dataselect",
                    "embed",
                    str(root / "t0"),
                    str(out),
                    "--embedder",
                    "hashing",
                    "--workers",
                    str(workers),
                    "-q",
                ],
                check=True,
            )
            seconds = time.perf_counter() - started
            outputs[workers] = {p.name: p.read_bytes() for p in sorted(out.glob("part-*"))}
            rows.append({"workers": workers, "rows": table.num_rows, "seconds": round(seconds, 2)})
            print(rows[-1], flush=True)
    same = outputs[1] == outputs[2]
    lines = [
        "# --workers",
        "",
        f"`python scripts/bench/workers.py`, {time.strftime('%Y-%m-%d')}, 2 cores: hashing embed "
        f"of T0 instructions ({rows[0]['rows']:,} rows) cut into {FILES} files; wall time of the "
        f"command, start-up included. Output shards identical: {'yes' if same else 'NO'}.",
        "",
        "| workers | seconds | speed-up |",
        "|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['seconds']} | {rows[0]['seconds'] / r['seconds']:.2f}x |"
        )
    write_results("workers", lines, {"same_bytes": same, "runs": rows})


if __name__ == "__main__":
    main()
