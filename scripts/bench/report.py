"""What a report costs: its wall time, peak memory and size on real corpora.

For each corpus: embed (hashing), cluster (k), dedup (exact, minhash), sample (facility
location, 2%), then `dataselect report` in a child process, timed, with its peak RSS
(the child's ru_maxrss) and the page's bytes. The page's size is bounded by constants
(map points, texts cut short, cards for the 48 largest clusters): it should not grow with
the corpus.

    python scripts/bench/report.py          # banking77 train (10k), T0 instructions (55k)

Writes scripts/bench/results/report.md and report.json. Needs ../shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_results

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
CORPORA = {"banking77": ("banking77.train.parquet", 77), "t0": ("t0_instructions.all.parquet", 200)}


def dataselect(*args: object) -> None:
    done = subprocess.run([sys.executable, "-m", "dataselect", *map(str, args), "-q"],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"dataselect {' '.join(map(str, args))}: {done.stderr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    args = parser.parse_args()
    if not DATASETS.is_dir():
        raise SystemExit(f"{DATASETS}: the real datasets are not here")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.corpora:
            file, k = CORPORA[name]
            run = Path(tmp) / name
            dataselect("embed", DATASETS / file, run / "embed", "--embedder", "hashing")
            dataselect("cluster", run / "embed", run / "cluster", "--k", k)
            dataselect("dedup", run / "cluster", run / "dedup", "--method", "exact,minhash")
            dataselect("sample", run / "dedup", run / "sample", "--budget", "2%")
            start = time.perf_counter()
            command = [sys.executable, "-m", "dataselect", "report", run / "sample", "--json"]
            child = subprocess.Popen(command, stdout=subprocess.PIPE)
            assert child.stdout is not None
            out = child.stdout.read()
            _, status, usage = os.wait4(child.pid, 0)  # the report's own peak memory
            seconds = time.perf_counter() - start
            if status:
                raise SystemExit(f"dataselect report {run / 'sample'}: failed")
            summary = json.loads(out)
            corpus_rows = json.loads((run / "embed" / "_manifest.json").read_text())["rows"]
            rows.append({
                "corpus": name, "rows": corpus_rows, "k": k, "seconds": round(seconds, 2),
                "peak_mb": round(usage.ru_maxrss / 1024, 1),
                "bytes": summary["bytes"], "map_points": summary["map_points"],
                "clusters_shown": summary["clusters_shown"],
            })  # fmt: skip
    lines = [
        "# `dataselect report`: time, peak memory, size",
        "",
        "`python scripts/bench/report.py` (hashing embeddings, dedup exact+minhash, "
        "facility-location 2%; peak: the report process's maximum RSS)",
        "",
        "| corpus | rows | k | report s | peak MB | page MB | map points | clusters |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['corpus']} | {r['rows']:,} | {r['k']} | {r['seconds']:.1f} | {r['peak_mb']:,.0f} "
        f"| {r['bytes'] / 1e6:.2f} | {r['map_points']:,} | {r['clusters_shown']} |"
        for r in rows
    ]
    write_results("report", lines, rows)


if __name__ == "__main__":
    main()
