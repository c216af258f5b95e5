"""Proxy downstream evaluation (DESIGN section 3): how good is each selection?

For each labelled corpus: embed train and test with MiniLM (once), then for every budget,
strategy and seed select rows from train *without looking at the labels*, fit a logistic
regression probe on the selected rows' embeddings and labels, and score it on test. Next to
it: the same probe on all of train. Also the Vendi score (q = 1) and cluster coverage of the
selection. Cluster strategies use k = the budget in rows (kM-Closest as in the paper);
top-k and kmq (T = 0.1) use the label-free heuristic quality score.

Second part (--part junk): robustness to junk. banking77.train and trec_fine.train, minus
500 held-out clean rows (the influence reference), get 20% or 40% junk in three equal kinds:
shuffled labels (in place), unrelated text (T0 instructions with random labels) and
near-duplicates (copies with a small edit). k = 50 clusters (kmeans-closest: k = the budget).
Budgets 2/5/10%: random, kmeans-closest, kmq on the label-agreement score, iterative with
probe feedback, iterative with the label-agreement score inside clusters, and bandit on the
influence score and on the label-agreement score: accuracy on the clean test split and the
share of each junk kind selected.

    python scripts/bench/selection_quality.py            # both parts (~35 min on 2 cores)
    python scripts/bench/selection_quality.py --part clean   # banking77, trec_fine, agnews
    python scripts/bench/selection_quality.py --part junk    # the junk table
    python scripts/bench/selection_quality.py --quick    # banking77, 2% and 5%, one seed

Writes scripts/bench/results/selection_quality.md / .json and selection_quality_junk.md /
.json. A strategy that loses to random is reported, not hidden.
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
RESULTS = ROOT / "scripts" / "bench" / "results"
STRATEGIES = (
    "random",
    "kmeans-closest",
    "kmeans-random",
    "top-k",
    "kmq",
    "facility-location",
    "facility-location, one partition",
    "hierarchical",
    "kmeans-closest, k = 50",
    "facility-location, k = 50",
)
# rows of the table that run a strategy on a cluster folder of their own k (a function of
# the budget in rows n): facility-location over k = n / 2 clusters (about two picks per
# cluster: the partition keeps the spread, the objective picks within), and over one
# partition (the global objective, as apricot's); hierarchical balances over 3n leaves
# (with n leaves every leaf would give one row: kmeans-closest)
OWN_K = {
    "facility-location": ("facility-location", lambda n: max(1, n // 2), {}),
    "facility-location, one partition": (
        "facility-location",
        lambda n: 1,
        {"dense_rows": 16384},  # dense over all rows (<= 10k here), as apricot's
    ),
    "hierarchical": ("hierarchical", lambda n: 3 * n, {}),
    # one cluster folder whatever the budget (k not tied to it, as in most pipelines)
    "kmeans-closest, k = 50": ("kmeans-closest", lambda n: 50, {}),
    "facility-location, k = 50": ("facility-location", lambda n: 50, {}),
}
APRICOT = "apricot facility-location (dense)"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=("all", "clean", "junk", "longtail"), default="all")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="MiniLM's backend for the clean part (results get its name)",
    )
    args = parser.parse_args()
    if not DATASETS.is_dir():
        raise SystemExit(f"needs the real corpora in {DATASETS}")
    if args.part in ("all", "clean"):
        clean_part(args)
    if args.part in ("all", "junk"):
        junk_part(args.quick)
    if args.part in ("all", "longtail"):
        longtail_part(args.quick)


def clean_part(args: argparse.Namespace) -> None:
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
                device = "cpu" if args.backend != "torch" else "auto"
                config = EmbedConfig(embedder="minilm", device=device, backend=args.backend)
                embed(path, root / corpus / split, config, quiet=True)
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
                results: dict[str, list[tuple]] = {s: [] for s in STRATEGIES}
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
                        source = score_dir if scored else cluster_dir
                        name, extra = strategy, {}
                        if strategy in OWN_K:
                            name, k_of, extra = OWN_K[strategy]
                            k = k_of(n_rows)
                            source = root / corpus / f"cluster-k{k}-{seed}"
                            if not source.exists():
                                cluster(
                                    root / corpus / "train",
                                    source,
                                    ClusterConfig(k=k, seed=seed),
                                    quiet=True,
                                )
                        began = time.perf_counter()
                        done = sample(
                            source,
                            out,
                            SampleConfig(
                                strategy=name,
                                budget=str(n_rows),
                                seed=seed,
                                score_column="score_heuristic" if scored else None,
                                temperature=KMQ_TEMPERATURE,
                                **extra,
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
                        seconds = time.perf_counter() - began
                        outputs = done.manifest.outputs
                        results[strategy].append(
                            (
                                accuracy,
                                outputs["vendi_selected"]["q1"],
                                outputs["cluster_coverage"],
                                seconds,
                            )
                        )
                results[APRICOT] = apricot_runs(x, y, x_test, y_test, n_rows)
                for strategy, values in results.items():
                    if not values:  # apricot not installed
                        continue
                    accs = [v[0] for v in values]
                    row = {
                        "corpus": corpus,
                        "budget": f"{budget}%",
                        "strategy": strategy,
                        "rows": n_rows,
                        "accuracy": statistics.mean(accs),
                        "accuracy_sd": statistics.pstdev(accs),
                        "seconds": statistics.mean(v[3] for v in values),
                    }
                    if values[0][1] is not None:
                        row["vendi_q1"] = statistics.mean(v[1] for v in values)
                    if values[0][2] is not None:
                        row["coverage"] = statistics.mean(v[2] for v in values)
                    rows.append(row)
                    print(f"{corpus} {budget}% {strategy}: {row['accuracy']:.3f}", flush=True)
    write(rows, args.quick, time.perf_counter() - started, len(seeds), args.backend)


def apricot_runs(
    x: np.ndarray, y: list, x_test: np.ndarray, y_test: list, n_rows: int
) -> list[tuple[float, None, None, float]]:
    """apricot's FacilityLocationSelection (lazy greedy) on the dense (1 + cos) / 2 matrix
    of the rows with distinct vectors (ours draws one of each set of identical vectors):
    our objective without the partition. Deterministic, so run once for every seed; its
    wall time includes building the matrix."""
    try:
        from apricot import FacilityLocationSelection
    except ImportError:
        return []
    rows = np.ascontiguousarray(x)
    _, first = np.unique(rows.view(np.dtype((np.void, rows[0].nbytes))).ravel(), return_index=True)
    distinct = np.sort(first)  # the first row of each set of identical vectors
    began = time.perf_counter()
    unit = x[distinct] / np.linalg.norm(x[distinct], axis=1, keepdims=True)
    similarity = (1.0 + unit.astype(np.float64) @ unit.T.astype(np.float64)) / 2.0
    ranking = (
        FacilityLocationSelection(n_rows, metric="precomputed", optimizer="lazy", verbose=False)
        .fit(similarity)
        .ranking
    )
    chosen = distinct[ranking]
    seconds = time.perf_counter() - began
    accuracy = probe_accuracy(x[chosen], [y[i] for i in chosen], x_test, y_test)
    return [(accuracy, None, None, seconds)]


def write(rows: list[dict], quick: bool, seconds: float, seeds: int, backend: str) -> None:
    flag = "" if backend == "torch" else f" --backend {backend}"
    lines = [
        f"# selection quality{' (quick)' if quick else ''}{flag}",
        "",
        f"`python scripts/bench/selection_quality.py{' --quick' if quick else ''}{flag}`, "
        f"{time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} min. MiniLM embeddings ({backend}); "
        "logistic "
        f"regression probe (C = 10) on the selected rows, accuracy on the test split, mean (sd) "
        f"over {seeds} seed(s); k = the budget in rows n for kmeans-closest, kmeans-random, "
        "kmq; facility-location on k = n / 2 clusters (and on one), hierarchical on 3n "
        "leaves (default levels); top-k and "
        f"kmq (T = {KMQ_TEMPERATURE}) rank by the label-free heuristic score. Vendi = "
        "Vendi score q = 1 of the selection; coverage = share of clusters selected from.",
        "",
        "| corpus | budget | rows | strategy | accuracy | vs kmeans-closest | vendi q1 | "
        "coverage | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    closest = {
        (r["corpus"], r["budget"]): r["accuracy"] for r in rows if r["strategy"] == "kmeans-closest"
    }
    for r in rows:
        vendi = f"{r['vendi_q1']:.1f}" if "vendi_q1" in r else ""
        coverage = f"{r['coverage']:.2f}" if "coverage" in r else ""
        timed = f"{r['seconds']:.2f}" if "seconds" in r else ""
        base = closest.get((r["corpus"], r["budget"]))
        delta = "" if base is None else f"{100 * (r['accuracy'] - base):+.1f}"
        lines.append(
            f"| {r['corpus']} | {r['budget']} | {r['rows']} | {r['strategy']} | "
            f"{r['accuracy']:.3f} ({r['accuracy_sd']:.3f}) | {delta} | {vendi} | {coverage} | "
            f"{timed} |"
        )
    lines += ["", *target_lines(rows, closest)]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = ("-quick" if quick else "") + ("" if backend == "torch" else f"-{backend}")
    (RESULTS / f"selection_quality{suffix}.md").write_text(text)
    (RESULTS / f"selection_quality{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")


def target_lines(rows: list[dict], closest: dict) -> list[str]:
    """Issue 18's target, label-free strategies only: the best new strategy's mean gain
    over kmeans-closest at 1/2/5%, and its worst loss at any budget."""
    lines = ["| new strategy | mean gain at 1/2/5% (points) | worst at any budget (points) |",
             "|---|---|---|"]  # fmt: skip
    for strategy in ("facility-location", "facility-location, one partition", "hierarchical"):
        gains = {
            (r["corpus"], r["budget"]): 100 * (r["accuracy"] - closest[(r["corpus"], r["budget"])])
            for r in rows
            if r["strategy"] == strategy and (r["corpus"], r["budget"]) in closest
        }
        if not gains:
            continue
        small = [g for (_, b), g in gains.items() if b in ("1%", "2%", "5%")]
        mean = statistics.mean(small) if small else float("nan")
        lines.append(f"| {strategy} | {mean:+.1f} | {min(gains.values()):+.1f} |")
    return lines


# -- a long-tailed corpus ----------------------------------------------------------------
ZIPF_EXPONENT = 1.0
LONGTAIL_MAX = 300  # rows of the largest class


def longtail_train(folder: Path) -> Path:
    """banking77.train re-sampled so class sizes follow a Zipf law: the class of rank r
    (a random order of the 77) keeps max(2, 300 / r) of its rows (all of them when fewer)."""
    rng = np.random.default_rng(0)
    train = pq.read_table(DATASETS / "banking77.train.parquet", columns=["id", "text", "label"])
    labels = np.array(train.column("label").to_pylist())
    names = rng.permutation(np.unique(labels))
    keep: list[int] = []
    for rank, name in enumerate(names, start=1):
        rows = np.flatnonzero(labels == name)
        size = max(2, round(LONGTAIL_MAX / rank**ZIPF_EXPONENT))
        keep += rng.permutation(rows)[:size].tolist()
    path = folder / "banking77-zipf.parquet"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(train.take(pa.array(sorted(keep))), path)
    return path


def longtail_part(quick: bool) -> None:
    """hierarchical against kmeans-closest, kmeans-random and random on the Zipf corpus,
    scored on the balanced banking77 test split."""
    budgets = (10,) if quick else (5, 10, 20)
    seeds = (0,) if quick else (0, 1, 2)
    runs = {
        "random": ("random", lambda n: n),
        "kmeans-random": ("kmeans-random", lambda n: n),
        "kmeans-closest": ("kmeans-closest", lambda n: n),
        "facility-location": ("facility-location", lambda n: max(1, n // 2)),
        "hierarchical (3n leaves)": ("hierarchical", lambda n: 3 * n),
        "hierarchical (6n leaves)": ("hierarchical", lambda n: 6 * n),
    }
    rows: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        train = longtail_train(root)
        test = DATASETS / "banking77.test.parquet"
        for split, path in (("train", train), ("test", test)):
            embed(path, root / split, EmbedConfig(embedder="minilm", device="auto"), quiet=True)
        ids, x, y = vectors_and_labels(root / "train", train)
        _, x_test, y_test = vectors_and_labels(root / "test", test)
        index = {i: n for n, i in enumerate(ids)}
        full = probe_accuracy(x, y, x_test, y_test)
        rows.append({"budget": "100%", "rows": len(ids), "strategy": "all of train",
                     "accuracy": full, "accuracy_sd": 0.0, "classes": len(set(y))})  # fmt: skip
        for budget in budgets:
            n_rows = max(1, round(len(ids) * budget / 100))
            found: dict[str, list[tuple[float, int]]] = {name: [] for name in runs}
            for seed in seeds:
                for number, (label, (strategy, k_of)) in enumerate(runs.items()):
                    k = min(k_of(n_rows), len(ids) // 2)  # leaves of 2 rows at least
                    clustered = root / f"cluster-{k}-{seed}"
                    if not clustered.exists():
                        cluster(root / "train", clustered, ClusterConfig(k=k, seed=seed),
                                quiet=True)  # fmt: skip
                    out = root / f"sel-{budget}-{seed}-{number}"
                    config = SampleConfig(strategy=strategy, budget=str(n_rows), seed=seed)
                    sample(clustered, out, config, quiet=True)
                    chosen = pq.read_table(sorted(str(p) for p in out.glob("part-*.parquet")),
                                           columns=["id"]).column("id").to_pylist()  # fmt: skip
                    picked = [index[i] for i in chosen]
                    accuracy = probe_accuracy(x[picked], [y[i] for i in picked], x_test, y_test)
                    found[label].append((accuracy, len({y[i] for i in picked})))
            for label, values in found.items():
                accs = [v[0] for v in values]
                rows.append({
                    "budget": f"{budget}%", "rows": n_rows, "strategy": label,
                    "accuracy": statistics.mean(accs), "accuracy_sd": statistics.pstdev(accs),
                    "classes": statistics.mean(v[1] for v in values),
                })  # fmt: skip
                print(f"longtail {budget}% {label}: {rows[-1]['accuracy']:.3f}", flush=True)
    lines = [
        "# selection quality on a long-tailed corpus",
        "",
        f"`python scripts/bench/selection_quality.py --part longtail`, "
        f"{time.strftime('%Y-%m-%d')}, {(time.perf_counter() - started) / 60:.1f} min. "
        f"banking77.train re-sampled to Zipf class sizes (class of rank r keeps "
        f"max(2, {LONGTAIL_MAX} / r) rows: {len(ids):,} rows, 77 classes); MiniLM; a logistic "
        "probe (C = 10) on the selection, accuracy on the balanced banking77.test; mean (sd) "
        f"over {len(seeds)} seed(s); classes = labels present in the selection. k = the "
        "budget in rows n except facility-location (n / 2) and hierarchical (leaves, at "
        "most rows / 2).",
        "",
        "| budget | rows | strategy | accuracy | classes |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['budget']} | {r['rows']} | {r['strategy']} | {r['accuracy']:.3f} "
                     f"({r['accuracy_sd']:.3f}) | {r['classes']:.1f} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    suffix = "-quick" if quick else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"selection_quality_longtail{suffix}.md").write_text(text)
    (RESULTS / f"selection_quality_longtail{suffix}.json").write_text(
        json.dumps(rows, indent=2) + "\n"
    )


# -- robustness to junk ------------------------------------------------------------------
JUNK_KINDS = ("shuffled", "unrelated", "near-duplicate")
FILLERS = ("please", "thanks", "hi", "ok", "now")
REFERENCE_ROWS = 500
JUNK_K = 50


def junk_pool(corpus: str, share: float, folder: Path) -> dict[str, Path]:
    """Pool (id, text, label, kind) with ``share`` junk, and the held-out clean reference."""
    rng = np.random.default_rng(0)
    train = pq.read_table(DATASETS / f"{corpus}.train.parquet", columns=["id", "text", "label"])
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["text"])
    order = rng.permutation(train.num_rows)
    reference, clean = train.take(order[:REFERENCE_ROWS]), train.take(order[REFERENCE_ROWS:])
    n = clean.num_rows
    per_kind = round(share * n / (1 - 2 * share / 3) / 3)  # `share` of the final pool
    ids = [str(i) for i in clean.column("id").to_pylist()]
    texts = clean.column("text").to_pylist()
    labels = [str(v) for v in clean.column("label").to_pylist()]
    kinds = ["clean"] * n
    names = sorted(set(labels))
    for row in rng.choice(n, per_kind, replace=False):
        labels[row] = str(rng.choice([c for c in names if c != labels[row]]))
        kinds[row] = "shuffled"
    t0_texts = t0.column("text").to_pylist()
    for j, row in enumerate(rng.choice(len(t0_texts), per_kind, replace=False)):
        ids.append(f"junk-t0-{j}")
        texts.append(t0_texts[row])
        labels.append(str(rng.choice(names)))
        kinds.append("unrelated")
    for j, row in enumerate(rng.choice(n, per_kind, replace=False)):
        base, edit = texts[row], j % 3
        text = (
            base.lower()
            if edit == 0
            else base.rstrip("?.!") + "!"
            if edit == 1
            else f"{base} {FILLERS[j % len(FILLERS)]}"
        )
        ids.append(f"junk-dup-{j}")
        texts.append(text)
        labels.append(labels[row])
        kinds.append("near-duplicate")
    paths = {"pool": folder / "pool.parquet", "reference": folder / "reference.parquet"}
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"id": ids, "text": texts, "label": labels, "kind": kinds})
    pq.write_table(table, paths["pool"])
    reference = reference.set_column(
        0, "id", pa.array([str(i) for i in reference.column("id").to_pylist()])
    )
    reference = reference.set_column(
        2, "label", pa.array([str(v) for v in reference.column("label").to_pylist()])
    )
    pq.write_table(reference, paths["reference"])
    return paths


def junk_part(quick: bool) -> None:
    corpora = ("banking77",) if quick else ("banking77", "trec_fine")
    shares = (0.2,) if quick else (0.2, 0.4)
    budgets = (5,) if quick else (2, 5, 10)
    seeds = (0,) if quick else (0, 1, 2)
    minilm = EmbedConfig(embedder="minilm", device="auto")
    rows: list[dict] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for corpus in corpora:
            root = Path(tmp) / corpus
            test = DATASETS / f"{corpus}.test.parquet"
            embed(test, root / "test-embed", minilm, quiet=True)
            _, x_test, y_test = vectors_and_labels(root / "test-embed", test)
            y_test = [str(v) for v in y_test]
            for share in shares:
                work = root / f"junk-{round(share * 100)}"
                paths = junk_pool(corpus, share, work)
                embed(paths["pool"], work / "embed", minilm, quiet=True)
                embed(paths["reference"], work / "reference", minilm, quiet=True)
                ids, x, y = vectors_and_labels(work / "embed", paths["pool"])
                kinds = pq.read_table(paths["pool"], columns=["id", "kind"])
                kind = dict(
                    zip(
                        kinds.column("id").to_pylist(),
                        kinds.column("kind").to_pylist(),
                        strict=True,
                    )
                )
                index = {i: n for n, i in enumerate(ids)}
                cluster(work / "embed", work / "cluster", ClusterConfig(k=JUNK_K), quiet=True)
                scores = ScoreConfig(
                    scorers=("influence", "label-agreement"),
                    reference=str(work / "reference"),
                    label_column="label",
                )
                score(work / "cluster", work / "score", scores, quiet=True)
                agreement = (
                    pq.read_table(
                        sorted(str(p) for p in (work / "score").glob("part-*.parquet")),
                        columns=["score_label_agreement"],
                    )
                    .column(0)
                    .to_numpy()
                )
                spread = float(agreement.std())
                for budget in budgets:
                    n_rows = max(1, round(len(ids) * budget / 100))
                    measured: dict[str, list[dict]] = {}
                    for seed in seeds:
                        closest = work / f"cluster-{budget}-{seed}"
                        cluster(
                            work / "embed", closest, ClusterConfig(k=n_rows, seed=seed), quiet=True
                        )
                        runs = junk_runs(work, closest, n_rows, seed, spread)
                        for name, (folder, config) in runs.items():
                            out = work / f"sel-{budget}-{seed}-{name}"
                            sample(folder, out, config, quiet=True)
                            chosen = (
                                pq.read_table(
                                    sorted(str(p) for p in out.glob("part-*.parquet")),
                                    columns=["id"],
                                )
                                .column("id")
                                .to_pylist()
                            )
                            at = [index[i] for i in chosen]
                            result = {
                                "accuracy": probe_accuracy(
                                    x[at], [y[i] for i in at], x_test, y_test
                                ),
                                **{
                                    k: sum(kind[i] == k for i in chosen) / len(chosen)
                                    for k in JUNK_KINDS
                                },
                            }
                            measured.setdefault(name, []).append(result)
                    for name, values in measured.items():
                        row = {
                            "corpus": corpus,
                            "junk": f"{round(share * 100)}%",
                            "budget": f"{budget}%",
                            "rows": n_rows,
                            "strategy": name,
                            **{key: statistics.mean(v[key] for v in values) for key in values[0]},
                            "accuracy_sd": statistics.pstdev(v["accuracy"] for v in values),
                        }
                        rows.append(row)
                        shares_selected = [round(row[k], 3) for k in JUNK_KINDS]
                        print(
                            f"{corpus} junk {share:.0%} {budget}% {name}: "
                            f"acc {row['accuracy']:.3f} junk {shares_selected}",
                            flush=True,
                        )
    write_junk(rows, quick, time.perf_counter() - started, len(seeds))


def junk_runs(work: Path, closest: Path, n_rows: int, seed: int, spread: float) -> dict:
    """Each compared selection: (input folder, config)."""
    budget = str(n_rows)
    scored = work / "score"
    agreement = {"score_column": "score_label_agreement", "temperature": spread}
    return {
        "random": (work / "cluster", SampleConfig(strategy="random", budget=budget, seed=seed)),
        "kmeans-closest": (
            closest,
            SampleConfig(strategy="kmeans-closest", budget=budget, seed=seed),
        ),
        "kmq (label-agreement, T = sd)": (
            scored,
            SampleConfig(strategy="kmq", budget=budget, seed=seed, **agreement),
        ),
        "iterative (probe)": (
            work / "cluster",
            SampleConfig(
                strategy="iterative",
                budget=budget,
                seed=seed,
                feedback="probe",
                label_column="label",
            ),
        ),
        "iterative (probe) + label-agreement": (
            scored,
            SampleConfig(
                strategy="iterative",
                budget=budget,
                seed=seed,
                feedback="probe",
                label_column="label",
                **agreement,
            ),
        ),
        "bandit (influence)": (
            scored,
            SampleConfig(
                strategy="bandit", budget=budget, seed=seed, score_column="score_influence"
            ),
        ),
        "bandit (label-agreement)": (
            scored,
            SampleConfig(
                strategy="bandit", budget=budget, seed=seed, score_column="score_label_agreement"
            ),
        ),
    }


def write_junk(rows: list[dict], quick: bool, seconds: float, seeds: int) -> None:
    lines = [
        f"# selection quality under junk{' (quick)' if quick else ''}",
        "",
        f"`python scripts/bench/selection_quality.py --part junk{' --quick' if quick else ''}`, "
        f"{time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} min. Pools: train minus "
        f"{REFERENCE_ROWS} held-out rows, plus junk in three equal kinds. MiniLM; k = "
        f"{JUNK_K} (kmeans-closest: k = the budget); mean over {seeds} seed(s). Accuracy of a "
        "logistic probe (C = 10) on the clean test split; shares of the selection that are "
        "junk of each kind. T = sd: the label-agreement score's standard deviation.",
        "",
        "| corpus | junk | budget | strategy | accuracy | shuffled | unrelated | near-dup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['corpus']} | {r['junk']} | {r['budget']} | {r['strategy']} | "
            f"{r['accuracy']:.3f} ({r['accuracy_sd']:.3f}) | {r['shuffled']:.3f} | "
            f"{r['unrelated']:.3f} | {r['near-duplicate']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if quick else ""
    (RESULTS / f"selection_quality_junk{suffix}.md").write_text(text)
    (RESULTS / f"selection_quality_junk{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
