"""What checking what is read costs: stages with and without SHA-256 verification of inputs.

Each stage checks every input stage-folder shard against its manifest's checksum (XXH3-128;
SHA-256 for older records) beside its work, on a helper thread, once per process, and
fingerprints raw input files by the SHA-256 and XXH3 of all their bytes (they were
fingerprinted by their first and last MiB before). This
script times, in fresh child processes, alternating, `--repeats` times each:
- cluster: an embed folder of ROWS x 384 (the cluster benchmark's synthetic corpus), k = 100;
- sample: kmeans-closest 5% of that cluster folder (reads the cluster and embed folders);
- embed: the hashing embedder over ROWS short texts in Parquet (raw-input fingerprint);
once as shipped ("checked") and once with the checks replaced by the old behaviour
("unchecked": no shard check, head/tail fingerprint). It reports the fastest of the
repeats (a busy machine only adds time) and the cost as a share of the unchecked time
(target: under 5%).

    python scripts/bench/verify_cost.py                 # 400k rows (~5 min, 2 cores)
    python scripts/bench/verify_cost.py --rows 50000 --repeats 1   # quick

Writes scripts/bench/results/verify_cost.md and verify_cost.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from cluster import write_corpus
from common import write_results


def unchecked() -> None:
    """The behaviour before verification (in this child process only): no shard registered
    for checking, raw files fingerprinted by their first and last MiB."""
    from dataselect.io import checksums

    def head_tail(path: Path, algorithms: object = None) -> dict[str, str]:
        digest = hashlib.sha256()
        size = path.stat().st_size
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            if size > 1 << 20:
                handle.seek(max(1 << 20, size - (1 << 20)))
                digest.update(handle.read())
        return {"head_tail_sha256": digest.hexdigest()}

    def old_check(dataset: object, recorded: object, what: str) -> None:
        if dataset.fingerprint() != recorded:  # type: ignore[attr-defined]
            raise SystemExit(f"source changed since {what}")

    from dataselect import lineage

    lineage.check_source = old_check  # type: ignore[assignment]
    checksums.expect = lambda path, record, mismatch: None  # type: ignore[assignment]
    checksums.cached_digests = head_tail  # type: ignore[assignment]
    checksums.start_hashing = lambda paths, algorithms=None: None  # type: ignore[assignment]


def child(mode: str, stage: str, source: str, out: str) -> dict:
    if mode == "unchecked":
        unchecked()
    import dataselect

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    if stage == "cluster":
        dataselect.cluster(source, out, dataselect.ClusterConfig(k=100, niter=10), quiet=True)
    elif stage == "sample":
        config = dataselect.SampleConfig(strategy="kmeans-closest", budget="5%")
        dataselect.sample(source, out, config, quiet=True)
    elif stage == "embed-vectors":  # setup: the cluster input, as this mode records it
        config = dataselect.EmbedConfig(vector_column="embedding", id_column="id")
        dataselect.embed(source, out, config, quiet=True)
    else:
        dataselect.embed(source, out, dataselect.EmbedConfig(embedder="hashing"), quiet=True)
    return {"seconds": time.perf_counter() - started}


def run_child(*args: str) -> float:
    proc = subprocess.run([sys.executable, __file__, "--child", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def write_texts(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    words = np.array("bank card money weather rain storm python code error music".split())
    folder.mkdir(parents=True)
    texts = [" ".join(rng.choice(words, size=12)) + f" {i}" for i in range(rows)]
    pq.write_table(pa.table({"id": np.arange(rows), "text": texts}), folder / "texts.parquet",
                   row_group_size=50_000)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="verify-cost-"))
    try:
        write_corpus(work / "vectors", args.rows, shards=10, centers=200)
        write_texts(work / "texts", args.rows)
        inputs: dict[str, dict[str, Path]] = {"cluster": {}, "sample": {}, "embed": {}}
        for mode in ("checked", "unchecked"):  # each mode's own chain: what it records
            embedded, clustered = work / f"embedded-{mode}", work / f"clustered-{mode}"
            run_child(mode, "embed-vectors", str(work / "vectors"), str(embedded))
            run_child(mode, "cluster", str(embedded), str(clustered))
            inputs["cluster"][mode] = embedded
            inputs["sample"][mode] = clustered
            inputs["embed"][mode] = work / "texts"
        embedded = work / "embedded-checked"
        size_mb = sum(p.stat().st_size for p in embedded.glob("*.parquet")) / 1e6
        rows = []
        for stage, sources in inputs.items():
            times: dict[str, list[float]] = {"checked": [], "unchecked": []}
            for _ in range(args.repeats):
                for mode in ("unchecked", "checked"):
                    source = str(sources[mode])
                    times[mode].append(run_child(mode, stage, source, str(work / "out")))
            # the fastest of the repeats: a busy machine only ever adds time
            checked, plain = (min(times[m]) for m in ("checked", "unchecked"))
            rows.append({"stage": stage, "checked_s": round(checked, 3),
                         "unchecked_s": round(plain, 3),
                         "cost_percent": round(100 * (checked / plain - 1), 1)})  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"# Verification cost ({args.rows:,} rows; embed folder {size_mb:,.0f} MB; "
        f"{os.cpu_count()} cores; fastest of {args.repeats})",
        "",
        "`python scripts/bench/verify_cost.py"
        + (f" --rows {args.rows}" if args.rows != 400_000 else "")
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "") + "`",
        "",
        "| stage | checked (s) | unchecked (s) | cost |",
        "|---|---:|---:|---:|",
        *(f"| {r['stage']} | {r['checked_s']} | {r['unchecked_s']} | {r['cost_percent']:+}% |"
          for r in rows),
    ]  # fmt: skip
    write_results("verify_cost", lines, rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child(*sys.argv[2:6])))
    else:
        main()
