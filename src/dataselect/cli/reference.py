"""docs/cli.md, the command-line reference: every command's --help, as printed.

    python -m dataselect.cli.reference > docs/cli.md      (what `make docs` runs)

tests/test_docs.py fails when docs/cli.md is not what this prints, so the reference cannot
drift from the commands (the way sqlite-utils keeps its CLI docs). The help is rendered at
a fixed width without colour; that is set before typer is imported, hence a module of its
own, run as a program.
"""

from __future__ import annotations

import os
import re
import sys

os.environ["TERMINAL_WIDTH"] = "100"
os.environ["_TYPER_FORCE_DISABLE_TERMINAL"] = "1"
for name in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS"):
    os.environ.pop(name, None)

from typer.main import get_command  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from dataselect.cli.main import app  # noqa: E402

HEADER = """# Command-line reference

Every command's `--help`, as it prints. Made by `make docs` (`python -m
dataselect.cli.reference > docs/cli.md`); `make test` fails when this file is out of date.
Scorers and sampling strategies bring their own options and paragraphs from their
registries (`dataselect/scoring/registry.py`, `dataselect/sampling/registry.py`).
"""


def command_names() -> list[str]:
    """The commands in the order `dataselect --help` lists them."""
    group = get_command(app)
    return list(group.commands)  # type: ignore[attr-defined]


def render() -> str:
    runner = CliRunner()
    parts = [HEADER]
    for name in ["", *command_names()]:
        args = [name, "--help"] if name else ["--help"]
        result = runner.invoke(app, args)
        if result.exit_code != 0:
            raise RuntimeError(f"dataselect {name} --help: exit {result.exit_code}")
        text = "\n".join(line.rstrip() for line in result.stdout.splitlines()).strip("\n")
        text = re.sub(r"\n{3,}", "\n\n", text)
        title = f"dataselect {name}".strip()
        parts.append(f"## `{title}`\n\n```\n{text}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
