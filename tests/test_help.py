"""Every command's --help, rendered as a user sees it: no markup left over, no placeholder
text, arguments named in upper case without template braces, and no value type after a
flag (`--overwrite true` is an error, so `<bool>` must not suggest it)."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command

from dataselect.cli.main import app

COMMANDS = sorted(get_command(app).commands)  # type: ignore[attr-defined]
PLACEHOLDERS = ("THIS_FOLDER", "TODO", "FIXME", "XXX", "{input}", "{output}", "{config}")


def rendered(cli, *args: str) -> str:
    result = cli(*args, "--help")
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_reads_clean(cli, command: str) -> None:
    text = rendered(cli, *([command] if command else []))
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"\{[a-z_]+\}", usage), usage  # typer's {name} for required args
    arguments = usage.split("[OPTIONS]")[-1].split()
    assert all(a.strip("[].") == a.strip("[].").upper() for a in arguments), usage
    assert "<bool>" not in text
    for leftover in ("[bold]", "[/", "[dim]", "\\[", "[i]"):
        assert leftover not in text, (command, leftover)
    for placeholder in PLACEHOLDERS:
        assert placeholder not in text, (command, placeholder)
    assert "->  ->" not in text and "-> ->" not in text  # a word eaten as markup


def test_the_pipeline_line_names_every_stage(cli) -> None:
    text = " ".join(rendered(cli).split())
    assert "embed -> cluster -> score -> dedup -> sample" in text


def test_usage_errors_are_one_line_naming_arguments_as_help_does() -> None:
    from conftest import run_process

    cases = [(["sample"], "Missing argument 'INPUT'"),
             (["sample", "a", "b", "--no-such"], "No such option: --no-such")]  # fmt: skip
    for args, needle in cases:
        done = run_process(*args)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("dataselect: error: ") and needle in lines[0]
        assert "dataselect sample --help" in lines[0]


def test_refine_summary_names_the_real_folder(tmp_path) -> None:
    """The summary of an unfinished iterative selection says what to run next, on the
    folder itself (it printed THIS_FOLDER)."""
    from test_sample import pipeline

    from dataselect import SampleConfig, sample

    clustered = pipeline(tmp_path / "p")
    done = sample(clustered, tmp_path / "it", SampleConfig(strategy="iterative", budget="30"),
                  quiet=True)  # fmt: skip
    assert done.summary()["next"] == f"dataselect refine {tmp_path / 'it'} --feedback FILE"
