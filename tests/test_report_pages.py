"""The report a person reads: texts, topics, cards, labels, duplicates and the map, checked in
the HTML and, where Chromium is installed, in a real browser (playwright)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import WORDS, Cli

from dataselect.report.clusters import cluster_views, empty_clusters
from dataselect.report.interactive import json_script
from dataselect.report.plots import histogram_bins
from dataselect.report.topics import top_terms

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("DATASELECT_TEST_ARTIFACTS", REPO / "test-artifacts"))
TOPICS = [list(t) for t in np.array_split(np.array(WORDS), 3)]
NASTY = "</script><script>window.pwned = 1</script> <b>bold</b> & co"


# -- units -----------------------------------------------------------------------------------
def test_top_terms_weigh_what_marks_a_cluster() -> None:
    texts = {
        0: ["rain storm the common", "rain wind common"],
        1: ["bank card common", "bank money common", "bank fee"],
        2: ["", "123 456"],  # no word: no terms
    }
    terms = top_terms(texts, terms=3)
    assert terms[0][0] == "rain" and terms[1][0] == "bank"
    assert "common" not in terms[0][:2] and terms[2] == []
    # the formula by hand for cluster 0: tf / words * log(1 + mean words / frequency)
    words = {0: 5.0, 1: 7.0, 2: 0.0}  # ("the" is a stop word)
    mean = sum(words.values()) / 3
    rain = 2 / words[0] * np.log1p(mean / 2)
    common = 2 / words[0] * np.log1p(mean / 4)
    storm = 1 / words[0] * np.log1p(mean / 1)
    assert rain > storm > common  # rain first, then the one-off words before "common"
    assert terms[0] == ["rain", "storm", "wind"]  # storm and wind tie: alphabetical


def test_top_terms_of_clusters_without_words() -> None:
    assert top_terms({3: ["1 2 3"], 4: []}) == {3: [], 4: []}


def test_cluster_views_pick_examples_by_their_columns() -> None:
    cluster = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2])
    selected = np.array([1, 0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    distance = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.4, 0.2, 0.6, 0.0])
    score = np.array([0.9, 0.8, 0.1, 0.5, np.nan, 0.3, 0.2, 0.1, 1.0])
    kept = np.array([1, 1, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
    keys = np.arange(9, dtype=np.uint64)[::-1].copy()
    views = cluster_views(cluster, selected, keys, distance, score, kept)
    assert [(v.cluster, v.rows, v.selected) for v in views] == [(0, 5, 2), (1, 3, 0), (2, 1, 0)]
    first = views[0]
    assert first.nearest == [1, 4, 3]  # by distance
    assert first.chosen == [3, 0]  # the selected ones, by key (descending positions here)
    assert first.rejected == [1, 4]  # row 2 was dropped as a duplicate; no score (NaN) last
    assert views[1].rejected == [7, 6, 5]
    assert empty_clusters(cluster, selected) == [1, 2]  # largest first


def test_a_constant_score_is_drawn_centred_on_its_value() -> None:
    bins, constant = histogram_bins(np.ones(50))
    assert constant and bins[0] < 1.0 < bins[-1] and bins[0] + bins[-1] == pytest.approx(2.0)
    bins, constant = histogram_bins(np.linspace(0, 1, 101))
    assert not constant and bins[0] == pytest.approx(0.005) and bins[-1] == pytest.approx(0.995)


def test_json_script_cannot_be_broken_out_of() -> None:
    block = json_script("d", {"text": [NASTY]})
    assert block.count("</script>") == 1 and "<b>" not in block and "&" not in block[30:-9]
    inner = block[block.index(">") + 1 : -len("</script>")]
    assert json.loads(inner) == {"text": [NASTY]}


# -- pages -----------------------------------------------------------------------------------
def text_corpus(folder: Path, rows: int = 240, shards: int = 3) -> Path:
    """Three topics of distinct words (label = topic), a 'quality' column, a few exact
    duplicates, and one text that tries to break out of the page."""
    rng = np.random.default_rng(3)
    topic = np.arange(rows) % 3
    texts = [" ".join(rng.choice(TOPICS[t], size=8)) + f" note{i}" for i, t in enumerate(topic)]
    texts[7] = texts[4]  # an exact duplicate (same topic: 7 % 3 == 4 % 3)
    texts[10] = NASTY + " " + texts[10]
    quality = rng.random(rows)
    folder.mkdir(parents=True)
    for s, part in enumerate(np.array_split(np.arange(rows), shards)):
        table = pa.table({
            "id": [f"t{i:04d}" for i in part],
            "text": [texts[i] for i in part],
            "label": [f"topic-{topic[i]}" for i in part],
            "quality": quality[part],
        })  # fmt: skip
        pq.write_table(table, folder / f"part-{s}.parquet")
    return folder


SAMPLES = {
    "kmeans": ("dedup", "--strategy", "kmeans-closest", "--budget", 24),
    "score": ("dedup", "--strategy", "top-k", "--score-column", "score_quality", "--budget", 24),
    "iterative": ("dedup", "--strategy", "iterative", "--feedback", "probe", "--label-column",
                  "label", "--budget", 30),
    "bandit": ("dedup", "--strategy", "bandit", "--score-column", "score_quality",
               "--budget", 30),
}  # fmt: skip


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """embed (hashing) -> cluster -> score -> dedup, and one selection per strategy kind."""
    root = tmp_path_factory.mktemp("text-runs")
    cli = Cli()
    corpus = text_corpus(root / "corpus")
    steps = [
        ("embed", corpus, root / "embed", "--embedder", "hashing", "--dim", 64),
        ("cluster", root / "embed", root / "cluster", "--k", 6),
        ("score", root / "cluster", root / "score", "--scorer", "column:quality"),
        ("dedup", root / "score", root / "dedup", "--method", "exact"),
    ]
    steps += [("sample", root / upstream, root / f"select-{name}", *args)
              for name, (upstream, *args) in SAMPLES.items()]  # fmt: skip
    for step in steps:
        result = cli(*step, "--quiet")
        assert result.exit_code == 0, (step, result.output)
    return root


def report_of(text_runs: Path, name: str, *args: object) -> tuple[str, dict]:
    target = text_runs / f"{name}.html"
    result = Cli()("report", text_runs / f"select-{name}", "--output", target, "--json", *args)
    assert result.exit_code == 0, result.output
    return target.read_text(), json.loads(result.stdout)


def corpus_table(text_runs: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted((text_runs / "corpus").glob("*")))


def cluster_rows(text_runs: Path) -> pa.Table:
    parts = sorted((text_runs / "cluster").glob("part-*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in parts)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_report_shows_texts_topics_labels_and_duplicates(text_runs: Path, name: str) -> None:
    page, summary = report_of(text_runs, name)
    for anchor in ('id="map"', 'id="cluster-table"', 'class="card"', 'id="empty"',
                   'id="label-table"', 'id="dedup-pairs"', 'id="stage-table"'):  # fmt: skip
        assert anchor in page, (name, anchor)
    assert summary["text"] == "column 'text'" and summary["label_column"] == "label"
    assert summary["clusters_shown"] == 6 and summary["bytes"] == len(page.encode())
    corpus, clusters = corpus_table(text_runs), cluster_rows(text_runs)
    texts = corpus.column("text").to_pylist()
    # the largest cluster's card: its nearest text, and terms from its topic
    sizes = np.bincount(clusters.column("cluster").to_numpy(), minlength=6)
    largest = int(np.argmax(sizes))
    card = page[page.index(f'id="cluster-{largest}"') :]
    card = card[: card.index("</section>")]
    in_cluster = np.flatnonzero(clusters.column("cluster").to_numpy() == largest)
    distance = clusters.column("distance").to_numpy()[in_cluster]
    nearest = texts[int(in_cluster[np.argmin(distance)])]
    assert nearest.split(" note")[0] in card
    terms = re.findall(r"<b>([a-z]+)</b>", card)
    assert len(terms) == 6
    topic = int(np.bincount(np.arange(len(texts))[in_cluster] % 3).argmax())
    assert terms[0] in TOPICS[topic], (terms, TOPICS[topic])
    # labels: corpus counts by hand
    labels = page[page.index('id="label-table"') :]
    assert re.search(r"<td>topic-0</td><td class=\"num\" data-v=\"80\">80</td>", labels)
    # the exact duplicate pair, with both texts
    pairs = page[page.index('id="dedup-pairs"') :]
    assert "exact" in pairs and pairs.count(texts[4].split(" note")[0]) == 2
    # texts are escaped: the nasty one never becomes markup
    assert "<script>window.pwned" not in page and "<b>bold</b>" not in page
    if name in ("score", "bandit"):
        assert "Not selected, lowest score_quality first" in page


def test_report_is_the_same_bytes_and_bounded(text_runs: Path) -> None:
    first, summary = report_of(text_runs, "bandit")
    again, _ = report_of(text_runs, "bandit")
    assert first == again
    payload = json.loads(re.search(r'id="map-data">(.*?)</script>', first).group(1))  # type: ignore[union-attr]
    assert len(payload["x"]) == summary["map_points"] == 240
    assert max(len(t) for t in payload["text"]) <= 160
    assert summary["bytes"] < 600_000  # 240 rows; the bounds: tests/test_report_pages.py


def test_report_names_a_missing_label_column(text_runs: Path) -> None:
    result = Cli()("report", text_runs / "select-kmeans", "--output", text_runs / "x.html",
                   "--label-column", "nope")  # fmt: skip
    assert result.exit_code == 2 and "--label-column nope" in result.stderr
    result = Cli()("report", text_runs / "select-kmeans", "--output", text_runs / "x.html",
                   "--text-column", "nope")  # fmt: skip
    assert result.exit_code == 1 and "nope" in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
@pytest.mark.parametrize("name", list(SAMPLES))
def test_report_in_chromium_shows_sections_and_a_tooltip(text_runs: Path, name: str) -> None:
    """Each section is drawn, hovering a point shows its text, nothing leaves the page; a
    screenshot of each report is kept in test-artifacts/ (DATASELECT_TEST_ARTIFACTS)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra)")
    page_path = text_runs / f"{name}.html"
    if not page_path.exists():
        report_of(text_runs, name)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        requests: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(page_path.as_uri())
        for selector in ("#map", "#cluster-table", ".card", "#empty", "#label-table",
                         "#dedup-pairs", "#stage-table", "#plot-timings"):  # fmt: skip
            assert page.locator(selector).first.is_visible(), (name, selector)
        # the page fits a laptop's width
        assert page.evaluate("document.documentElement.scrollWidth") <= 1366
        # hover a point: the tooltip shows its text
        data = json.loads(page.locator("#map-data").text_content() or "")
        i = int(np.argmax([len(t) for t in data["text"]]))
        canvas = page.locator("#map")
        canvas.scroll_into_view_if_needed()
        box = canvas.bounding_box()
        assert box is not None
        x, y = page.evaluate(f"window.reportMap.pixel({i})")
        page.mouse.move(box["x"] + x, box["y"] + y)
        tip = page.locator("#map-tip")
        assert tip.is_visible()
        shown = tip.text_content() or ""
        assert data["text"][i] in shown or data["id"][i] in shown  # (or a point drawn over it)
        page.mouse.move(1, 1)
        assert not tip.is_visible()
        # the sortable table sorts
        page.locator("#cluster-table th").nth(1).click()
        sizes = [int(v) for v in page.locator("#cluster-table tbody td:nth-child(2)")
                 .evaluate_all("cells => cells.map(c => c.dataset.v)")]  # fmt: skip
        assert sizes == sorted(sizes, reverse=True)
        page.locator("#cluster-table th").nth(1).click()
        sizes = [int(v) for v in page.locator("#cluster-table tbody td:nth-child(2)")
                 .evaluate_all("cells => cells.map(c => c.dataset.v)")]  # fmt: skip
        assert sizes == sorted(sizes)
        assert page.evaluate("window.pwned") is None  # the nasty text stayed text
        page.screenshot(path=str(ARTIFACTS / f"report-{name}.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests


def test_report_honours_its_bounds(text_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer map points, cards and table rows than the corpus has: the page keeps to them."""
    from dataselect.report import clusters, collect
    from dataselect.report.page import make_report

    monkeypatch.setattr(collect, "PROJECTION_ROWS", 50)
    monkeypatch.setattr(collect, "PROJECTION_SELECTED", 10)
    monkeypatch.setattr(clusters, "CARD_CLUSTERS", 2)
    monkeypatch.setattr(clusters, "TABLE_CLUSTERS", 4)
    target = text_runs / "bounded.html"
    summary = make_report(text_runs / "select-kmeans", target)
    page = target.read_text()
    payload = json.loads(re.search(r'id="map-data">(.*?)</script>', page).group(1))  # type: ignore[union-attr]
    assert 50 <= summary["map_points"] == len(payload["x"]) <= 60
    assert sum(payload["selected"]) >= 10
    assert page.count('class="card"') == 2 and summary["clusters_shown"] == 4
    assert "the 4 largest of 6 clusters" in page


def test_a_report_without_its_source_data_says_so(tmp_path: Path) -> None:
    """The raw data moved after embedding: the report still stands on the stage folders,
    and says on the page and on stderr why no text is shown; asking for a text column by
    name is then an error."""
    cli = Cli()
    corpus = text_corpus(tmp_path / "corpus", rows=60)
    steps = [("embed", corpus, tmp_path / "embed", "--embedder", "hashing", "--dim", 32),
             ("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", 3),
             ("sample", tmp_path / "cluster", tmp_path / "sel", "--budget", 6)]  # fmt: skip
    for step in steps:
        assert cli(*step, "-q").exit_code == 0
    corpus.rename(tmp_path / "moved")
    result = cli("report", tmp_path / "sel", "--output", tmp_path / "r.html", "--json")
    assert result.exit_code == 0, result.output
    (warning,) = json.loads(result.stdout)["warnings"]
    assert "texts and labels are not shown" in warning and "dataselect: warning:" in result.stderr
    page = (tmp_path / "r.html").read_text()
    assert 'class="warning"' in page and 'id="cluster-table"' in page and 'id="map"' in page
    named = cli("report", tmp_path / "sel", "--output", tmp_path / "r.html", "--text-column",
                "text")  # fmt: skip
    assert named.exit_code == 1
