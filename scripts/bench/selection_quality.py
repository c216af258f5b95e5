"""Proxy downstream evaluation (DESIGN section 3): how good is each selection?

For each labelled corpus: embed train and test with MiniLM (once), then for every budget,
strategy and seed select rows from train *without looking at the labels*, fit a logistic
regression probe on the selected rows' embeddings and labels, and score it on test. Next to
it: the same probe on all of train. Also the Vendi score (q = 1) and cluster coverage of the
selection. Cluster strategies use k = the budget in rows (kM-Closest as in the paper);
top-k and kmq (T = 0.1) use the label-free heuristic quality score.

    python scripts/bench/selection_quality.py            # banking77, trec_fine, agnews (~10 min)
    python scripts/bench/selection_quality.py --quick    # banking77, 2% and 5%, one seed

Writes scripts/bench/results/selection_quality.md and .json. A strategy that loses to
random is reported, not hidden.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

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

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "scripts" / "bench" / "results"
STRATEGIES = ("random", "kmeans-closest", "kmeans-random", "top-k", "kmq")
SCORED = ("top-k", "kmq")  # read score_heuristic (label-free) from a score folder
KMQ_TEMPERATURE = 0.1


def splits(name: str, folder: Path) -> tuple[Path, Path]:
    """Train and test Parquet files; agnews has only a test split, cut 80/20 by id hash."""
    if name != "agnews":
        return DATASETS / f"{name}.train.parquet", DATASETS / f"{name}.test.parquet"
    table = pq.read_table(DATASETS / "agnews.test.parquet", columns=["id", "text", "label"])
    ids = table.column("id").to_pylist()
    test_mask = pa.array([hash_bucket(i) < 20 for i in ids])
    train, test = folder / "agnews.train.parquet", folder / "agnews.heldout.parquet"
    pq.write_table(table.filter(pa.compute.invert(test_mask)), train)
    pq.write_table(table.filter(test_mask), test)
    return train, test


def hash_bucket(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 100


def vectors_and_labels(embed_folder: Path, source: Path) -> tuple[list, np.ndarray, list]:
    table = pq.read_table(sorted(str(p) for p in embed_folder.glob("part-*.parquet")))
    labels = dict(
        zip(
            *(
                pq.read_table(source, columns=["id", "label"]).column(c).to_pylist()
                for c in ("id", "label")
            ),
            strict=True,
        )
    )
    ids = table.column("id").to_pylist()
    x = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    return ids, x, [labels[i] for i in ids]


def probe_accuracy(x: np.ndarray, y: list, x_test: np.ndarray, y_test: list) -> float:
    if len(set(y)) < 2:  # a one-label selection: the probe can only predict that label
        return float(np.mean([label == y[0] for label in y_test]))
    probe = LogisticRegression(max_iter=2000, C=10.0)
    probe.fit(x, y)
    return float(probe.score(x_test, y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not DATASETS.is_dir():
        raise SystemExit(f"needs the real corpora in {DATASETS}")
    corpora = ("banking77",) if args.quick else ("banking77", "trec_fine", "agnews")
    budgets = (2, 5) if args.quick else (1, 2, 5, 10)
    seeds = (0,) if args.quick else (0, 1, 2)
    rows: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for corpus in corpora:
            train, test = splits(corpus, root)
            for split, path in (("train", train), ("test", test)):
                embed(
                    path,
                    root / corpus / split,
                    EmbedConfig(embedder="minilm", device="auto"),
                    quiet=True,
                )
            ids, x, y = vectors_and_labels(root / corpus / "train", train)
            _, x_test, y_test = vectors_and_labels(root / corpus / "test", test)
            index = {i: n for n, i in enumerate(ids)}
            full = probe_accuracy(x, y, x_test, y_test)
            rows.append(
                {
                    "corpus": corpus,
                    "budget": "100%",
                    "strategy": "all of train",
                    "accuracy": full,
                    "accuracy_sd": 0.0,
                    "rows": len(ids),
                }
            )
            print(f"{corpus}: all of train {full:.3f}", flush=True)
            for budget in budgets:
                n_rows = max(1, round(len(ids) * budget / 100))
                results: dict[str, list[tuple[float, float, float]]] = {s: [] for s in STRATEGIES}
                for seed in seeds:
                    cluster_dir = root / corpus / f"cluster-{budget}-{seed}"
                    cluster(
                        root / corpus / "train",
                        cluster_dir,
                        ClusterConfig(k=n_rows, seed=seed),
                        quiet=True,
                    )
                    score_dir = root / corpus / f"score-{budget}-{seed}"
                    score(cluster_dir, score_dir, ScoreConfig(scorers=("heuristic",)), quiet=True)
                    for strategy in STRATEGIES:
                        out = root / corpus / f"sel-{budget}-{seed}-{strategy}"
                        scored = strategy in SCORED
                        done = sample(
                            score_dir if scored else cluster_dir,
                            out,
                            SampleConfig(
                                strategy=strategy,
                                budget=str(n_rows),
                                seed=seed,
                                score_column="score_heuristic" if scored else None,
                                temperature=KMQ_TEMPERATURE,
                            ),
                            quiet=True,
                        )
                        chosen = (
                            pq.read_table(
                                sorted(str(p) for p in out.glob("part-*.parquet")), columns=["id"]
                            )
                            .column("id")
                            .to_pylist()
                        )
                        rows_x = x[[index[i] for i in chosen]]
                        rows_y = [y[index[i]] for i in chosen]
                        accuracy = probe_accuracy(rows_x, rows_y, x_test, y_test)
                        outputs = done.manifest.outputs
                        results[strategy].append(
                            (accuracy, outputs["vendi_selected"]["q1"], outputs["cluster_coverage"])
                        )
                for strategy, values in results.items():
                    accs = [v[0] for v in values]
                    row = {
                        "corpus": corpus,
                        "budget": f"{budget}%",
                        "strategy": strategy,
                        "rows": n_rows,
                        "accuracy": statistics.mean(accs),
                        "accuracy_sd": statistics.pstdev(accs),
                        "vendi_q1": statistics.mean(v[1] for v in values),
                        "coverage": statistics.mean(v[2] for v in values),
                    }
                    rows.append(row)
                    print(f"{corpus} {budget}% {strategy}: {row['accuracy']:.3f}", flush=True)
    write(rows, args.quick, time.perf_counter() - started, len(seeds))


def write(rows: list[dict], quick: bool, seconds: float, seeds: int) -> None:
    lines = [
        f"# selection quality{' (quick)' if quick else ''}",
        "",
        f"`python scripts/bench/selection_quality.py{' --quick' if quick else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} min. MiniLM embeddings; logistic "
        f"regression probe (C = 10) on the selected rows, accuracy on the test split, mean (sd) "
        f"over {seeds} seed(s); k = the budget in rows for the cluster strategies; top-k and "
        f"kmq (T = {KMQ_TEMPERATURE}) rank by the label-free heuristic score. Vendi = "
        "Vendi score q = 1 of the selection; coverage = share of clusters selected from.",
        "",
        "| corpus | budget | rows | strategy | accuracy | vendi q1 | coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        vendi = f"{r['vendi_q1']:.1f}" if "vendi_q1" in r else ""
        coverage = f"{r['coverage']:.2f}" if "coverage" in r else ""
        lines.append(
            f"| {r['corpus']} | {r['budget']} | {r['rows']} | {r['strategy']} | "
            f"{r['accuracy']:.3f} ({r['accuracy_sd']:.3f}) | {vendi} | {coverage} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if quick else ""
    (RESULTS / f"selection_quality{suffix}.md").write_text(text)
    (RESULTS / f"selection_quality{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
