"""The report's sections that show the data itself: the map, the clusters (table and cards),
the clusters left empty, the labels and the duplicates. Each returns HTML (every text
escaped) or "" when the selection has nothing for it."""

from __future__ import annotations

import html
from collections.abc import Sequence

from dataselect.report.clusters import ClusterView
from dataselect.report.collect import ReportData
from dataselect.report.interactive import (
    MAP_HEIGHT,
    MAP_WIDTH,
    json_script,
    map_payload,
    shorten,
)

CARD_CHARS = 280  # of each text on a card
PAIR_CHARS = 200  # of each text of a duplicate pair
LABELS_SHOWN = 40
EMPTY_LISTED = 100  # empty clusters listed with their terms; the rest by id


def map_section(data: ReportData) -> str:
    payload = map_payload(data)
    if payload is None:
        return ""
    assert data.projection_selected is not None
    shown, chosen = len(data.projection_selected), int(data.projection_selected.sum())
    variance = data.projection_variance or (0.0, 0.0)
    return "\n".join([
        '<h2 id="map-section">The corpus in embedding space</h2>',
        '<div class="map-box">',
        f'<canvas id="map" width="{MAP_WIDTH}" height="{MAP_HEIGHT}" '
        'aria-label="2-D map of the corpus; hover a point to read its text"></canvas>',
        '<div id="map-tip" class="tip" hidden></div></div>',
        f'<p class="caption"><span class="dot grey"></span> corpus (a keyed sample of '
        f'{shown - chosen:,} rows, more where selected rows are shown) '
        f'<span class="dot red"></span> selected ({chosen:,} of {int(data.selected.sum()):,} '
        f'shown). PCA fitted on the corpus sample: axes hold {variance[0]:.0%} and '
        f"{variance[1]:.0%} of the variance. Hover a point to read its text.</p>",
        json_script("map-data", payload),
    ])  # fmt: skip


def clusters_section(data: ReportData) -> str:
    if not data.views:
        return ""
    total, chosen = len(data.selected), max(int(data.selected.sum()), 1)
    carded = {v.cluster for v in data.views if v.card}
    rows = []
    for v in data.views:
        name = f'<a href="#cluster-{v.cluster}">{v.cluster}</a>' if v.cluster in carded \
            else str(v.cluster)  # fmt: skip
        rows.append(
            "<tr>"
            f'<td data-v="{v.cluster}">{name}</td>'
            f'<td class="num" data-v="{v.rows}">{v.rows:,}</td>'
            f'<td class="num" data-v="{v.rows / total:.6f}">{v.rows / total:.1%}</td>'
            f'<td class="num" data-v="{v.selected}">{v.selected:,}</td>'
            f'<td class="num" data-v="{v.selected / chosen:.6f}">{v.selected / chosen:.1%}</td>'
            f"<td>{_e(', '.join(v.terms))}</td></tr>"
        )
    listed = (f"the {len(data.views):,} largest of {data.clusters:,}"
              if len(data.views) < data.clusters else f"all {data.clusters:,}")  # fmt: skip
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "cluster",
            "rows",
            "share of corpus",
            "selected",
            "share of selection",
            "top terms",
        )  # fmt: skip
    )
    text_note = (f"Texts from the source's {_e(data.source.text_name)}; top terms by "
                 "class-based TF-IDF over a keyed sample of each cluster's texts."
                 if data.source is not None else "")  # fmt: skip
    cards = [_card(v, total, chosen, data) for v in data.views if v.card]
    return "\n".join([
        '<h2 id="clusters">Clusters</h2>',
        f"<p>{listed} clusters; click a column to sort, a cluster to see its card. "
        f"{text_note}</p>",
        f'<div class="scroll"><table class="sortable" id="cluster-table"><thead><tr>{header}'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>",
        f"<h3>The {len(cards):,} largest clusters</h3>" if len(cards) < len(data.views)
        else "",
        f'<div class="cards">{"".join(cards)}</div>',
    ])  # fmt: skip


def _card(view: ClusterView, total: int, chosen: int, data: ReportData) -> str:
    parts = [
        f'<section class="card" id="cluster-{view.cluster}">',
        f"<h3>Cluster {view.cluster}</h3>",
        f'<p class="facts">{view.rows:,} rows ({view.rows / total:.1%} of the corpus) · '
        f"{view.selected:,} selected ({view.selected / chosen:.1%} of the selection)</p>",
        f'<p class="terms">{" ".join(f"<b>{_e(t)}</b>" for t in view.terms) or "(no terms)"}</p>',
        _examples("Nearest the centroid", view.nearest, data),
        _examples("Selected", view.chosen, data)
        if view.selected
        else '<h4>Selected</h4><p class="muted">none</p>',
    ]
    if view.rejected and (data.score_column or _adaptive(data)):
        by = f", lowest {data.score_column} first" if data.score_column else ""
        parts.append(_examples(f"Not selected{by}", view.rejected, data, score=True))
    parts.append("</section>")
    return "".join(parts)


def _examples(title: str, positions: Sequence[int], data: ReportData, score: bool = False) -> str:
    items = []
    for p in positions:
        value = ""
        if score and data.score_column and data.score_column in data.scores:
            value = f'<span class="score">{data.scores[data.score_column][p]:.3g}</span> '
        text = data.texts.get(p)
        shown = _e(shorten(text, CARD_CHARS)) if text else f"<i>id {_e(_id(data, p))}</i>"
        items.append(f"<li>{value}{shown}</li>")
    return f"<h4>{_e(title)}</h4><ol>{''.join(items)}</ol>"


def empty_section(data: ReportData) -> str:
    if not data.clusters:
        return ""
    if not data.empty:
        return ('<h2 id="empty">Clusters with no row selected</h2>'
                f"<p>None: every one of the {data.clusters:,} clusters that holds rows has a "
                "selected row.</p>")  # fmt: skip
    terms = {v.cluster: v.terms for v in data.views}
    sizes = {v.cluster: v.rows for v in data.views}
    listed = data.empty[:EMPTY_LISTED]
    rows = "".join(
        f'<tr><td data-v="{c}">{c}</td><td class="num" data-v="{sizes.get(c, 0)}">'
        f"{sizes[c]:,}</td><td>{_e(', '.join(terms.get(c, [])))}</td></tr>"
        if c in sizes else f'<tr><td data-v="{c}">{c}</td><td></td><td></td></tr>'
        for c in listed
    )  # fmt: skip
    rest = data.empty[EMPTY_LISTED:]
    more = f"<p>And {len(rest):,} more: {', '.join(map(str, rest))}.</p>" if rest else ""
    return "\n".join([
        '<h2 id="empty">Clusters with no row selected</h2>',
        f"<p>{len(data.empty):,} of {data.clusters:,} clusters have rows but none selected"
        f"{', largest first' if len(data.empty) > 1 else ''}.</p>",
        '<div class="scroll"><table class="sortable" id="empty-table"><thead><tr>'
        "<th>cluster</th><th>rows</th><th>top terms</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>",
        more,
    ])  # fmt: skip


def labels_section(data: ReportData) -> str:
    facts, source = data.labels, data.source
    if facts is None or source is None or not facts.labels_corpus:
        return ""
    corpus, chosen = facts.labels_corpus, facts.labels_selected
    n, m = sum(corpus.values()), max(sum(chosen.values()), 1)
    ordered = sorted(corpus, key=lambda label: (-corpus[label], label))
    top = max(max(corpus.values()) / n, max(chosen.values(), default=0) / m)
    rows = []
    for label in ordered[:LABELS_SHOWN]:
        a, b = corpus[label] / n, chosen[label] / m
        rows.append(
            f"<tr><td>{_e(label)}</td>"
            f'<td class="num" data-v="{corpus[label]}">{corpus[label]:,}</td>'
            f'<td data-v="{a:.6f}">{_bar(a, top, "grey")}</td>'
            f'<td class="num" data-v="{chosen[label]}">{chosen[label]:,}</td>'
            f'<td data-v="{b:.6f}">{_bar(b, top, "red")}</td></tr>'
        )
    rest = ordered[LABELS_SHOWN:]
    if rest:
        a, b = sum(corpus[x] for x in rest), sum(chosen[x] for x in rest)
        rows.append(f"<tr><td>({len(rest):,} other labels)</td><td class=\"num\">{a:,}</td>"
                    f"<td>{_bar(a / n, top, 'grey')}</td><td class=\"num\">{b:,}</td>"
                    f"<td>{_bar(b / m, top, 'red')}</td></tr>")  # fmt: skip
    missing = sum(1 for label in corpus if not chosen[label])
    return "\n".join([
        '<h2 id="labels">Labels: corpus vs selection</h2>',
        f"<p>Column '{_e(source.label_column)}': {len(corpus):,} labels, "
        f"{missing:,} of them with no selected row. The selection does not read it unless "
        "a strategy was told to (--label-column, --stratify-column).</p>",
        '<div class="scroll"><table class="sortable" id="label-table"><thead><tr>'
        "<th>label</th><th>corpus rows</th><th>share of corpus</th><th>selected</th>"
        f"<th>share of selection</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>",
    ])  # fmt: skip


def dedup_section(data: ReportData) -> str:
    dedup = data.dedup
    if dedup is None:
        return ""
    counts = ", ".join(f"{method} {rows:,}" for method, rows in dedup.dropped.items())
    pairs = "".join(
        f'<tr><td>{_e(p.method)}</td><td class="num">{p.similarity:.3f}</td>'
        f"<td>{_pair_text(data, p.dropped)}</td><td>{_pair_text(data, p.kept)}</td></tr>"
        for p in dedup.pairs
    )
    table = ('<div class="scroll"><table id="dedup-pairs"><thead><tr><th>method</th>'
             "<th>similarity</th><th>dropped</th><th>kept (the row it duplicates)</th></tr>"
             f"</thead><tbody>{pairs}</tbody></table></div>" if pairs else "")  # fmt: skip
    return "\n".join([
        '<h2 id="duplicates">Duplicates</h2>',
        f"<p>The dedup stage ({_e(dedup.folder)}) kept {dedup.rows_kept:,} rows and dropped "
        f"{sum(dedup.dropped.values()):,}: {_e(counts) or 'none'}."
        f"{' Examples, a keyed sample per method:' if pairs else ''}</p>",
        table,
    ])  # fmt: skip


def _pair_text(data: ReportData, position: int) -> str:
    text = data.texts.get(position)
    return _e(shorten(text, PAIR_CHARS)) if text else f"<i>id {_e(_id(data, position))}</i>"


def _adaptive(data: ReportData) -> bool:
    return data.selection.get("strategy") in ("iterative", "bandit")


def _bar(share: float, top: float, colour: str) -> str:
    width = 70.0 * share / top if top > 0 else 0.0  # room for the figure beside it
    return (f'<span class="bar {colour}" style="width:{width:.1f}%"></span>'
            f'<span class="share">{share:.1%}</span>')  # fmt: skip


def _id(data: ReportData, position: int) -> str:
    return "" if data.ids is None else str(data.ids[position].as_py())


def escaped(value: object) -> str:
    """``value`` as HTML text (None: empty)."""
    return html.escape("" if value is None else str(value))


_e = escaped
