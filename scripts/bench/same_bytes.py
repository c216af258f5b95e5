"""Refactor guard: run one catalogue of commands with this checkout and with another git
revision, and compare everything they write.

Every stage, every scorer, every sampling strategy, `refine`, `run`, worker processes and
threads, and the readers (`inspect --json`, `eval --json`, `--dry-run --json` plans without
their estimates). Output files are compared byte for byte; manifests without their timings
(`common.folder_files`); printed JSON without timings and estimates. A change that claims
"no change of behaviour" must pass this against the revision it started from.

    python scripts/bench/same_bytes.py                 # against HEAD
    python scripts/bench/same_bytes.py --rev 51f5e17 --ray

It exits 1 and names the differing files when anything differs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from common import folder_files

REPO = Path(__file__).resolve().parents[2]
VOLATILE = {"started", "finished", "seconds", "run_seconds", "rows_per_second",
            "peak_memory_mb", "output_mb", "read_seconds", "reduction_seconds", "fit_seconds",
            "assignment_seconds", "process_mb", "workers", "fit_sample_mb",
            "probe_rows"}  # fmt: skip
WORDS = ("bank card transfer money account refund weather rain sunny storm forecast python "
         "code function error bug compile music song album guitar").split()  # fmt: skip


def write_inputs(folder: Path) -> None:
    """A labelled corpus (4 Parquet files), JSONL, vectors, and the scorers' side inputs."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    (folder / "corpus").mkdir()
    topics = np.array_split(np.array(WORDS), 4)
    for f in range(4):
        rows = 150
        label = rng.integers(0, 4, rows)
        texts = [" ".join(rng.choice(topics[t], size=int(rng.integers(3, 12)))) + f" {f}.{i}"
                 for i, t in enumerate(label)]  # fmt: skip
        table = pa.table({
            "id": [f"doc-{f}-{i:04d}" for i in range(rows)],
            "text": texts,
            "label": [f"t{t}" for t in label],
            "reward": rng.standard_normal(rows),
            "n_tokens": rng.integers(1, 30, rows),
        })  # fmt: skip
        pq.write_table(table, folder / "corpus" / f"part-{f}.parquet", row_group_size=50)
    with open(folder / "rows.jsonl", "w") as handle:
        for i in range(200):
            row = {"id": f"j{i}", "prompt": f"{WORDS[i % 20]} {WORDS[(3 * i) % 20]}",
                   "completion": f"{WORDS[(7 * i) % 20]} {i}"}  # fmt: skip
            handle.write(json.dumps(row) + "\n")
    x = rng.standard_normal((300, 24)).astype(np.float32)
    pq.write_table(
        pa.table({"id": [f"v{i}" for i in range(300)],
                  "vec": pa.FixedSizeListArray.from_arrays(x.reshape(-1), 24)}),
        folder / "vectors.parquet", row_group_size=100,
    )  # fmt: skip
    sides = {"target": WORDS[:5], "positives": WORDS[5:10], "negatives": WORDS[10:]}
    for name, words in sides.items():
        texts = [" ".join(rng.choice(words, size=6)) for _ in range(60)]
        pq.write_table(pa.table({"text": texts}), folder / f"{name}.parquet")
    labels = [f"t{i % 4}" for i in range(80)]
    texts = [" ".join(rng.choice(topics[i % 4], size=7)) for i in range(80)]
    pq.write_table(
        pa.table({"id": [f"ref{i}" for i in range(80)], "text": texts, "label": labels}),
        folder / "reference.parquet",
    )
    feedback = pa.table({"id": [f"doc-{f}-{i:04d}" for f in range(4) for i in range(150)],
                         "score": rng.standard_normal(600)})  # fmt: skip
    pq.write_table(feedback, folder / "feedback.parquet")


def catalogue(data: Path, out: Path, ray: bool) -> list[tuple[str, list[object]]]:
    """(name, dataselect arguments): every command, each into its own folder under out."""
    h = ["--embedder", "hashing", "--dim", "64"]
    c = out / "cluster"
    steps: list[tuple[str, list[object]]] = [
        ("embed", ["embed", data / "corpus", out / "embed", *h]),
        ("embed-vectors", ["embed", data / "vectors.parquet", out / "embed-vectors",
                           "--vector-column", "vec"]),
        ("embed-jsonl", ["embed", data / "rows.jsonl", out / "embed-jsonl", "--embedder",
                         "hashing", "--template", "{prompt}\\n{completion}"]),
        ("embed-workers", ["embed", data / "corpus", out / "embed-workers", *h, "--workers", 2]),
        ("embed-reference", ["embed", data / "reference.parquet", out / "reference", *h]),
        ("cluster", ["cluster", out / "embed", c, "--k", 8]),
        ("cluster-auto", ["cluster", out / "embed", out / "cluster-auto", "--k", "auto",
                          "--k-grid", "4,8"]),
        ("cluster-given", ["cluster", out / "embed", out / "cluster-given", "--centroids",
                           c]),
        ("cluster-vectors", ["cluster", out / "embed-vectors", out / "cluster-vectors", "--k", 5]),
    ]  # fmt: skip
    scorers: dict[str, list[object]] = {
        "heuristic": ["--scorer", "heuristic"],
        "dsir": ["--scorer", "dsir", "--target", data / "target.parquet"],
        "classifier": ["--scorer", "classifier", "--positives", data / "positives.parquet",
                       "--negatives", data / "negatives.parquet"],
        "influence": ["--scorer", "influence", "--reference", out / "reference",
                      "--label-column", "label"],
        "difficulty": ["--scorer", "el2n", "--scorer", "grand", "--scorer", "vog",
                       "--label-column", "label", "--probe-rows", 300],
        "agreement": ["--scorer", "label-agreement", "--label-column", "label"],
        "column": ["--scorer", "column:reward"],
        "cluster-labels": ["--scorer", "el2n"],
    }  # fmt: skip
    for name, args in scorers.items():
        steps.append((f"score-{name}", ["score", c, out / f"score-{name}", *args]))
    steps.append(("score-all", ["score", c, out / "score", "--scorer", "heuristic", "--scorer",
                                "label-agreement", "--scorer", "column:reward", "--label-column",
                                "label"]))  # fmt: skip
    steps.append(("score-raw", ["score", data / "corpus", out / "score-raw", "--scorer",
                                "heuristic"]))  # fmt: skip
    s = out / "score"
    samples: dict[str, list[object]] = {
        "random": [s, "-s", "random", "-b", "10%"],
        "top-k": [s, "-s", "top-k", "--score-column", "score_label_agreement", "-b", 50],
        "kmeans-closest": [c, "-b", 40],
        "kmeans-closest-prop": [c, "-b", 40, "--allocation", "proportional"],
        "kmeans-random": [c, "-s", "kmeans-random", "-b", "7%"],
        "kmq": [s, "-s", "kmq", "--score-column", "score_label_agreement", "--temperature", 0.5],
        "iterative-probe": [s, "-s", "iterative", "-b", 60, "--feedback", "probe",
                            "--label-column", "label"],
        "iterative": [s, "-s", "iterative", "-b", 60],
        "bandit": [s, "-s", "bandit", "--score-column", "score_label_agreement", "-b", 60],
        "bandit-neighbours": [s, "-s", "bandit", "--score-column", "score_reward", "-b", 60,
                              "--neighbour-radius", 0.8, "--tau", 0.1],
        "tokens": [c, "-s", "kmeans-random", "--budget-tokens", 400],
        "tokens-column": [s, "-s", "kmq", "--score-column", "score_heuristic",
                          "--budget-tokens", 300, "--token-column", "n_tokens"],
        "threads": [c, "-s", "kmeans-random", "-b", "20%", "--workers", 2],
    }  # fmt: skip
    for name, args in samples.items():
        steps.append((f"sample-{name}", ["sample", args[0], out / f"sample-{name}", *args[1:]]))
    steps.append(("refine", ["refine", out / "sample-iterative", "--feedback",
                             data / "feedback.parquet"]))  # fmt: skip
    config = out / "run.yaml"
    config.write_text(yaml.safe_dump({
        "input": str(data / "corpus"), "run_dir": str(out / "run"),
        "embed": {"embedder": "hashing", "dim": 32, "shard_rows": 100},
        "cluster": {"k": 6}, "score": {"scorers": ["heuristic"]},
        "sample": {"strategy": "kmq", "score_column": "score_heuristic", "budget": "10%"},
    }))  # fmt: skip
    steps.append(("run", ["run", config]))
    if ray:
        steps.append(("ray", ["embed", data / "corpus", out / "embed-ray", *h, "--engine", "ray"]))
    # readers: their printed JSON (a trailing "json" step name means: compare stdout)
    steps += [
        ("inspect-json", ["inspect", out / "run", "--verify", "--json"]),
        ("inspect-sample-json", ["inspect", out / "sample-bandit", "--json"]),
        ("eval-json", ["eval", "--train", out / "embed", "--test", out / "reference",
                       "--selection", out / "sample-kmq", "--label-column", "label", "--json"]),
        ("dry-run-json", ["run", config, "--dry-run", "--json"]),
        ("dry-embed-json", ["embed", data / "corpus", out / "embed", *h, "--dry-run", "--json"]),
        ("dry-cluster-json", ["cluster", out / "embed", out / "cluster", "--k", 9, "--overwrite",
                              "--dry-run", "--json"]),
        ("dry-sample-json", ["sample", s, out / "sample-new", "-s", "kmq", "--score-column",
                             "score_heuristic", "--dry-run", "--json"]),
    ]  # fmt: skip
    return steps


def scrub(value: object, root: str) -> object:
    """Printed JSON without timings, estimates and the run's own folder."""
    if isinstance(value, dict):
        return {k: scrub(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [scrub(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "ROOT")
    return value


def run_catalogue(src: Path, work: Path, ray: bool) -> dict[str, bytes]:
    """Every step with the code in ``src``; returns what it wrote and printed."""
    data, out = work / "data", work / "out"
    write_inputs(data)
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(src), "RAY_AUTH_MODE": "disabled"}
    found: dict[str, bytes] = {}
    for name, args in catalogue(data, out, ray):
        done = subprocess.run([sys.executable, "-m", "dataselect", *map(str, args), "-q"]
                              if not name.endswith("json") else
                              [sys.executable, "-m", "dataselect", *map(str, args)],
                              capture_output=True, text=True, env=env)  # fmt: skip
        code = f"exit {done.returncode}".encode()
        found[f"{name}: exit"] = code
        if done.returncode != 0:
            found[f"{name}: stderr"] = done.stderr.replace(str(work), "ROOT").encode()
        if name.endswith("json") and done.returncode == 0:
            printed = scrub(json.loads(done.stdout), str(work))
            found[f"{name}: stdout"] = json.dumps(printed, sort_keys=True, indent=1).encode()
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        for relative, data_ in folder_files(folder, root=work).items():
            if relative.endswith("_manifest.json"):  # the digest of a folder's manifest
                data_ = re.sub(rb'"reference_sha256": "[0-9a-f]+"', b"REFERENCE", data_)
            found[f"{folder.name}/{relative}"] = data_
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="HEAD", help="the revision to compare with")
    parser.add_argument("--ray", action="store_true", help="also one stage on --engine ray")
    parser.add_argument("--keep", type=Path, help="keep both work folders under this one")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="same-bytes-"))
    try:
        tree = base / "rev"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree),
                        args.rev], check=True, capture_output=True)  # fmt: skip
        try:
            theirs = run_catalogue(tree / "src", base / "theirs", args.ray)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           check=True, capture_output=True)  # fmt: skip
        ours = run_catalogue(REPO / "src", base / "ours", args.ray)
        differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        failed = sorted(k for k, v in ours.items() if k.endswith(": exit") and v != b"exit 0")
        print(f"{len(ours)} outputs compared against {args.rev}: {len(differ)} differ")
        for key in differ:
            print(f"  differs: {key}")
            if key.endswith(("stderr", "exit")):
                print(f"    {args.rev}: {theirs.get(key, b'').decode()[:300]}")
                print(f"    ours: {ours.get(key, b'').decode()[:300]}")
        for key in failed:
            stderr = ours.get(key.replace(": exit", ": stderr"), b"").decode()[:300]
            print(f"  failed (both): {key} {stderr}")
        return 1 if differ else 0
    finally:
        if args.keep:
            shutil.copytree(base, args.keep, dirs_exist_ok=True)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
