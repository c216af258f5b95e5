"""`dataselect report`, `inspect` and `eval`: what a user sees of a selection."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATASETS, needs_datasets, run_process
from test_adaptive import GROUPS, planted_corpus

from dataselect.engine.base import CRASH_AFTER_ENV
from dataselect.evaluation import probe_accuracy, random_rows
from dataselect.report.plots import HEIGHT_PX, WIDTH_PX

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def planted_run(tmp_path: Path, cli) -> Path:
    """A run folder (embed, cluster, score, sample) over the planted corpus."""
    corpus = planted_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    steps = [
        ("embed", corpus, run / "embed", "--vector-column", "embedding"),
        ("cluster", run / "embed", run / "cluster", "--k", GROUPS),
        ("score", run / "cluster", run / "score", "--scorer", "column:quality"),
        (
            "sample",
            run / "score",
            run / "sample",
            "--strategy",
            "iterative",
            "--feedback",
            "probe",
            "--label-column",
            "label",
            "--budget",
            150,
        ),
    ]
    for step in steps:
        result = cli(*step, "--quiet")
        assert result.exit_code == 0, result.output
    return run


def report_images(html: str) -> dict[str, bytes]:
    found = re.findall(r'<img id="plot-([a-z_]+)" src="data:image/png;base64,([^"]+)"', html)
    return {name: base64.b64decode(data) for name, data in found}


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_report_of_an_iterative_run_has_every_plot(planted_run: Path, cli) -> None:
    result = cli("report", planted_run, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    page = planted_run / "report.html"
    assert summary["report"] == str(page)
    html = page.read_text()
    images = report_images(html)
    # the projection is drawn interactively on the page (the map); its PNG is still written
    assert set(images) == {"cluster_sizes", "scores", "cluster_shares", "adaptive", "timings"}
    assert 'id="map"' in html and 'id="map-data"' in html
    for name, png in images.items():
        assert png_size(png) == (WIDTH_PX, HEIGHT_PX), name
        assert (planted_run / "report-plots" / f"{name}.png").read_bytes() == png
    assert png_size((planted_run / "report-plots" / "projection.png").read_bytes()) == (
        WIDTH_PX,
        HEIGHT_PX,
    )
    # self-contained: nothing fetched at view time
    assert not re.search(r'(src|href)="(?!data:|#)', html)  # data URIs and in-page links
    for stage in ("embed", "cluster", "score", "sample"):
        assert f"<td>{stage}</td>" in html
    assert "Vendi score, q = 1" in html and "Rounds" in html
    # the same selection gives the same report bytes
    first = page.read_bytes()
    assert cli("report", planted_run, "--quiet").exit_code == 0
    assert page.read_bytes() == first


def test_report_of_a_bandit_selection_and_an_output_path(planted_run: Path, tmp_path: Path, cli):
    out = tmp_path / "bandit"
    args = ("--strategy", "bandit", "--score-column", "score_quality", "--budget", 120)
    assert cli("sample", planted_run / "score", out, *args, "--quiet").exit_code == 0
    target = tmp_path / "elsewhere" / "bandit.html"
    result = cli("report", out, "--output", target, "--quiet")
    assert result.exit_code == 0, result.output
    images = report_images(target.read_text())
    assert "adaptive" in images and "timings" in images
    assert (tmp_path / "elsewhere" / "report-plots" / "adaptive.png").exists()
    assert not (out / "report.html").exists()


def test_report_refuses_a_selection_whose_clusters_changed(planted_run: Path, cli) -> None:
    again = cli(
        "cluster", planted_run / "embed", planted_run / "cluster", "--k", 9, "--overwrite", "-q"
    )
    assert again.exit_code == 0
    result = cli("report", planted_run)
    assert result.exit_code == 1 and "changed after" in result.stderr


def test_report_refuses_what_is_not_a_selection(planted_run: Path, tmp_path: Path, cli) -> None:
    wrong = cli("report", planted_run / "cluster")
    assert wrong.exit_code == 2 and "needs a selection" in wrong.stderr
    missing = cli("report", tmp_path / "nothing")
    assert missing.exit_code == 2 and "no such folder" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = cli("report", tmp_path / "empty")
    assert empty.exit_code == 1 and "no sample stage folder" in empty.stderr


def test_report_writes_only_over_its_own_report(planted_run: Path, tmp_path: Path, cli) -> None:
    """--output never replaces a part file, an input or any file of the user's."""
    part = planted_run / "sample" / "part-00000.parquet"
    notes = tmp_path / "notes.html"
    notes.write_text("<p>mine</p>")
    for target in (part, notes, planted_run / "embed"):
        before = target.read_bytes() if target.is_file() else None
        result = cli("report", planted_run, "--output", target)
        assert result.exit_code == 2, result.output
        assert "dataselect: error:" in result.stderr and str(target) in result.stderr
        assert before is None or target.read_bytes() == before
    first = cli("report", planted_run, "--output", tmp_path / "r.html", "-q")
    again = cli("report", planted_run, "--output", tmp_path / "r.html", "-q")
    assert first.exit_code == again.exit_code == 0, again.output  # its own: replaced


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(planted_run: Path, tmp_path: Path, cli) -> None:
    """Chromium draws every plot: a screenshot of each <img> has its size and is no blank."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (dev extra)")
    from PIL import Image

    assert cli("report", planted_run, "--quiet").exit_code == 0
    page_path = planted_run / "report.html"
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.as_uri())
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        images = page.locator("img")
        assert images.count() == 5
        for i in range(images.count()):
            image = images.nth(i)
            loaded = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
            assert loaded == [True, WIDTH_PX, HEIGHT_PX]
            box = image.bounding_box()
            assert box is not None and (box["width"], box["height"]) == (WIDTH_PX, HEIGHT_PX)
            shot = Image.open(io.BytesIO(image.screenshot())).convert("RGB")
            # the clip is rounded to whole pixels at a fractional page offset
            assert abs(shot.size[0] - WIDTH_PX) <= 1 and abs(shot.size[1] - HEIGHT_PX) <= 1
            pixels = np.asarray(shot).reshape(-1, 3)
            colours = len(np.unique(pixels, axis=0))
            non_white = float((pixels.min(axis=1) < 240).mean())
            # a blank image is one colour and no ink; a sparse bar chart (even shares per
            # cluster) inks about 3% of its pixels
            assert colours > 50 and non_white > 0.02, (i, colours, non_white)
        browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    assert Image.open(tmp_path / "report.png").size[1] > 5 * HEIGHT_PX


# -- inspect ---------------------------------------------------------------------------------
def test_inspect_tells_what_a_folder_holds(planted_run: Path, cli) -> None:
    result = cli("inspect", planted_run / "cluster")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "cluster stage" in out and "status:   complete" in out
    assert "rows 900" in out and "k=15" in out and "centroids.npy" in out
    assert "cluster (int32)" in out
    info = json.loads(cli("inspect", planted_run, "--json", "--verify").stdout)
    assert info["kind"] == "run"
    assert [s["stage"] for s in info["stages"]] == ["embed", "cluster", "score", "sample"]
    assert all(s["complete"] and s["verified"] for s in info["stages"])
    assert info["stages"][-1]["rows"] == 150


def test_inspect_reports_an_interrupted_and_a_damaged_stage(tmp_path: Path, cli) -> None:
    corpus = planted_corpus(tmp_path / "corpus")
    embed = tmp_path / "embed"
    args = ("embed", corpus, embed, "--vector-column", "embedding", "-q")
    assert run_process(*args, env={CRASH_AFTER_ENV: "1"}).returncode != 0
    info = json.loads(cli("inspect", embed, "--json").stdout)
    assert not info["complete"] and info["shards"] == 1
    assert info["status"].startswith("incomplete: 1 of 3 shards done")
    assert cli("embed", corpus, embed, "--vector-column", "embedding", "-q").exit_code == 0
    assert cli("inspect", embed).exit_code == 0
    with open(embed / "part-00000.parquet", "ab") as handle:  # the shard the columns come from
        handle.write(b"x")
    damaged = cli("inspect", embed)
    assert damaged.exit_code == 1 and "damaged: part-00000.parquet has" in damaged.stdout
    assert "embedding (fixed_size_list" in damaged.stdout  # read from the next shard
    (embed / "part-00002.parquet").unlink()
    assert "part-00002.parquet is missing" in cli("inspect", embed).stdout


def test_inspect_refuses_a_plain_folder(tmp_path: Path, cli) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    result = cli("inspect", tmp_path / "plain")
    assert result.exit_code == 1 and "not a dataselect stage or run folder" in result.stderr
    assert cli("inspect", tmp_path / "none").exit_code == 2


# -- eval ------------------------------------------------------------------------------------
def test_eval_scores_selections_against_random_and_all(planted_run: Path, tmp_path: Path, cli):
    test_corpus = planted_corpus(tmp_path / "test-corpus", draw=1)  # same groups, new rows
    test_embed = tmp_path / "test-embed"
    ok = cli("embed", test_corpus, test_embed, "--vector-column", "embedding", "-q")
    assert ok.exit_code == 0
    kmr = tmp_path / "kmeans-random"
    args = ("--strategy", "kmeans-random", "--budget", 150, "-q")
    assert cli("sample", planted_run / "cluster", kmr, *args).exit_code == 0
    result = cli(
        "eval",
        "--train",
        planted_run / "embed",
        "--test",
        test_embed,
        "--selection",
        planted_run / "sample",
        "--selection",
        kmr,
        "--label-column",
        "label",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {Path(r["selection"]).name: r for r in report["selections"]}
    assert rows["sample"]["rows"] == rows["kmeans-random"]["rows"] == 150
    assert rows["sample"]["random_seeds"] == 3
    # the same numbers as the probe by hand, on the rows of the random strategy's draws
    x, labels, ids = vectors_and_labels(planted_run / "embed", tmp_path / "corpus")
    x_test, test_labels, _ = vectors_and_labels(test_embed, test_corpus)
    by_hand = [
        probe_accuracy(x[r], labels[r], x_test, test_labels)
        for r in (random_rows(ids, 150, seed) for seed in range(3))
    ]
    assert rows["sample"]["random_accuracy"] == pytest.approx(np.mean(by_hand), abs=1e-4)
    everything = probe_accuracy(x, labels, x_test, test_labels)
    assert report["all_of_train"] == pytest.approx(everything, abs=1e-4)
    # the random draw of seed 0 is the random strategy's selection
    rnd = tmp_path / "random"
    assert (
        cli(
            "sample", planted_run / "cluster", rnd, "--strategy", "random", "--budget", 150, "-q"
        ).exit_code
        == 0
    )
    chosen = pa.concat_tables([pq.read_table(p) for p in sorted(rnd.glob("part-*"))])
    assert sorted(chosen.column("id").to_pylist()) == sorted(
        ids.take(random_rows(ids, 150, 0)).to_pylist()
    )
    # iterative with probe feedback keeps the junk groups out: better than random
    assert rows["sample"]["accuracy"] > rows["sample"]["random_accuracy"]
    table = cli(
        "eval",
        "--train",
        planted_run / "embed",
        "--test",
        test_embed,
        "--selection",
        kmr,
        "--label-column",
        "label",
    ).stdout
    assert "all of train" in table and "random (same size)" in table


def vectors_and_labels(embed: Path, corpus: Path) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    train = pa.concat_tables([pq.read_table(p) for p in sorted(embed.glob("part-*.parquet"))])
    source = pa.concat_tables([pq.read_table(p) for p in sorted(corpus.glob("*.parquet"))])
    assert train.column("id").equals(source.column("id"))
    x = np.stack(train.column("embedding").to_numpy(zero_copy_only=False))
    labels = source.column("label").to_numpy(zero_copy_only=False).astype(str)
    return x, labels, train.column("id").combine_chunks()


def test_eval_refuses_bad_arguments(planted_run: Path, tmp_path: Path, cli) -> None:
    base = ("eval", "--train", planted_run / "embed", "--test", planted_run / "embed")
    wrong = cli(*base, "--selection", planted_run / "cluster", "--label-column", "label")
    assert wrong.exit_code == 2 and "not a selection" in wrong.stderr
    missing = cli(*base, "--selection", planted_run / "sample", "--label-column", "nope")
    assert missing.exit_code != 0 and "nope" in missing.stderr
    rest = ("--test", planted_run / "embed", "--selection", planted_run / "sample",
            "--label-column", "label")  # fmt: skip
    for train in (planted_run / "sample", tmp_path / "corpus"):  # a selection, raw data
        result = cli("eval", "--train", train, *rest)
        assert result.exit_code == 2 and "give an embed" in result.stderr


def relabelled_test_set(planted_run: Path, tmp_path: Path, keep, rename=lambda v: v) -> Path:
    """A test embed folder: a second draw of the planted corpus, only rows whose label
    ``keep`` accepts, labels passed through ``rename``."""
    table = pq.read_table(planted_corpus(tmp_path / "draw", draw=1))
    labels = table.column("label").to_pylist()
    table = table.filter(pa.array([keep(v) for v in labels]))
    table = table.set_column(2, "label", pa.array([rename(v) for v in table["label"].to_pylist()]))
    (tmp_path / "test-corpus").mkdir()
    pq.write_table(table, tmp_path / "test-corpus" / "part-0.parquet")
    out = tmp_path / "test-embed"
    assert run_process("embed", tmp_path / "test-corpus", out, "--vector-column", "embedding",
                       "-q").returncode == 0  # fmt: skip
    return out


def test_eval_refuses_a_test_set_without_a_label_of_train(planted_run, tmp_path, cli) -> None:
    test = relabelled_test_set(planted_run, tmp_path, keep=lambda v: True,
                               rename=lambda v: f"other-{v}")  # fmt: skip
    result = cli("eval", "--train", planted_run / "embed", "--test", test, "--selection",
                 planted_run / "sample", "--label-column", "label")  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "none of its 4 labels" in result.stderr and "--label-column" in result.stderr


def test_eval_warns_when_a_selection_holds_no_label_of_the_test_set(planted_run, tmp_path, cli):
    few = tmp_path / "few"
    args = ("-s", "top-k", "--score-column", "score_quality", "-b", "2", "-q")
    assert cli("sample", planted_run / "score", few, *args).exit_code == 0
    parts = [pq.read_table(part, columns=["label"]) for part in few.glob("part-*.parquet")]
    held = set(pa.concat_tables(parts).column("label").to_pylist())
    test = relabelled_test_set(planted_run, tmp_path, keep=lambda v: v not in held)
    result = cli("eval", "--train", planted_run / "embed", "--test", test, "--selection", few,
                 "--label-column", "label", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    (warning,) = json.loads(result.stdout)["warnings"]
    assert "none of its labels is a label of --test" in warning
    assert "warning: --selection" in result.stderr


def test_report_and_inspect_give_a_stage_the_same_timings(planted_run, cli) -> None:
    """One source for timings: the wall clock of the run that completed a stage (its fit
    included) and the sum of its shards' times, in `inspect` and in the report alike."""
    from dataselect.report.collect import _stage_info

    for name in ("cluster", "score", "sample"):
        info = json.loads(cli("inspect", planted_run / name, "--json").stdout)
        stage = _stage_info(planted_run / name)
        assert info["wall_seconds"] == stage.wall_seconds > 0
        assert info["seconds"] == stage.shard_seconds
        assert info["wall_seconds"] >= info["seconds"]
    text = cli("inspect", planted_run / "cluster").stdout
    assert " s wall" in text and " s in shards" in text


def test_eval_embeds_raw_test_data_as_train_was(planted_run, tmp_path, cli) -> None:
    """--test given as raw data is embedded with --train's embedder and settings (here its
    vector column): the same accuracies as with the test set's own embed folder."""
    folder = relabelled_test_set(planted_run, tmp_path, keep=lambda v: True)
    reports = []
    for test in (folder, tmp_path / "test-corpus"):
        result = cli("eval", "--train", planted_run / "embed", "--test", test, "--selection",
                     planted_run / "sample", "--label-column", "label", "--json")  # fmt: skip
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert [r["test_embedded"] for r in reports] == [False, True]
    assert reports[0]["test_rows"] == reports[1]["test_rows"]
    assert reports[0]["selections"] == reports[1]["selections"]
    assert reports[0]["all_of_train"] == reports[1]["all_of_train"]


@needs_datasets()
@pytest.mark.slow
def test_eval_reproduces_the_selection_quality_benchmark(tmp_path: Path) -> None:
    """trec_fine, 1% (55 rows), kmeans-closest with k = 55, seeds 0-2: the committed
    benchmark table's accuracy for kmeans-closest, random and all of train."""
    bench = json.loads(
        (Path(__file__).parents[1] / "scripts/bench/results/selection_quality.json").read_text()
    )
    figures = {(r["corpus"], r["budget"], r["strategy"]): r for r in bench}
    for split in ("train", "test"):
        done = run_process(
            "embed",
            DATASETS / f"trec_fine.{split}.parquet",
            tmp_path / split,
            "--embedder",
            "minilm",
            "--device",
            "cpu",
            "-q",
        )
        assert done.returncode == 0, done.stderr
    selections = []
    for seed in range(3):
        cluster, out = tmp_path / f"cluster-{seed}", tmp_path / f"sel-{seed}"
        assert (
            run_process(
                "cluster", tmp_path / "train", cluster, "--k", 55, "--seed", seed, "-q"
            ).returncode
            == 0
        )
        assert (
            run_process(
                "sample",
                cluster,
                out,
                "--strategy",
                "kmeans-closest",
                "--budget",
                55,
                "--seed",
                seed,
                "-q",
            ).returncode
            == 0
        )
        selections += ["--selection", out]
    result = run_process(
        "eval",
        "--train",
        tmp_path / "train",
        "--test",
        tmp_path / "test",
        *selections,
        "--label-column",
        "label",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    mine = np.mean([r["accuracy"] for r in report["selections"]])
    kmc = figures[("trec_fine", "1%", "kmeans-closest")]["accuracy"]
    random = figures[("trec_fine", "1%", "random")]["accuracy"]
    everything = figures[("trec_fine", "100%", "all of train")]["accuracy"]
    assert mine == pytest.approx(kmc, abs=0.01)
    assert report["selections"][0]["random_accuracy"] == pytest.approx(random, abs=0.01)
    assert report["all_of_train"] == pytest.approx(everything, abs=0.005)


def test_inspect_exit_codes_tell_scripts_the_state(tmp_path: Path, cli) -> None:
    """0 complete, 3 incomplete (interrupted or running), 1 damaged."""
    corpus = planted_corpus(tmp_path / "corpus")
    embed = tmp_path / "embed"
    args = ("embed", corpus, embed, "--vector-column", "embedding", "-q")
    assert run_process(*args, env={CRASH_AFTER_ENV: "1"}).returncode != 0
    assert cli("inspect", embed).exit_code == 3
    assert cli("embed", corpus, embed, "--vector-column", "embedding", "-q").exit_code == 0
    assert cli("inspect", embed).exit_code == 0
    (embed / "part-00001.parquet").unlink()
    assert cli("inspect", embed).exit_code == 1
