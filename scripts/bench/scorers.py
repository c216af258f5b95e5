"""Scorer benchmark: speed of each scorer, and how well kmq under it avoids injected junk.

Pool: banking77.train minus 1,000 held-out clean rows (the "reference": DSIR target,
classifier positives, influence reference), plus junk making 20% of the pool, in three
kinds of equal size:
- shuffled: pool rows whose label is replaced by a different one;
- unrelated: T0 instruction texts with random banking labels;
- near-duplicates: copies of pool rows with a small edit (case, punctuation, a filler word).
Classifier negatives: 1,000 other T0 rows. MiniLM embeddings; k = 100 clusters.

For each scorer: rows/s of the score stage on the pool (its fit included), then a 5%
selection with kmq at two temperatures (T = the score's standard deviation, so one standard
deviation is worth e in odds, and T = sd / 4, worth e^4) over 3 seeds, next to
kmeans-random: the share of each junk kind selected, and the accuracy on banking77.test of a
logistic probe on the selection.

    python scripts/bench/scorers.py      # ~10 min on 2 cores

Writes scripts/bench/results/scorers.md and scorers.json.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import embeddings_by_id

from dataselect import ClusterConfig, EmbedConfig, SampleConfig, cluster, embed, sample
from dataselect.evaluation import probe_accuracy
from dataselect.scoring.stage import ScoreConfig, score

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "scripts" / "bench" / "results"
HELD_OUT = 1_000
JUNK_SHARE = 0.2
BUDGET = "5%"
SEEDS = (0, 1, 2)
FILLERS = ("please", "thanks", "hi", "ok", "now")


def build_pool(folder: Path) -> dict[str, Path]:
    """Write pool, reference, negatives and test; return their paths."""
    rng = np.random.default_rng(0)
    train = pq.read_table(DATASETS / "banking77.train.parquet", columns=["id", "text", "label"])
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["id", "text"])
    order = rng.permutation(train.num_rows)
    reference = train.take(order[:HELD_OUT])
    clean = train.take(order[HELD_OUT:])
    n = clean.num_rows
    per_kind = round(JUNK_SHARE * n / (1 - 2 * JUNK_SHARE / 3) / 3)  # 20% of the final pool
    labels = np.array(clean.column("label").to_pylist(), dtype=object)
    texts = clean.column("text").to_pylist()
    ids = clean.column("id").to_pylist()
    kinds = ["clean"] * n
    names = sorted(set(labels))
    for row in rng.choice(n, per_kind, replace=False):  # shuffled labels, in place
        labels[row] = rng.choice([c for c in names if c != labels[row]])
        kinds[row] = "shuffled"
    t0_rows = rng.choice(t0.num_rows, 2 * per_kind, replace=False)
    t0_texts = t0.column("text").to_pylist()
    for j, row in enumerate(t0_rows[:per_kind]):  # unrelated text, random labels
        ids.append(f"junk-t0-{j}")
        texts.append(t0_texts[row])
        labels = np.append(labels, rng.choice(names))
        kinds.append("unrelated")
    for j, row in enumerate(rng.choice(n, per_kind, replace=False)):  # near-duplicates
        base = texts[row]
        edit = j % 3
        text = (
            base.lower()
            if edit == 0
            else base.rstrip("?.!") + "!"
            if edit == 1
            else f"{base} {FILLERS[j % len(FILLERS)]}"
        )
        ids.append(f"junk-dup-{j}")
        texts.append(text)
        labels = np.append(labels, labels[row])
        kinds.append("near-duplicate")
    paths = {
        "pool": folder / "pool.parquet",
        "reference": folder / "reference.parquet",
        "negatives": folder / "negatives.parquet",
    }
    pq.write_table(
        pa.table({"id": ids, "text": texts, "label": labels.tolist(), "kind": kinds}),
        paths["pool"],
    )
    pq.write_table(reference, paths["reference"])
    negatives = t0.take(t0_rows[per_kind:]).slice(0, HELD_OUT).select(["id", "text"])
    pq.write_table(negatives, paths["negatives"])
    return paths


def main() -> None:
    if not DATASETS.is_dir():
        raise SystemExit(f"needs the real corpora in {DATASETS}")
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = build_pool(root)
        minilm = EmbedConfig(embedder="minilm", device="auto")
        embed(paths["pool"], root / "embed", minilm, quiet=True)
        embed(paths["reference"], root / "reference-embed", minilm, quiet=True)
        embed(DATASETS / "banking77.test.parquet", root / "test-embed", minilm, quiet=True)
        cluster(root / "embed", root / "cluster", ClusterConfig(k=100), quiet=True)
        pool = pq.read_table(paths["pool"], columns=["id", "label", "kind"])
        kind = dict(
            zip(pool.column("id").to_pylist(), pool.column("kind").to_pylist(), strict=True)
        )
        label = dict(
            zip(pool.column("id").to_pylist(), pool.column("label").to_pylist(), strict=True)
        )
        vectors = embeddings_by_id(root / "embed")
        test = pq.read_table(DATASETS / "banking77.test.parquet", columns=["id", "label"])
        test_vectors = embeddings_by_id(root / "test-embed")
        x_test = np.stack([test_vectors[i] for i in test.column("id").to_pylist()])
        y_test = test.column("label").to_pylist()

        def evaluate(selection: Path) -> dict[str, float]:
            chosen = pq.read_table(
                sorted(str(p) for p in selection.glob("part-*.parquet")), columns=["id"]
            ).column("id").to_pylist()  # fmt: skip
            accuracy = probe_accuracy(np.stack([vectors[i] for i in chosen]),
                                      [label[i] for i in chosen], x_test, y_test)  # fmt: skip
            shares = {k: sum(kind[i] == k for i in chosen) / len(chosen)
                      for k in ("shuffled", "unrelated", "near-duplicate")}  # fmt: skip
            return {"accuracy": accuracy, **shares}

        scorers = {
            "heuristic": ScoreConfig(scorers=("heuristic",)),
            "dsir": ScoreConfig(scorers=("dsir",), target=str(paths["reference"])),
            "classifier": ScoreConfig(
                scorers=("classifier",),
                positives=str(paths["reference"]),
                negatives=str(paths["negatives"]),
            ),
            "influence": ScoreConfig(
                scorers=("influence",),
                reference=str(root / "reference-embed"),
                label_column="label",
            ),
            "el2n": ScoreConfig(scorers=("el2n",), label_column="label"),
            "grand": ScoreConfig(scorers=("grand",), label_column="label"),
            "vog": ScoreConfig(scorers=("vog",), label_column="label"),
            "label-agreement": ScoreConfig(scorers=("label-agreement",), label_column="label"),
        }
        runs: list[tuple[str, Path | None, str | None, float]] = [
            ("kmeans-random", None, None, 0.0)
        ]
        for name, config in scorers.items():
            out = root / f"score-{name}"
            began = time.perf_counter()
            result = score(root / "cluster", out, config, quiet=True)
            seconds = time.perf_counter() - began
            column = "score_" + name.replace("-", "_")
            values = pq.read_table(
                sorted(str(p) for p in out.glob("part-*.parquet")), columns=[column]
            ).column(column).to_numpy()  # fmt: skip
            spread = float(values.std()) or 1.0
            runs += [(name, out, column, spread), (name, out, column, spread / 4)]
            print(f"{name}: {result.rows / seconds:,.0f} rows/s", flush=True)
            rows.append({"scorer": name, "rows_per_s": result.rows / seconds, "seconds": seconds})
        results = []
        for name, folder, column, temperature in runs:
            measured = []
            for seed in SEEDS:
                out = root / f"select-{name}-{len(results)}-{seed}"
                config = (
                    SampleConfig(strategy="kmeans-random", budget=BUDGET, seed=seed)
                    if folder is None
                    else SampleConfig(
                        strategy="kmq",
                        budget=BUDGET,
                        seed=seed,
                        score_column=column,
                        temperature=temperature,
                    )  # fmt: skip
                )
                sample(folder or root / "cluster", out, config, quiet=True)
                measured.append(evaluate(out))
            ratio = "" if folder is None else (" (T = sd)" if len(results) % 2 else " (T = sd/4)")
            summary = {
                "selection": name if folder is None else f"kmq on {name}{ratio}",
                **{key: statistics.mean(m[key] for m in measured) for key in measured[0]},
                "accuracy_sd": statistics.pstdev(m["accuracy"] for m in measured),
            }
            results.append(summary)
            print(summary, flush=True)
        junk_in_pool = {k: sum(v == k for v in kind.values()) / len(kind)
                        for k in ("shuffled", "unrelated", "near-duplicate")}  # fmt: skip
    write(rows, results, junk_in_pool, len(kind), time.perf_counter() - started)


def write(speed: list[dict], results: list[dict], pool: dict, rows: int, seconds: float) -> None:
    lines = [
        "# scorers",
        "",
        f"`python scripts/bench/scorers.py`, {time.strftime('%Y-%m-%d')}, "
        f"{seconds / 60:.1f} min, 2 cores. Pool: {rows:,} rows of banking77.train with 20% "
        "junk (shuffled labels, unrelated T0 text with random labels, near-duplicates; "
        f"{pool['shuffled']:.1%}, {pool['unrelated']:.1%} and {pool['near-duplicate']:.1%} of "
        "the pool); MiniLM embeddings, k = 100.",
        "",
        "## Speed (score stage on the pool, fit included)",
        "",
        "| scorer | rows/s | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {r['scorer']} | {r['rows_per_s']:,.0f} | {r['seconds']:.1f} |" for r in speed]
    lines += [
        "",
        f"## Usefulness: {BUDGET} selected, mean of {len(SEEDS)} seeds",
        "",
        "kmq temperature T in units of the score's standard deviation (sd). Accuracy of a probe "
        "on the selection, on banking77.test (sd over seeds); share of the selection that is "
        "each kind of junk.",
        "",
        "| selection | accuracy | shuffled | unrelated | near-duplicate |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['selection']} | {r['accuracy']:.3f} ({r['accuracy_sd']:.3f}) | "
        f"{r['shuffled']:.1%} | {r['unrelated']:.1%} | {r['near-duplicate']:.1%} |"
        for r in results
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scorers.md").write_text(text)
    payload = {"speed": speed, "usefulness": results, "pool_junk": pool}
    (RESULTS / "scorers.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
