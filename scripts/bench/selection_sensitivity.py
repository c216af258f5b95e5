"""Does a MiniLM backend change what kmeans-closest selects, beyond what any change of the
vectors that small would?

A quantised backend's vectors are a little off torch's (mean cosine ~0.994 for int8), and
k-means over slightly different vectors finds other clusters: a selection's probe accuracy
moves even when the vectors are no worse. To tell a backend's loss from that, each seed's
selection is made four ways on the same corpus:

- torch's vectors;
- each backend's vectors (``--backends``);
- torch's vectors with random isotropic noise, scaled so their mean cosine to torch's is the
  backend's (a perturbation of the same size that carries no information loss of its own).

kmeans-closest with k = the budget in rows; a logistic-regression probe on torch's vectors of
the selected rows (so only the choice of rows differs), accuracy on the test split; many seeds
(k-means seed and noise seed), then mean, sd and the paired difference to torch with its
standard error. (`selection_quality.py --backend` measures end to end, each backend's own
vectors in the probe as well.)

    python scripts/bench/selection_sensitivity.py           # trec_fine, banking77, agnews
    python scripts/bench/selection_sensitivity.py --quick   # trec_fine, 3 seeds

Writes scripts/bench/results/selection_sensitivity.md / .json. Needs ../shared/datasets.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import write_results
from selection_quality import DATASETS, splits, vectors_and_labels

from dataselect import ClusterConfig, EmbedConfig, SampleConfig, cluster, embed, sample
from dataselect.evaluation import probe_accuracy


def noisy(x: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """Unit rows whose mean cosine to ``x``'s is about ``cosine``: isotropic Gaussian noise of
    norm sqrt(1/c^2 - 1) per row (a unit row plus orthogonal-in-expectation noise of that
    norm, renormalised, has cosine c)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    noise *= np.sqrt(1 / cosine**2 - 1) / np.sqrt(x.shape[1])
    y = x + noise
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def kmeans_closest(train_vectors: Path, budget: int, seed: int, root: Path) -> list:
    """The ids of the ``budget`` rows kmeans-closest picks from an embed folder."""
    clusters = root / "cluster"
    cluster(train_vectors, clusters, ClusterConfig(k=budget, seed=seed), quiet=True)
    chosen = root / "selection"
    config = SampleConfig(strategy="kmeans-closest", budget=str(budget), seed=seed)
    sample(clusters, chosen, config, quiet=True)
    return pq.read_table(chosen, columns=["id"]).column("id").to_pylist()


class Split:
    """One embedding of a corpus: train rows (ids, vectors, labels) and test rows."""

    def __init__(self, folder: Path, train: Path, test: Path) -> None:
        self.folder = folder / "train"
        self.ids, self.x, self.y = vectors_and_labels(folder / "train", train)
        _, self.x_test, self.y_test = vectors_and_labels(folder / "test", test)
        self.index = {i: n for n, i in enumerate(self.ids)}

    def accuracy(self, chosen: list) -> float:
        """Probe accuracy of these vectors' probe on the chosen rows."""
        rows = [self.index[i] for i in chosen]
        return probe_accuracy(self.x[rows], [self.y[r] for r in rows], self.x_test, self.y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--corpora", nargs="+", default=["trec_fine", "banking77", "agnews"])
    parser.add_argument("--backends", nargs="+", default=["onnx-int8"])
    parser.add_argument("--budget", type=float, default=2.0, help="percent of train")
    parser.add_argument("--seeds", type=int, default=30)
    args = parser.parse_args()
    if not DATASETS.is_dir():
        raise SystemExit(f"needs the real corpora in {DATASETS}")
    corpora = args.corpora[:1] if args.quick else args.corpora
    seeds = range(3 if args.quick else args.seeds)
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for corpus in corpora:
            train, test = splits(corpus, root)
            embedded: dict[str, Split] = {}
            for backend in ("torch", *args.backends):
                for split, path in (("train", train), ("test", test)):
                    config = EmbedConfig(embedder="minilm", device="cpu", backend=backend)
                    embed(path, root / corpus / backend / split, config, quiet=True)
                embedded[backend] = Split(root / corpus / backend, train, test)
            torch = embedded["torch"]
            budget = max(1, round(len(torch.ids) * args.budget / 100))
            # name -> (accuracy on torch's vectors, on the selection's own vectors) per seed
            runs: dict[str, list[tuple[float, float | None]]] = {}
            for seed in seeds:
                work = root / corpus / f"seed-{seed}"
                chosen = kmeans_closest(torch.folder, budget, seed, work / "torch")
                runs.setdefault("torch", []).append((torch.accuracy(chosen), None))
                for backend in args.backends:
                    own = embedded[backend]
                    chosen = kmeans_closest(own.folder, budget, seed, work / backend)
                    runs.setdefault(backend, []).append(
                        (torch.accuracy(chosen), own.accuracy(chosen)))  # fmt: skip
                    aligned = own.x[[own.index[i] for i in torch.ids]]
                    cosine = float((aligned * torch.x).sum(axis=1).mean())
                    source = work / f"noise-{backend}.parquet"
                    table = pa.table({"id": torch.ids,
                                      "vector": list(noisy(torch.x, cosine, seed))})  # fmt: skip
                    pq.write_table(table, source)
                    folder = work / f"noise-{backend}"
                    embed(source, folder, EmbedConfig(vector_column="vector"), quiet=True)
                    chosen = kmeans_closest(folder, budget, seed, work / f"noise-{backend}-sel")
                    name = f"torch + noise as far as {backend}'s (cos {cosine:.4f})"
                    runs.setdefault(name, []).append((torch.accuracy(chosen), None))
            for name, values in runs.items():
                accuracy = [a for a, _ in values]
                diffs = [a - b for a, (b, _) in zip(accuracy, runs["torch"], strict=True)]
                own_accuracy = [b for _, b in values if b is not None]
                rows.append({
                    "corpus": corpus,
                    "rows": budget,
                    "vectors": name,
                    "accuracy": statistics.mean(accuracy),
                    "sd": statistics.pstdev(accuracy),
                    "vs_torch": statistics.mean(diffs),
                    "vs_torch_se": statistics.stdev(diffs) / len(diffs) ** 0.5
                    if len(diffs) > 1 else 0.0,
                    "own_vectors": statistics.mean(own_accuracy) if own_accuracy else None,
                })  # fmt: skip
                print(f"{corpus} {name}: {rows[-1]['accuracy']:.3f} "
                      f"({100 * rows[-1]['vs_torch']:+.1f})", flush=True)  # fmt: skip
    minutes = (time.perf_counter() - started) / 60
    flag = " --quick" if args.quick else ""
    lines = [
        "# selection sensitivity: a backend's vectors against noise of the same size",
        "",
        f"`python scripts/bench/selection_sensitivity.py{flag}` ({minutes:.1f} min): "
        f"kmeans-closest at {args.budget:g}% (k = rows), {len(seeds)} seeds. Accuracy: a probe "
        "on torch's vectors of the selected rows, on the test split, mean (sd over seeds); vs "
        "torch: the mean paired difference (same seed) in points ± its standard error; own "
        "vectors: the probe on the backend's own vectors (end to end, as "
        "`selection_quality.py --backend`).",
        "",
        "| corpus | rows | selected on | accuracy | vs torch (points) | own vectors |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        own = "" if r["own_vectors"] is None else f"{r['own_vectors']:.3f}"
        lines.append(f"| {r['corpus']} | {r['rows']} | {r['vectors']} | {r['accuracy']:.3f} "
                     f"({r['sd']:.3f}) | {100 * r['vs_torch']:+.1f} ± "
                     f"{100 * r['vs_torch_se']:.1f} | {own} |")  # fmt: skip
    write_results("selection_sensitivity" + ("-quick" if args.quick else ""), lines, rows)


if __name__ == "__main__":
    main()
