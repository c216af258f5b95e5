"""The adaptive samplers (iterative, bandit) on the reference loop of the adaptive issue.

Pool: banking77.train with 1,000 rows' labels shuffled in place, plus 2,000 off-domain rows
(T0 instructions) with random banking labels. MiniLM embeddings, k = 30 clusters, 650 rows
selected, 3 rounds, probe feedback. Each selection is judged by the accuracy on
banking77.test of a logistic probe (C = 10) fitted on it, and by the share of off-domain
and shuffled rows it holds; mean over 3 seeds. Compared: random, kmeans-random, and
iterative with the default update and with variants (no shrinkage; a gentler step; 5
rounds; round 1 drawn as kmq instead of chosen by facility location). Round 1 is a 1/R
share of the budget over every cluster, so with R rounds iterative keeps about 1/R of
kmeans-random's junk share. Then the bandit on the label-agreement score (a score that
means the same in every cluster): the defaults (a coverage floor of half the budget, keyed
admission), a higher floor, admission by score or closest first, alpha 1 with block 10,
and the pure UCB of before.

    python scripts/bench/adaptive.py      # ~8 min on 2 cores

Writes scripts/bench/results/adaptive.md and adaptive.json.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import embeddings_by_id, write_results

from dataselect import (
    ClusterConfig,
    EmbedConfig,
    SampleConfig,
    ScoreConfig,
    cluster,
    embed,
    sample,
    score,
)
from dataselect.evaluation import probe_accuracy

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
BUDGET, K, SEEDS = "650", 30, (0, 1, 2)
ITERATIVE = {"strategy": "iterative", "feedback": "probe", "label_column": "label"}
RUNS: dict[str, dict] = {
    "random": {"strategy": "random"},
    "kmeans-random": {"strategy": "kmeans-random"},
    "iterative (defaults: step 3, max-update 2, shrinkage 5)": ITERATIVE,
    "iterative, no shrinkage (shrinkage 0)": {**ITERATIVE, "shrinkage": 0.0},
    "iterative, gentle (step 1, max-update 1)": {**ITERATIVE, "step": 1.0, "max_update": 1.0},
    "iterative, 5 rounds": {**ITERATIVE, "rounds": 5},
    "iterative, round 1 drawn as kmq (first-round draw: before issue 18)": {
        **ITERATIVE,
        "first_round": "draw",
    },
}
BANDIT = {"strategy": "bandit", "score_column": "score_label_agreement"}
SCORED_RUNS: dict[str, dict] = {
    "bandit on label-agreement (defaults: alpha 3, block 5, coverage floor 0.5, keyed "
    "admission)": BANDIT,
    "bandit, coverage floor 0.8": {**BANDIT, "coverage_floor": 0.8},
    "bandit, admit by score": {**BANDIT, "admit_order": "score"},
    "bandit, admit closest first": {**BANDIT, "admit_order": "closest"},
    "bandit on label-agreement, alpha 1, block 10": {**BANDIT, "alpha": 1.0, "block": 10},
    "bandit, pure UCB (coverage floor 0: before issue 18)": {**BANDIT, "coverage_floor": 0.0},
}


def build_pool(path: Path) -> None:
    rng = np.random.default_rng(0)
    train = pq.read_table(DATASETS / "banking77.train.parquet", columns=["id", "text", "label"])
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["text"])
    ids = train.column("id").to_pylist()
    texts = train.column("text").to_pylist()
    labels = train.column("label").to_pylist()
    kinds = ["clean"] * len(ids)
    names = sorted(set(labels))
    for row in rng.choice(len(ids), 1000, replace=False):
        labels[row] = str(rng.choice([c for c in names if c != labels[row]]))
        kinds[row] = "shuffled"
    t0_texts = t0.column("text").to_pylist()
    for j, row in enumerate(rng.choice(len(t0_texts), 2000, replace=False)):
        ids.append(f"junk-t0-{j}")
        texts.append(t0_texts[row])
        labels.append(str(rng.choice(names)))
        kinds.append("off-domain")
    pq.write_table(pa.table({"id": ids, "text": texts, "label": labels, "kind": kinds}), path)


def main() -> None:
    if not DATASETS.is_dir():
        raise SystemExit(f"needs the real corpora in {DATASETS}")
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_pool(root / "pool.parquet")
        minilm = EmbedConfig(embedder="minilm", device="auto")
        embed(root / "pool.parquet", root / "embed", minilm, quiet=True)
        embed(DATASETS / "banking77.test.parquet", root / "test", minilm, quiet=True)
        cluster(root / "embed", root / "cluster", ClusterConfig(k=K), quiet=True)
        pool = pq.read_table(root / "pool.parquet", columns=["id", "label", "kind"])
        label = dict(zip(pool.column("id").to_pylist(), pool.column("label").to_pylist(),
                         strict=True))  # fmt: skip
        kind = dict(zip(pool.column("id").to_pylist(), pool.column("kind").to_pylist(),
                        strict=True))  # fmt: skip
        x, test_x = embeddings_by_id(root / "embed"), embeddings_by_id(root / "test")
        test = pq.read_table(DATASETS / "banking77.test.parquet", columns=["id", "label"])
        x_test = np.stack([test_x[i] for i in test.column("id").to_pylist()])
        y_test = test.column("label").to_pylist()
        agreement = ScoreConfig(scorers=("label-agreement",), label_column="label")
        score(root / "cluster", root / "score", agreement, quiet=True)
        runs = [(root / "cluster", n, o) for n, o in RUNS.items()]
        runs += [(root / "score", n, o) for n, o in SCORED_RUNS.items()]
        for folder, name, options in runs:
            measured = []
            for seed in SEEDS:
                out = root / f"select-{len(results)}-{seed}"
                sample(folder, out, SampleConfig(budget=BUDGET, seed=seed, **options),
                       quiet=True)  # fmt: skip
                chosen = pq.read_table(sorted(str(p) for p in out.glob("part-*.parquet")),
                                       columns=["id"]).column("id").to_pylist()  # fmt: skip
                accuracy = probe_accuracy(np.stack([x[i] for i in chosen]),
                                          [label[i] for i in chosen], x_test, y_test)  # fmt: skip
                measured.append({
                    "accuracy": accuracy,
                    "off_domain": sum(kind[i] == "off-domain" for i in chosen) / len(chosen),
                    "shuffled": sum(kind[i] == "shuffled" for i in chosen) / len(chosen),
                })  # fmt: skip
            row = {"selection": name,
                   **{k: statistics.mean(m[k] for m in measured) for k in measured[0]},
                   "accuracy_sd": statistics.pstdev(m["accuracy"] for m in measured)}  # fmt: skip
            results.append(row)
            print(row, flush=True)
    write(results, time.perf_counter() - started)


def write(results: list[dict], seconds: float) -> None:
    base = next(r for r in results if r["selection"] == "kmeans-random")["off_domain"]
    lines = [
        "# adaptive samplers, reference loop",
        "",
        f"`python scripts/bench/adaptive.py`, {time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} "
        "min. banking77.train (1,000 labels shuffled) + 2,000 off-domain T0 rows with random "
        f"labels; MiniLM; k = {K}; {BUDGET} rows; iterative: 3 rounds, probe feedback; mean "
        f"over {len(SEEDS)} seeds.",
        "",
        "| selection | accuracy | off-domain share | vs kmeans-random | shuffled share |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['selection']} | {r['accuracy']:.3f} ({r['accuracy_sd']:.3f}) | "
            f"{r['off_domain']:.3f} | {r['off_domain'] / base:.2f}x | {r['shuffled']:.3f} |"
        )
    write_results("adaptive", lines, results)


if __name__ == "__main__":
    main()
