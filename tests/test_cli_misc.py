"""Help texts, progress output, the example corpus."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow.parquet as pq
from conftest import run_process

from dataselect.example import iter_docstrings
from dataselect.progress import Reporter


def test_help_has_examples(cli) -> None:
    result = cli("embed", "--help")
    assert result.exit_code == 0
    assert "Examples" in result.stdout and "--template" in result.stdout
    assert cli("--help").exit_code == 0
    assert cli("--version").stdout.startswith("dataselect ")


def test_plain_log_lines_and_quiet(corpus: Path, tmp_path: Path) -> None:
    loud = run_process("embed", corpus, tmp_path / "a", "-e", "hashing")
    assert loud.returncode == 0
    assert "dataselect embed: shard 2 done (3/3): 50 rows" in loud.stderr
    assert "rows=150" in loud.stderr
    quiet = run_process("embed", corpus, tmp_path / "b", "-e", "hashing", "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal() -> None:
    stream = FakeTerminal()
    with Reporter("embed", total_rows=100, total_shards=2, stream=stream) as reporter:
        reporter.advance(50)
        reporter._bar.refresh()  # type: ignore[union-attr]
        reporter.shard_done(0, 50, 0.1)
    text = stream.getvalue()
    assert "embed" in text and "50/100" in text and "━" in text


def test_the_bar_ends_full_and_names_the_phase() -> None:
    """A sample stage writes a tenth of its input's rows: its write phase counts them
    against the budget, not the input's rows, and every phase's bar ends at 100%; while it
    chooses rows the bar says so (it sat at 0% through a k-means fit)."""
    stream = FakeTerminal()
    with Reporter("sample", total_rows=1000, total_shards=1, stream=stream) as reporter:
        reporter.phase("select: choosing the rows")
        reporter._bar.refresh()  # type: ignore[union-attr]
        reporter.phase("write", 100, "rows")
        reporter.advance(100)
    text = stream.getvalue()
    assert "select: choosing the rows" in text and "done" in text
    assert "100/100 rows 100%" in text and "/1000" not in text


def test_heartbeat_lines_under_cron(monkeypatch) -> None:
    """Without a terminal, a phase that reports nothing (a k-means fit, a slow model batch)
    still gets a line every interval, naming the phase, rows, rate and time left."""
    import re
    import time

    monkeypatch.setenv("DATASELECT_LOG_SECONDS", "0.2")
    stream = io.StringIO()
    with Reporter("cluster", total_rows=1000, total_shards=1, stream=stream) as reporter:
        reporter.phase("fitting k-means")
        time.sleep(0.9)  # silent: only the heartbeat writes
        reporter.phase("assign", 1000, "rows")
        reporter.advance(250)
        time.sleep(0.6)
    lines = stream.getvalue().splitlines()
    fitting = [line for line in lines if "working: fitting k-means" in line]
    assert len(fitting) >= 3, lines
    assert any(re.search(r"250 of 1,000 rows done \(25%\), [\d,]+ rows/s, about [\d,]+ s left",
                         line) for line in lines), lines  # fmt: skip
    assert all(line.split()[1] == "dataselect" for line in lines)  # timestamped log lines


def test_heartbeat_interval_comes_from_the_environment(monkeypatch) -> None:
    from dataselect.progress import LOG_EVERY_SECONDS, log_interval

    monkeypatch.setenv("DATASELECT_LOG_SECONDS", "3")
    assert log_interval() == 3.0
    for bad in ("0", "-1", "soon"):
        monkeypatch.setenv("DATASELECT_LOG_SECONDS", bad)
        assert log_interval() == LOG_EVERY_SECONDS
    quiet = io.StringIO()
    with Reporter("embed", 10, 1, quiet=True, stream=quiet):
        pass
    assert quiet.getvalue() == ""


def test_a_cron_run_names_its_phases(corpus: Path, tmp_path: Path) -> None:
    """The real command under cron with a short interval: the fit sample, the k-means fit
    and the assignment show up as phases between the shard lines."""
    run_process("embed", corpus, tmp_path / "e", "-e", "hashing", "-q")
    done = run_process("cluster", tmp_path / "e", tmp_path / "c", "--k", 3,
                       env={"DATASELECT_LOG_SECONDS": "0.001"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "dataselect cluster: working: " in done.stderr
    assert "dataselect cluster: fit sample (150 of 150 rows, 2 passes); " in done.stderr
    assert "dataselect cluster: fit done: k-means on 150 rows x 384, k=3, niter=" in done.stderr
    assert "dataselect cluster: assign (3 shards to do); " in done.stderr
    assert "dataselect cluster: done:" in done.stderr


def test_example_corpus(cli, tmp_path: Path) -> None:
    result = cli("example", tmp_path / "ex", "--limit", "300", "--shards", "3")
    assert result.exit_code == 0
    table = pq.read_table(tmp_path / "ex")
    assert table.num_rows == 300 and table.column_names == ["id", "text", "module", "kind"]
    assert len(set(table.column("id").to_pylist())) == 300
    first = next(iter_docstrings())
    assert first["id"] == table.column("id")[0].as_py() and len(first["text"]) >= 20
