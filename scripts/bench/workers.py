"""Engines against one process: hashing embed of T0 instructions cut into 4 files.

Wall time of the real command (each in its own process, start-up included) with the local
engine and --workers 1 and 2, with --engine ray on a local Ray instance it starts itself,
and with --engine ray on a two-node Ray cluster (two raylets on this machine, one CPU each,
started with `ray start`, joined with --ray-address); and whether every output shard has
the same bytes as the one-process run.

    python scripts/bench/workers.py            # all of them
    python scripts/bench/workers.py --no-ray   # the local engine only

Writes scripts/bench/results/workers.md and .json.
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

import pyarrow.parquet as pq
from common import write_results

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
FILES = 4
PORT = 6391
RAY = str(Path(sys.executable).with_name("ray"))
NODES = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
print(sum(1 for node in ray.nodes() if node["Alive"]))
"""


# Ray 2.60 turns token authentication on where ~/.ray/auth_token exists; this local test
# cluster runs without it (a real cluster would propagate the token to every node instead)
CLUSTER_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def embed(source: Path, out: Path, *options: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "dataselect", "embed", str(source), str(out), "--embedder",
         "hashing", "-q", *options],
        check=True,
        env=CLUSTER_ENV if "--ray-address" in options else None,
    )  # fmt: skip
    return time.perf_counter() - started


def start_cluster() -> str:
    """A head and one more node on this machine, one CPU each; returns the address."""
    address = f"127.0.0.1:{PORT}"
    common = ["--num-cpus", "1", "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", "--port", str(PORT), "--include-dashboard",
                    "false", *common], check=True, capture_output=True,
                   env=CLUSTER_ENV)  # fmt: skip
    subprocess.run([RAY, "start", "--address", address, *common], check=True,
                   capture_output=True, env=CLUSTER_ENV)  # fmt: skip
    for _ in range(30):  # the second raylet registers within a few seconds
        done = subprocess.run([sys.executable, "-c", NODES, address], capture_output=True,
                              text=True, check=True, env=CLUSTER_ENV)  # fmt: skip
        if int(done.stdout.split()[-1]) == 2:
            return address
        time.sleep(1)
    raise SystemExit("the second Ray node did not join")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-ray", action="store_true", help="skip the two Ray runs")
    args = parser.parse_args()
    source = DATASETS / "t0_instructions.all.parquet"
    if not source.exists():
        raise SystemExit(f"needs {source}")
    runs = [("local, 1 process", ["--workers", "1"]), ("local, --workers 2", ["--workers", "2"])]
    if not args.no_ray:
        runs.append(("ray, local instance (started by the command)", ["--engine", "ray"]))
        runs.append(("ray, 2-node cluster (1 CPU each)", ["--engine", "ray", "--ray-address"]))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        table = pq.read_table(source)
        (root / "t0").mkdir()
        step = -(-table.num_rows // FILES)
        for i in range(FILES):
            pq.write_table(table.slice(i * step, step), root / "t0" / f"part-{i}.parquet")
        reference: dict[str, bytes] = {}
        for i, (name, options) in enumerate(runs):
            out = root / f"run-{i}"
            if options[-1] == "--ray-address":
                options = [*options, start_cluster()]
            try:
                seconds = embed(root / "t0", out, *options)
            finally:
                if "--ray-address" in options:
                    subprocess.run([RAY, "stop", "--force"], capture_output=True, check=False,
                                   env=CLUSTER_ENV)  # fmt: skip
            shards = {p.name: p.read_bytes() for p in sorted(out.glob("part-*"))}
            reference = reference or shards
            rows.append(
                {
                    "run": name,
                    "command": "dataselect embed T0 OUT --embedder hashing " + " ".join(options),
                    "rows": table.num_rows,
                    "seconds": round(seconds, 2),
                    "same_bytes": shards == reference,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    write(rows)


def write(rows: list[dict]) -> None:
    lines = [
        "# engines and --workers",
        "",
        f"`python scripts/bench/workers.py`, {time.strftime('%Y-%m-%d')}, 2 cores: hashing embed "
        f"of T0 instructions ({rows[0]['rows']:,} rows) cut into {FILES} files (4 shards); wall "
        "time of the command in its own process, start-up (and Ray's) included. The 2-node "
        "cluster is two raylets on this machine started with `ray start` (the time to start "
        "them is not included).",
        "",
        "| run | seconds | speed-up | shards identical to 1 process |",
        "|---|---|---|---|",
    ]
    for r in rows:
        speed = rows[0]["seconds"] / r["seconds"]
        same = "yes" if r["same_bytes"] else "NO"
        lines.append(f"| {r['run']} | {r['seconds']} | {speed:.2f}x | {same} |")
    write_results("workers", lines, {"runs": rows})


if __name__ == "__main__":
    main()
