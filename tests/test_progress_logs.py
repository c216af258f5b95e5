"""Logs and bars that tell the truth (issue 19, items 2 and 3): every phase of a stage run
has its own total and bar, the k-means fit reports each iteration (with the centroids of one
FAISS call, bit for bit), scorer fits say when they start and end, MiniLM's forward passes
count inside a read batch, and JSONL/CSV inputs are counted in bytes read."""

from __future__ import annotations

import gzip
import io
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest
from conftest import synthetic_texts, write_parquet_folder

from dataselect.clustering.kmeans import fit_kmeans, initial_centroids
from dataselect.io.text_formats import csv_batches, json_records
from dataselect.progress import Reporter

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def plain(text: str) -> str:
    return ANSI.sub("", text)


def log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " dataselect " in line]


@pytest.fixture
def every_line(monkeypatch) -> None:
    """A log line at every count (the interval is a microsecond)."""
    monkeypatch.setenv("DATASELECT_LOG_SECONDS", "0.000001")


# -- the k-means fit, one iteration at a time ---------------------------------------------
def kmeans_case(case: int) -> tuple[np.ndarray, int, int, str]:
    """Samples that exercise FAISS's corners: plain data, tight blobs (it stops early), few
    distinct rows for many clusters (empty clusters are split), both metrics."""
    rng = np.random.default_rng(case)
    n, d = 600 + 150 * case, (2, 16, 33, 64)[case % 4]
    kind = case % 3
    if kind == 0:
        x = rng.normal(size=(n, d))
    elif kind == 1:
        centres = rng.normal(size=(5, d)) * 10
        x = centres[rng.integers(0, 5, n)] + rng.normal(size=(n, d)) * 0.01
    else:
        x = rng.normal(size=(6, d))[rng.integers(0, 6, n)]
    x = x.astype(np.float32)
    metric = "cosine" if case % 2 == 0 else "l2"
    if metric == "cosine":
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, (12, 5, 20)[kind], 25, metric


def one_faiss_call(x: np.ndarray, k: int, niter: int, seed: int, metric: str) -> faiss.Kmeans:
    """The fit as it was made before: one faiss.Kmeans call from the same k-means++ seeds."""
    kmeans = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=metric == "cosine",
                          max_points_per_centroid=max(1, -(-len(x) // k)),
                          min_points_per_centroid=1, verbose=False)  # fmt: skip
    kmeans.train(x, init_centroids=initial_centroids(x, k, seed, metric))
    return kmeans


def test_the_fit_iteration_by_iteration_equals_one_faiss_call() -> None:
    """Same centroids (bits), same objectives, same early stop; each iteration reported."""
    early_stops = splits = 0
    for case in range(9):
        x, k, niter, metric = kmeans_case(case)
        reference = one_faiss_call(x, k, niter, case, metric)
        seen: list[tuple[int, float]] = []
        fit = fit_kmeans(x, k, niter, case, metric, lambda i, o, seen=seen: seen.append((i, o)),
                         stepwise=True)  # fmt: skip
        assert fit.centroids.tobytes() == np.ascontiguousarray(reference.centroids).tobytes()
        assert fit.trace == tuple(float(v) for v in reference.obj), case
        assert fit.objective == float(reference.obj[-1])
        assert seen == list(enumerate(fit.trace, start=1))
        short = fit_kmeans(x, k, niter, case, metric, stepwise=False)  # one call: the same
        assert short.centroids.tobytes() == fit.centroids.tobytes() and short.trace == fit.trace
        early_stops += len(fit.trace) < niter
        splits += sum(stats["nsplit"] for stats in reference.iteration_stats) > 0
    if hasattr(faiss.ClusteringParameters(), "early_stop_threshold"):
        assert early_stops  # the corners were met
    assert splits


def test_the_cluster_stage_logs_the_sample_the_iterations_and_the_assignment(
    tmp_path: Path, cli, every_line, monkeypatch
) -> None:
    """With many clusters (here: the bound patched down to 3) each iteration is logged as it
    ends; with few, the fit is one FAISS call: its lines say how long it has run, never
    '0 of 20 iterations done', and one line tells the iterations when it ends."""
    from dataselect.clustering import kmeans

    corpus = write_parquet_folder(tmp_path / "corpus")
    assert cli("embed", corpus, tmp_path / "e", "-e", "hashing", "-q").exit_code == 0
    one_call = cli("cluster", tmp_path / "e", tmp_path / "one", "--k", 3)
    assert one_call.exit_code == 0, one_call.output
    lines = log_lines(one_call.stderr)
    assert not any("iterations done" in line for line in lines), lines
    assert any("fit done: k-means on 150 rows x 384" in line for line in lines), lines
    monkeypatch.setattr(kmeans, "STEPWISE_MIN_K", 3)
    result = cli("cluster", tmp_path / "e", tmp_path / "c", "--k", 3)
    assert result.exit_code == 0, result.output
    lines = log_lines(result.stderr)
    assert any("fit sample (150 of 150 rows, 2 passes); 300 of 300 rows "
               "done (100%)" in line for line in lines), lines  # fmt: skip
    fit = "fit: k-means on 150 rows x 384, k=3, niter=20; "
    iterations = [line for line in lines if fit in line and "working" not in line]
    assert re.search(r"; 1 of 20 iterations done \(5%\), [\d.,]+ iterations/s, about [\d,]+ "
                     r"s left, objective [\d.e+-]+, ", iterations[0])  # fmt: skip
    numbers = [int(re.search(r"; (\d+) of 20", line).group(1)) for line in iterations]  # type: ignore[union-attr]
    assert numbers == list(range(1, len(numbers) + 1))
    done = [line for line in lines if "fit done: k-means on 150 rows x 384" in line]
    assert len(done) == 1 and f"{len(numbers)} iterations in" in done[0]
    assert any(re.search(r"assign \(3 shards to do\); 150 of 150 rows done \(100%\)", line)
               for line in lines)  # fmt: skip


def test_the_sample_stage_logs_its_pool_read(tmp_path: Path, cli, every_line) -> None:
    """The pool is read before the stage's own reporter exists (its budget goes in the
    manifest): that read is logged too, counted in rows."""
    corpus = write_parquet_folder(tmp_path / "corpus")
    assert cli("embed", corpus, tmp_path / "e", "-e", "hashing", "-q").exit_code == 0
    assert cli("cluster", tmp_path / "e", tmp_path / "c", "--k", 3, "-q").exit_code == 0
    args = ("--strategy", "facility-location", "--budget", 10)
    result = cli("sample", tmp_path / "c", tmp_path / "s", *args)
    assert result.exit_code == 0, result.output
    pool = [line for line in log_lines(result.stderr) if "read the pool (id, cluster" in line]
    assert pool and re.search(r"150 of 150 rows done \(100%\)", pool[-1]), pool
    quiet = cli("sample", tmp_path / "c", tmp_path / "q", *args, "--quiet")
    assert quiet.exit_code == 0 and not log_lines(quiet.stderr)


def test_cluster_and_sample_bars_each_end_full(tmp_path: Path, cli, monkeypatch) -> None:
    """One bar per phase, each with its own total: the fit sample's two passes, the fit's
    iterations, the assignment's rows; sample's write counts the budget (it ended at
    "10/150 rows 7%")."""
    from dataselect.clustering import kmeans
    from dataselect.clustering.stage import cluster
    from dataselect.sampling.config import SampleConfig
    from dataselect.sampling.stage import sample

    corpus = write_parquet_folder(tmp_path / "corpus")
    assert cli("embed", corpus, tmp_path / "e", "-e", "hashing", "-q").exit_code == 0
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    monkeypatch.setattr(kmeans, "STEPWISE_MIN_K", 1)  # iterations counted as they end
    cluster(tmp_path / "e", tmp_path / "c")
    sample(tmp_path / "c", tmp_path / "s", SampleConfig(budget="10"))
    text = plain(terminal.getvalue())
    final = text[text.rindex("cluster fit sample") : text.rindex("sample select")]
    assert re.search(r"fit sample .* 300/300 rows 100%", final)
    assert re.search(r"fit: k-means on 150 rows .* (\d+)/\1 iterations 100%", final)
    assert re.search(r"assign \(3 shards to do\) .* 150/150 rows 100%", final)
    assert re.search(r"finishing .* done", final)
    selected = text[text.rindex("sample select") :]
    assert re.search(r"select: choosing the rows .* done", selected)
    assert re.search(r"write \(3 shards to do\) .* 10/10 rows 100%", selected)
    assert "/150" not in selected and "/?" not in text


# -- scorer fits -----------------------------------------------------------------------------
def test_a_scorer_fit_is_logged_and_named_by_the_heartbeat(
    tmp_path: Path, cli, monkeypatch
) -> None:
    from dataselect.scoring.dsir import DsirScorer

    monkeypatch.setenv("DATASELECT_LOG_SECONDS", "0.05")
    fit = DsirScorer.fit

    def slow_fit(self, reader, output):  # type: ignore[no-untyped-def]
        time.sleep(0.3)
        return fit(self, reader, output)

    monkeypatch.setattr(DsirScorer, "fit", slow_fit)
    corpus = write_parquet_folder(tmp_path / "corpus")
    target = write_parquet_folder(tmp_path / "target", shards=1, rows=40, seed=1)
    result = cli("score", corpus, tmp_path / "s", "--scorer", "dsir", "--target", target)
    assert result.exit_code == 0, result.output
    lines = log_lines(result.stderr)
    what = "fit dsir (scorer 1 of 1)"
    assert any(f"{what}: started, on 150 input rows" in line for line in lines), lines
    assert any(f"working: {what}; " in line for line in lines), lines
    ended = [line for line in lines if f"{what}: done in " in line]
    assert len(ended) == 1 and re.search(r"done in 0\.[3-9] s \(target_rows=40\)", ended[0])


# -- MiniLM: the passes inside a read batch ----------------------------------------------
class FakeModel:
    """Stands in for the SentenceTransformer: unit vectors, and the passes it was given."""

    def __init__(self) -> None:
        self.passes: list[int] = []

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.passes.append(len(texts))
        vectors = np.ones((len(texts), 384), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_minilm_passes_advance_the_reporter_inside_one_batch(monkeypatch, every_line) -> None:
    from dataselect.embedding import minilm

    model = FakeModel()
    monkeypatch.setattr(minilm, "resolve_device", lambda device: "cpu")
    monkeypatch.setattr(minilm, "load_model", lambda device="cpu": model)
    stream = io.StringIO()
    with Reporter("embed", 100, 1, stream=stream) as reporter:
        reporter.phase("embed", 100, "rows")
        minilm.MiniLMEmbedder(device="cpu", batch_size=16).embed(synthetic_texts(100))
        during = log_lines(stream.getvalue())
        reporter.advance(100)  # the read batch written: settles its passes, not twice
        phase = reporter._phase
        assert phase is not None and phase.done == 100 and reporter.rows_partial == 0
    assert model.passes == [16] * 6 + [4]
    # the passes' own lines: the heartbeat thread may also say "working: embed; 0 of 100
    # rows done" while the batch is tokenised, before the first pass
    passes = [line for line in during if "working:" not in line]
    counts = [int(re.search(r"; (\d+) of 100 rows done", line).group(1)) for line in passes]  # type: ignore[union-attr]
    assert counts == [16, 32, 48, 64, 80, 96, 100]


SLOW_EMBED = r"""
import sys, time
import numpy as np
from dataselect.embedding import minilm

class SlowModel:
    def encode(self, texts, **_):
        time.sleep(0.3)
        vectors = np.ones((len(texts), minilm.DIM), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

minilm.resolve_device = lambda device: "cpu"
minilm.load_model = lambda device="cpu": SlowModel()
minilm.MiniLMEmbedder.identity = lambda self: {"embedder": "minilm", "model": "slow double",
                                               "dim": minilm.DIM}
from dataselect.cli.main import main
sys.argv = ["dataselect", *sys.argv[1:]]
main()
"""


def test_under_cron_a_slow_read_batch_logs_every_interval(tmp_path: Path) -> None:
    """The real command, not a terminal, DATASELECT_LOG_SECONDS=1, one read batch of 160 rows
    whose 10 forward passes take 0.3 s each: a line at least every 1.2 s (by the lines' own
    timestamps), and the lines count the rows embedded inside the batch."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=1, rows=160)
    done = subprocess.run(
        [sys.executable, "-c", SLOW_EMBED, "embed", corpus, tmp_path / "e", "--batch-size",
         "16", "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "DATASELECT_LOG_SECONDS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = log_lines(done.stderr)
    stamps = [datetime.fromisoformat(line.split()[0]) for line in lines]
    gaps = [(b - a).total_seconds() for a, b in zip(stamps, stamps[1:], strict=False)]
    assert len(lines) >= 4 and max(gaps) <= 1.2, lines
    inside = [int(m.group(1)) for line in lines
              if (m := re.search(r"working: embed .*; (\d+) of 160 rows done", line))]  # fmt: skip
    assert len(inside) >= 2 and all(0 < rows < 160 for rows in inside), lines
    assert inside == sorted(inside) and len(set(inside)) == len(inside)


# -- text inputs: counted in bytes ---------------------------------------------------------
def write_jsonl(path: Path, rows: int) -> Path:
    lines = "".join(f'{{"id": "r{i}", "text": "{text}"}}\n'
                    for i, text in enumerate(synthetic_texts(rows)))  # fmt: skip
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(lines.encode()))
    else:
        path.write_text(lines)
    return path


@pytest.mark.parametrize("name", ["data.jsonl", "data.jsonl.gz"])
def test_json_records_tell_the_bytes_read(tmp_path: Path, name: str) -> None:
    path = write_jsonl(tmp_path / name, 3000)
    told: list[int] = []
    assert len(list(json_records(path, on_bytes=told.append))) == 3000
    assert len(told) >= 3 and sum(told) == path.stat().st_size


@pytest.mark.parametrize("name", ["data.csv", "data.csv.gz"])
def test_csv_batches_tell_the_bytes_read(tmp_path: Path, name: str) -> None:
    import pyarrow.csv as pacsv

    table = pa.table({"id": [f"r{i}" for i in range(3000)], "text": synthetic_texts(3000)})
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    data = sink.getvalue().to_pybytes()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    told: list[int] = []
    batches = list(csv_batches(path, ["id"], 500, on_bytes=told.append))
    assert sum(b.num_rows for b in batches) == 3000
    assert told and sum(told) == path.stat().st_size


def test_a_jsonl_input_is_counted_in_bytes(tmp_path: Path, monkeypatch, every_line) -> None:
    """Its rows are not known before it is read: the bar and the lines count bytes read
    against the file's size (they said "0/?")."""
    from dataselect.embedding.config import EmbedConfig
    from dataselect.embedding.stage import embed

    path = write_jsonl(tmp_path / "data.jsonl", 3000)
    size = path.stat().st_size
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    embed(path, tmp_path / "cron", EmbedConfig(embedder="hashing"))
    lines = log_lines(stream.getvalue())
    read = [line for line in lines if re.search(r"embed \(1 shard to do\); [\d.]+ KB of "
                                                r"[\d.]+ KB read \(\d+%\)", line)]  # fmt: skip
    assert len(read) >= 3, lines
    assert re.search(rf"of {size / 1024:.1f} KB read \(100%\)", read[-1])
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    embed(path, tmp_path / "terminal", EmbedConfig(embedder="hashing"))
    text = plain(terminal.getvalue())
    assert re.search(rf"embed \(1 shard to do\) .* {size / 1024:.1f} KB/{size / 1024:.1f} "
                     r"KB 100%", text)  # fmt: skip
    assert "/?" not in text


# -- the lines and the bars themselves ---------------------------------------------------
def test_each_line_has_done_rate_and_time_left_when_the_total_is_known(every_line) -> None:
    stream = io.StringIO()
    with Reporter("embed", None, 1, stream=stream) as reporter:
        reporter.phase("embed", 1000, "rows")
        time.sleep(0.01)
        reporter.advance(250)
        reporter.phase("write", unit="rows")  # a total not known: no share, no time left
        time.sleep(0.01)
        reporter.advance(10)
        reporter.phase("read", 4 << 20, "bytes")
        time.sleep(0.01)
        reporter.bytes_read(1 << 20)
    lines = log_lines(stream.getvalue())
    assert any(re.search(r"embed; 250 of 1,000 rows done \(25%\), [\d,]+ rows/s, about [\d,]+ s "
                         r"left, [\d,]+ s in$", line) for line in lines), lines  # fmt: skip
    assert any(re.search(r"write; 10 rows done, [\d,.]+ rows/s, [\d,]+ s in$", line)
               for line in lines), lines  # fmt: skip
    read = r"read; 1\.0 MB of 4\.0 MB read \(25%\), [\d,.]+ MB/s, about [\d,]+ s left, 260 rows"
    assert any(re.search(read + r" done, [\d,]+ s in$", line) for line in lines), lines


@pytest.mark.parametrize("columns", [80, 120])
def test_every_phase_bar_ends_full(monkeypatch, columns: int) -> None:
    """Each phase's bar ends full; on an 80-column terminal each still fits one line (its
    name and count cut short)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    terminal = FakeTerminal()
    with Reporter("cluster", 100, 1, stream=terminal) as reporter:
        reporter.phase("fit", 20, "iterations")
        reporter.step(1, "objective 3.5")
        reporter._bar.refresh()  # type: ignore[union-attr]
        reporter.step(6, "objective 2.5")  # converged at 7 of 20
        reporter.phase("assign", 100, "rows")
        reporter.advance(100)
        reporter.phase("read", 5000, "bytes")
        reporter.bytes_read(4900)  # read to its end: what is counted is close, not exact
        reporter.phase("finishing")
    text = plain(terminal.getvalue())
    final = text[text.rindex("cluster fit ") :]
    assert all(len(line) <= columns for line in re.split(r"[\r\n]", text))
    if columns > 80:
        assert "1/20 iterations 5% objective 3.5" in text
        assert "7/7 iterations 100% objective 2.5" in final
    assert "7/7 iterations 100%" in final
    assert "100/100 rows 100%" in final and "4.9 KB/4.9 KB 100%" in final
    assert (re.search(r"[\d,]+ rows/s", text) is not None) == (columns >= 100)
    assert re.search(r"finishing .* done", final)


def test_no_reporter_no_trouble(tmp_path: Path) -> None:
    """Outside a stage run (a library call, a worker process) the module functions do
    nothing: the fit and the readers run as they do with one."""
    from dataselect import progress

    assert progress.current() is None
    progress.phase("nothing", 10)
    progress.step(1)
    progress.partial_rows(5)
    progress.bytes_read(100)
    progress.note("not shown")
    x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    assert fit_kmeans(x, 4, 5, 0, "l2").centroids.shape == (4, 8)
    path = write_jsonl(tmp_path / "data.jsonl", 10)
    assert len(list(json_records(path, on_bytes=progress.bytes_read))) == 10


def test_bytes_of_shards_read_in_other_processes_count_once_published() -> None:
    """Worker processes and Ray tasks read the files where no reporter sees the bytes: a
    published shard counts its whole file; read here, the bytes count as they are read
    (and publishing does not count them again)."""
    elsewhere = Reporter("embed", None, 2, quiet=True)
    with elsewhere:
        elsewhere.phase("embed", 3000, "bytes")
        elsewhere.shard_done(0, 10, 0.1, size=1000)
        assert elsewhere._phase is not None and elsewhere._phase.done == 1000
        elsewhere.shard_done(1, 10, 0.1, size=2000)
        assert elsewhere._phase.done == 3000
    here = Reporter("embed", None, 2, quiet=True)
    with here:
        here.phase("embed", 3000, "bytes")
        here.bytes_read(600)
        here.bytes_read(400)
        here.shard_done(0, 10, 0.1, size=1000)
        here.bytes_read(2000)
        here.shard_done(1, 10, 0.1, size=2000)
        assert here._phase is not None and here._phase.done == 3000
