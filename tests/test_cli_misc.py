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
        reporter.shard_done(0, 50, 0.1)
    text = stream.getvalue()
    assert "embed" in text and "50/100" in text and "━" in text


def test_example_corpus(cli, tmp_path: Path) -> None:
    result = cli("example", tmp_path / "ex", "--limit", "300", "--shards", "3")
    assert result.exit_code == 0
    table = pq.read_table(tmp_path / "ex")
    assert table.num_rows == 300 and table.column_names == ["id", "text", "module", "kind"]
    assert len(set(table.column("id").to_pylist())) == 300
    first = next(iter_docstrings())
    assert first["id"] == table.column("id")[0].as_py() and len(first["text"]) >= 20
