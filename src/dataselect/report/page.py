"""`dataselect report`: one self-contained HTML page (images as data URIs) plus the PNGs.

The page needs no network and no server: open it from disk, attach it to a ticket, mail it.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from dataselect.errors import DataError, UsageError
from dataselect.io.atomic import write_bytes_atomic
from dataselect.manifest import MANIFEST_NAME
from dataselect.report.collect import ReportData, collect
from dataselect.report.interactive import MAP_SCRIPT, SORT_SCRIPT
from dataselect.report.plots import HEIGHT_PX, PLOTS, WIDTH_PX
from dataselect.report.sections import (
    clusters_section,
    dedup_section,
    empty_section,
    labels_section,
    map_section,
)
from dataselect.report.sections import (
    escaped as _e,
)

REPORT_NAME = "report.html"
IN_THE_MAP = ("projection",)  # plots the page shows interactively (their PNG is still written)
PLOTS_FOLDER = "report-plots"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 78em; padding: 0 1em;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.4em; overflow-wrap: anywhere; } h2 { font-size: 1.15em; margin-top: 2em; }
h3 { font-size: 1em; margin: 0.2em 0; } h4 { font-size: 0.85em; margin: 0.6em 0 0.2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; } table.sortable th[data-order]::after { content: " \\2195"; }
.scroll { max-width: 100%; overflow-x: auto; max-height: 32em; overflow-y: auto; }
td.params { font-size: 0.85em; max-width: 30em; overflow-wrap: anywhere; }
figure { margin: 1em 0; } figcaption, .caption, .muted { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(22em, 1fr)); gap: 0.8em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.8em; font-size: 0.9em;
        overflow-wrap: anywhere; }
.card ol { margin: 0; padding-left: 1.4em; } .card .facts { color: #555; margin: 0.2em 0; }
.terms b { background: #e8f0fa; padding: 0 0.3em; margin-right: 0.2em; font-weight: 600; }
.score { color: #a00; font-variant-numeric: tabular-nums; }
.map-box { position: relative; width: fit-content; max-width: 100%; }
#map { border: 1px solid #ccc; max-width: 100%; }
.tip { position: absolute; max-width: 28em; background: #fff; border: 1px solid #888;
       padding: 0.3em 0.5em; font-size: 0.85em; white-space: pre-wrap; pointer-events: none;
       box-shadow: 0 2px 6px rgba(0,0,0,0.2); z-index: 2; }
.bar { display: inline-block; height: 0.8em; margin-right: 0.4em; vertical-align: middle; }
.bar.grey { background: #9a9a9a; } .bar.red { background: #d62728; }
td .share { font-size: 0.85em; } td:has(.bar) { min-width: 12em; }
.dot { display: inline-block; width: 0.7em; height: 0.7em; border-radius: 50%; }
.dot.grey { background: #9a9a9a; } .dot.red { background: #d62728; }
.warning { background: #fff4e5; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }
"""


def make_report(
    path: str | Path,
    output: str | Path | None = None,
    seed: int = 0,
    text_column: str | None = None,
    label_column: str | None = None,
) -> dict[str, Any]:
    """Write the report of the selection in ``path`` (a sample or run folder); returns a summary.

    ``text_column``: the texts shown [default: what the embed stage embedded];
    ``label_column``: compared corpus vs selection [default: the selection's, else 'label']."""
    target = Path(output) if output else default_target(Path(path))
    refuse_to_overwrite(target)
    data = collect(path, seed=seed, text_column=text_column, label_column=label_column)
    images: dict[str, bytes] = {}
    for name, (_, plot) in PLOTS.items():
        png = plot(data)
        if png is not None:
            images[name] = png
    plots_folder = plots_folder_of(target)
    try:
        plots_folder.mkdir(parents=True, exist_ok=True)
        for name, png in images.items():
            write_bytes_atomic(plots_folder / f"{name}.png", png)
        page = render(data, images).encode()
        write_bytes_atomic(target, page)
    except OSError as exc:
        raise DataError(f"{target}: cannot write the report ({exc.strerror or exc})") from exc
    return {
        "report": str(target),
        "bytes": len(page),
        "plots": [str(plots_folder / f"{name}.png") for name in images],
        "selection": str(data.selection_folder),
        "rows_selected": int(data.selected.sum()),
        "map_points": 0 if data.projection is None else len(data.projection),
        "clusters_shown": len(data.views),
        "text": None if data.source is None else data.source.text_name,
        "label_column": None if data.source is None else data.source.label_column,
        "warnings": data.warnings,
    }


def default_target(folder: Path) -> Path:
    """report.html in a run folder; _report.html in a stage folder, whose other files Parquet
    readers must be able to skip (a leading `_`)."""
    return folder / (f"_{REPORT_NAME}" if (folder / MANIFEST_NAME).exists() else REPORT_NAME)


def plots_folder_of(target: Path) -> Path:
    """The PNGs' folder beside the report; beside a `_report.html`, a folder that Parquet
    readers and `datasets` skip (`__NAME__`: `datasets` would take a folder of PNGs for
    images)."""
    hidden = target.name.startswith("_")
    return target.parent / (f"__{PLOTS_FOLDER}__" if hidden else PLOTS_FOLDER)


def refuse_to_overwrite(target: Path) -> None:
    """Write only where nothing is, or over a report this command wrote (and its plots):
    never over a part file, an input or any other file of the user's."""
    if target.is_dir():
        raise UsageError(f"{target}: is a folder; give --output a file name, e.g. report.html")
    if target.exists() and not _is_report(target):
        raise UsageError(f"{target}: exists and is not a dataselect report; choose another "
                         "--output")  # fmt: skip
    plots = plots_folder_of(target)
    ours = {f"{name}.png" for name in PLOTS}
    if plots.exists() and (not plots.is_dir() or any(p.name not in ours for p in plots.iterdir())):
        raise UsageError(f"{plots}: exists and holds files that are not this report's plots; "
                         "choose another --output")  # fmt: skip


def _is_report(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(b"<!DOCTYPE html>") and b"<title>dataselect report: " in head


def render(data: ReportData, images: dict[str, bytes]) -> str:
    sel = data.selection
    title = f"dataselect report: {data.selection_folder}"
    blocks = {
        "map-section": ("map", map_section(data)),
        "clusters": ("clusters", clusters_section(data)),
        "empty": ("empty clusters", empty_section(data)),
        "labels": ("labels", labels_section(data)),
        "duplicates": ("duplicates", dedup_section(data)),
    }
    shown = {name: png for name, png in images.items() if name not in IN_THE_MAP}
    nav = [f'<a href="#{anchor}">{label}</a>' for anchor, (label, html_) in blocks.items()
           if html_]  # fmt: skip
    nav += ['<a href="#plots">plots</a>', '<a href="#stages">stages</a>']
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>Strategy <code>{_e(sel.get('strategy'))}</code>: "
        f"{int(data.selected.sum()):,} of {len(data.selected):,} rows selected "
        f"(budget {_e(sel.get('params', {}).get('budget'))}); the selection was finished "
        f"at {_e(data.stages[-1].manifest.finished)}.</p>",
        f"<nav>{' '.join(nav)}</nav>",
        *(f'<p class="warning">{_e(w)}</p>' for w in data.warnings),
        "<h2>Diversity</h2>",
        _table(["metric", "selection", "corpus"], _diversity_rows(sel)),
        *(html_ for _, html_ in blocks.values() if html_),
        '<h2 id="plots">Plots</h2>',
    ]
    for name, png in shown.items():
        caption = PLOTS[name][0]
        uri = "data:image/png;base64," + base64.b64encode(png).decode()
        parts += [
            f"<h3>{_e(caption)}</h3>",
            f'<figure><img id="plot-{name}" src="{uri}" width="{WIDTH_PX}" '
            f'height="{HEIGHT_PX}" alt="{_e(caption)}">',
            f"<figcaption>{_e(_caption(name, data))}</figcaption></figure>",
        ]
    if "round_history" in sel:
        parts += ['<h2 id="rounds">Rounds</h2>',
                  _table(["round", "rows", "feedback"], _round_rows(sel))]  # fmt: skip
    parts += ['<h2 id="stages">Stages</h2>', _stage_table(data)]
    parts += [f"<script>{MAP_SCRIPT}{SORT_SCRIPT}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _stage_table(data: ReportData) -> str:
    rows = []
    for s in data.stages:
        rows.append(
            f"<tr><td>{_e(s.name)}</td>"
            f'<td title="{_e(s.folder)}">{_e(s.folder.name)}</td>'
            f"<td>{_e(s.description['status'])}</td>"
            f'<td class="num">{s.manifest.rows:,}</td>'
            f'<td class="num">{len(s.manifest.shards):,}</td>'
            f'<td class="num">{s.wall_seconds:,.1f}</td>'
            f'<td class="num">{s.shard_seconds:,.1f}</td>'
            f'<td class="params">{_e(_params(s.manifest.params))}</td></tr>'
        )
    header = "".join(f"<th>{h}</th>" for h in ("stage", "folder", "status", "rows", "shards",
                                              "wall s", "shard s", "parameters"))  # fmt: skip
    return (f'<div class="scroll"><table id="stage-table"><thead><tr>{header}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")  # fmt: skip


def _diversity_rows(sel: dict[str, Any]) -> list[list[str]]:
    rows = []
    for q, label in (
        ("q1", "Vendi score, q = 1"),
        ("q2", "Vendi score, q = 2"),
        ("qinf", "Vendi score, q = inf"),
    ):
        mine = sel.get("vendi_selected", {}).get(q)
        corpus = sel.get("vendi_corpus", {}).get(q)
        if mine is not None:
            rows.append([label, f"{mine:,.2f}", "" if corpus is None else f"{corpus:,.2f}"])
    if "cluster_coverage" in sel:
        rows.append(["cluster coverage", f"{sel['cluster_coverage']:.3f}", "1.000"])
    if "cluster_entropy" in sel:
        rows.append(
            [
                "cluster entropy (nats)",
                f"{sel['cluster_entropy']:.3f}",
                f"{sel.get('corpus_cluster_entropy', float('nan')):.3f}",
            ]
        )
    return rows


def _round_rows(sel: dict[str, Any]) -> list[list[str]]:
    out = []
    for entry in sel["round_history"]:
        feedback = entry.get("feedback", {})
        text = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in feedback.items()
        )
        out.append([str(entry["round"]), f"{entry['budget']:,}", text or "(none yet)"])
    return out


def _caption(name: str, data: ReportData) -> str:
    captions = {
        "cluster_sizes": "How many rows each k-means cluster holds (from clusters.parquet).",
        "projection": "A keyed sample of the corpus (grey) and of the selected rows (red), "
        "projected by PCA fitted on the corpus sample.",
        "scores": "Density of (up to four of) the per-row columns of the sample stage's input "
        "over all rows "
        "(grey) and over the selected rows (red line).",
        "cluster_shares": "Each point is a cluster: above the line, the selection takes more "
        "than its size's share; on the x axis, clusters left out.",
        "adaptive": "Iterative: each cluster's weight when a round was drawn (the weights "
        "start equal). Bandit: rows admitted as the pulls go, and each arm's mean reward.",
        "timings": "Wall-clock seconds of the run that completed each stage (fits included), "
        "as `dataselect inspect` gives them, and its rows.",
    }
    return captions[name]


def _params(params: dict[str, Any]) -> str:
    shown = {k: v for k, v in sorted(params.items()) if v not in (None, "", [], ())}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{_num(c)}>{_e(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num(cell: str) -> str:
    return ' class="num"' if cell.replace(",", "").replace(".", "").isdigit() else ""
