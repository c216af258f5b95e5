"""The report's pictures: one function per plot, each a PNG of a fixed size (or None when the
selection has nothing to show for it, e.g. no scores or not an adaptive strategy).

Matplotlib with the Agg backend (no display), PNG metadata without the version stamp, so
the same selection gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from dataselect.report.collect import ReportData

WIDTH_PX, HEIGHT_PX, DPI = 800, 450, 100
SELECTED = "#d62728"
CORPUS = "#7f7f7f"
ACCENT = "#1f77b4"


def _figure() -> tuple[Any, Any]:  # matplotlib's figure and axes
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    return figure, axes


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def cluster_sizes(data: ReportData) -> bytes | None:
    if data.cluster_sizes is None or not len(data.cluster_sizes):
        return None
    figure, axes = _figure()
    sizes = data.cluster_sizes
    bins = min(50, max(5, len(np.unique(sizes))))
    axes.hist(sizes, bins=bins, color=ACCENT, edgecolor="white")
    axes.set_xlabel("rows in the cluster")
    axes.set_ylabel("clusters")
    axes.yaxis.get_major_locator().set_params(integer=True)  # counts of clusters
    axes.set_title(
        f"Cluster sizes: {len(sizes):,} clusters, median {np.median(sizes):,.0f}, "
        f"max {sizes.max():,}, {int((sizes == 0).sum())} empty"
    )
    return _png(figure)


def projection(data: ReportData) -> bytes | None:
    if data.projection is None:
        return None
    assert data.projection_corpus is not None and data.projection_selected is not None
    figure, axes = _figure()
    xy = data.projection
    corpus, chosen = data.projection_corpus, data.projection_selected
    axes.scatter(
        xy[corpus, 0],
        xy[corpus, 1],
        s=4,
        c=CORPUS,
        alpha=0.35,
        linewidths=0,
        label=f"corpus (sample of {int(corpus.sum()):,})",
    )
    axes.scatter(
        xy[chosen, 0],
        xy[chosen, 1],
        s=10,
        c=SELECTED,
        alpha=0.8,
        linewidths=0,
        label=f"selected ({int(chosen.sum()):,} shown)",
    )
    variance = data.projection_variance or (0.0, 0.0)
    axes.set_xlabel(f"PC 1 ({variance[0]:.0%} of variance)")
    axes.set_ylabel(f"PC 2 ({variance[1]:.0%} of variance)")
    axes.set_title("Embeddings projected on their first two principal components")
    axes.legend(loc="best", markerscale=2, fontsize=8)
    return _png(figure)


@np.errstate(invalid="ignore", divide="ignore")  # a density of a few rows divides by 0
def scores(data: ReportData) -> bytes | None:
    """Density of each score (and the distance to the centroid), all rows vs selected."""
    if not data.scores:
        return None
    import matplotlib.pyplot as plt

    names = list(data.scores)[:4]
    columns = min(2, len(names))
    grid_rows = (len(names) + columns - 1) // columns
    figure, axes = plt.subplots(
        grid_rows, columns, squeeze=False, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI
    )
    for ax, name in zip(axes.flat, names, strict=False):
        values = data.scores[name]
        finite = np.isfinite(values)
        bins, constant = histogram_bins(values[finite])
        ax.hist(values[finite], bins=bins, density=True, color=CORPUS, alpha=0.6, label="all")
        picked = values[data.selected & finite]
        ax.hist(
            picked,
            bins=bins,
            density=True,
            histtype="step",
            color=SELECTED,
            linewidth=1.5,
            label="selected",
        )
        title = "distance to centroid" if name == "distance" else name
        median = np.median(values[finite]) if finite.any() else float("nan")
        detail = (
            f"every row {median:.4g}"
            if constant
            else f"median {median:.3g} all, "
            f"{np.median(picked) if len(picked) else float('nan'):.3g} selected"
        )
        ax.set_title(f"{title}\n{detail}", fontsize=10)
        ax.tick_params(labelsize=9)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=9)
    return _png(figure)


def histogram_bins(values: np.ndarray, bins: int = 40) -> tuple[np.ndarray, bool]:
    """Bin edges over the central 99% of ``values``; one value (a constant score) gets bins
    centred on it, not an axis from it to it + 1. Also says whether it was constant."""
    low, high = np.quantile(values, [0.005, 0.995]) if len(values) else (0.0, 1.0)
    constant = bool(high <= low)
    if constant:
        half = max(abs(float(low)) * 0.05, 0.05)
        low, high = low - half, high + half
    return np.linspace(low, high, bins + 1), constant


def cluster_shares(data: ReportData) -> bytes | None:
    """Share of the selection per cluster against the cluster's share of the corpus."""
    if data.cluster is None or not len(data.cluster):
        return None
    k = int(data.cluster.max()) + 1
    corpus = np.bincount(data.cluster, minlength=k) / len(data.cluster)
    counts = np.bincount(data.cluster[data.selected], minlength=k)
    picked = counts / max(int(counts.sum()), 1)
    figure, axes = _figure()
    top = max(float(corpus.max()), float(picked.max())) * 1.05
    axes.plot(
        [0, top], [0, top], color=CORPUS, linewidth=1, linestyle="--", label="proportional to size"
    )
    axes.scatter(corpus, picked, s=12, c=ACCENT, alpha=0.7, linewidths=0, label="a cluster")
    axes.set_xlabel("share of the corpus")
    axes.set_ylabel("share of the selection")
    empty = int(((picked == 0) & (corpus > 0)).sum())
    axes.set_title(f"Per-cluster shares ({k:,} clusters, {empty:,} with no row selected)")
    axes.legend(loc="upper left", fontsize=8)
    return _png(figure)


def adaptive(data: ReportData) -> bytes | None:
    """Iterative: cluster weights per round. Bandit: rows admitted over pulls, per arm."""
    strategy = data.selection.get("strategy")
    if strategy == "iterative" and data.selection.get("round_history"):
        return _iterative_weights(data)
    if strategy == "bandit" and data.pulls is not None and data.pulls.num_rows:
        return _bandit_rewards(data)
    return None


def _iterative_weights(data: ReportData) -> bytes:
    history = data.selection["round_history"]
    weights = np.array([entry["weights"] for entry in history] + [data.selection["next_weights"]])
    figure, axes = _figure()
    order = np.argsort(weights[-1])
    image = axes.imshow(
        np.log2(np.maximum(weights[:, order].T, 1e-6)),
        aspect="auto",
        cmap="RdBu",
        vmin=-3,
        vmax=3,
        interpolation="nearest",
    )
    labels = [f"round {entry['round']}" for entry in history] + ["after"]
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylabel("clusters (sorted by final weight)")
    axes.set_title("Iterative: cluster weights per round (log2; red = lowered)")
    figure.colorbar(image, ax=axes, label="log2 weight")
    return _png(figure)


def _bandit_rewards(data: ReportData) -> bytes:
    import matplotlib.pyplot as plt

    assert data.pulls is not None
    arms = data.selection.get("arms", [])
    figure, (left, right) = plt.subplots(1, 2, figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    pulls = data.pulls
    admitted = np.cumsum(pulls.column("admitted").to_numpy())
    reward = pulls.column("reward").to_numpy().astype(np.float64)
    left.plot(np.arange(1, len(admitted) + 1), admitted, color=ACCENT)
    left.set_xlabel("pull")
    left.set_ylabel("rows admitted so far")
    twin = left.twinx()
    twin.scatter(np.arange(1, len(reward) + 1), reward, s=3, c=CORPUS, alpha=0.5, linewidths=0)
    twin.axhline(0, color=SELECTED, linewidth=0.8)
    twin.set_ylabel("reward of the pull", fontsize=8)
    left.set_title("Bandit: pulls", fontsize=10)
    if arms:
        means = np.array([a["mean_reward"] for a in arms])
        rows = np.array([a["admitted"] for a in arms])
        right.scatter(means, rows, s=12, c=ACCENT, alpha=0.7, linewidths=0)
        right.axvline(0, color=SELECTED, linewidth=0.8)
        right.set_xlabel("mean reward of the arm")
        right.set_ylabel("rows admitted")
        right.set_title(f"{len(arms):,} arms", fontsize=10)
    return _png(figure)


def timings(data: ReportData) -> bytes | None:
    if not data.stages:
        return None
    figure, axes = _figure()
    names = [f"{s.name}\n{s.manifest.rows:,} rows" for s in data.stages]
    seconds = [s.wall_seconds for s in data.stages]
    bars = axes.barh(names[::-1], seconds[::-1], color=ACCENT)
    for bar, value in zip(bars, seconds[::-1], strict=True):
        axes.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {value:,.1f} s",
            va="center",
            fontsize=8,
        )
    axes.set_xlabel("seconds (wall clock of the stage's last run)")
    axes.set_title("Stage timings and rows out")
    axes.set_xlim(0, max(max(seconds), 1e-3) * 1.2)
    return _png(figure)


PLOTS: dict[str, tuple[str, Callable[[ReportData], bytes | None]]] = {
    "cluster_sizes": ("Cluster sizes", cluster_sizes),
    "projection": ("The selection in embedding space", projection),
    "scores": ("Scores: selected vs all rows", scores),
    "cluster_shares": ("Share selected vs share of the corpus, per cluster", cluster_shares),
    "adaptive": ("Adaptive strategy: weights or rewards", adaptive),
    "timings": ("Stage timings", timings),
}
