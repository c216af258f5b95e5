"""The report's interactive parts: a 2-D map of the corpus (hover shows a row's text) and
sortable tables. Plain JavaScript inside the page, data as JSON inside the page: no library,
no CDN, no request, so the page works offline and stays one file.

Texts reach the page only as JSON inside a ``<script type="application/json">`` (``<``,
``>`` and ``&`` escaped, so no text can close the element) and the tooltip shows them as
``textContent``, never as HTML.
"""

from __future__ import annotations

import json

import numpy as np

from dataselect.report.collect import ReportData

MAP_CHARS = 160  # of each text in the map's tooltips (the page's size grows with them)
MAP_WIDTH, MAP_HEIGHT = 900, 560  # CSS pixels


def map_payload(data: ReportData) -> dict[str, object] | None:
    """The map's points: coordinates scaled to [0, 1] (4 decimals), selected or not, cluster,
    id and the start of the text."""
    if data.projection is None or data.projection_positions is None:
        return None
    assert data.projection_selected is not None
    xy = data.projection
    low, span = xy.min(axis=0), np.ptp(xy, axis=0)
    scaled = np.round((xy - low) / np.where(span > 0, span, 1.0), 4)
    positions = data.projection_positions.tolist()
    ids = data.ids.take(data.projection_positions).to_pylist() if data.ids is not None else []
    cluster = data.cluster[data.projection_positions].tolist() if data.cluster is not None \
        else [-1] * len(positions)  # fmt: skip
    return {
        "x": scaled[:, 0].tolist(),
        "y": scaled[:, 1].tolist(),
        "selected": data.projection_selected.astype(int).tolist(),
        "cluster": cluster,
        "id": [str(i) for i in ids],
        "text": [shorten(data.texts.get(p, ""), MAP_CHARS) for p in positions],
    }


def json_script(element_id: str, payload: object) -> str:
    """``payload`` as a JSON data block no text inside it can break out of."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def shorten(text: str, chars: int) -> str:
    """One line (whitespace runs folded) of at most ``chars`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "\u2026"


MAP_SCRIPT = """
(function () {
  const block = document.getElementById("map-data");
  const canvas = document.getElementById("map");
  if (!block || !canvas) return;
  const data = JSON.parse(block.textContent);
  const tip = document.getElementById("map-tip");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, PAD = 12, n = data.x.length;
  const px = (i) => PAD + data.x[i] * (W - 2 * PAD);
  const py = (i) => H - PAD - data.y[i] * (H - 2 * PAD);
  const order = [];
  for (let i = 0; i < n; i++) if (!data.selected[i]) order.push(i);
  for (let i = 0; i < n; i++) if (data.selected[i]) order.push(i);
  function draw(hover) {
    ctx.clearRect(0, 0, W, H);
    for (const i of order) {
      ctx.beginPath();
      ctx.fillStyle = data.selected[i] ? "rgba(214,39,40,0.85)" : "rgba(127,127,127,0.35)";
      ctx.arc(px(i), py(i), data.selected[i] ? 3 : 2, 0, 2 * Math.PI);
      ctx.fill();
    }
    if (hover !== null) {
      ctx.beginPath();
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1.5;
      ctx.arc(px(hover), py(hover), 6, 0, 2 * Math.PI);
      ctx.stroke();
    }
  }
  function area() {  /* the drawing area: inside the canvas's border */
    const box = canvas.getBoundingClientRect();
    return { left: box.left + canvas.clientLeft, top: box.top + canvas.clientTop,
             width: canvas.clientWidth, height: canvas.clientHeight,
             dx: canvas.clientLeft, dy: canvas.clientTop };
  }
  function nearest(mx, my) {
    let best = null, bestD = 64;  /* within 8 canvas pixels */
    for (let i = 0; i < n; i++) {
      const dx = px(i) - mx, dy = py(i) - my, d = dx * dx + dy * dy;
      if (d < bestD || (d === bestD && data.selected[i])) { best = i; bestD = d; }
    }
    return best;
  }
  canvas.addEventListener("mousemove", (event) => {
    const box = area();
    const mx = (event.clientX - box.left) * W / box.width;
    const my = (event.clientY - box.top) * H / box.height;
    const i = nearest(mx, my);
    draw(i);
    if (i === null) { tip.hidden = true; return; }
    const head = (data.selected[i] ? "selected" : "not selected") +
      (data.cluster[i] >= 0 ? " \\u00b7 cluster " + data.cluster[i] : "") +
      " \\u00b7 id " + data.id[i];
    tip.textContent = head + (data.text[i] ? "\\n" + data.text[i] : "");
    tip.hidden = false;
    const left = Math.min(event.clientX - box.left + 14, box.width - tip.offsetWidth - 4);
    tip.style.left = Math.max(0, left) + box.dx + "px";
    tip.style.top = (event.clientY - box.top + 14) + box.dy + "px";
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; draw(null); });
  draw(null);
  /* where point i is drawn, in CSS pixels from the canvas's outer top left (for tests) */
  window.reportMap = {
    count: n,
    pixel: (i) => {
      const box = area();
      return [box.dx + px(i) * box.width / W, box.dy + py(i) * box.height / H];
    },
  };
})();
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("th").forEach((th, column) => {
    th.title = "sort";
    th.addEventListener("click", () => {
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const down = th.dataset.order !== "down";
      table.querySelectorAll("th").forEach((h) => delete h.dataset.order);
      th.dataset.order = down ? "down" : "up";
      const value = (row) => {
        const cell = row.cells[column];
        return cell.dataset.v !== undefined ? Number(cell.dataset.v) : cell.textContent;
      };
      rows.sort((a, b) => {
        const x = value(a), y = value(b);
        const order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return down ? -order : order;
      });
      rows.forEach((row) => body.appendChild(row));
    });
  });
});
"""
