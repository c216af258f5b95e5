"""The documentation tells the truth: docs/cli.md is every command's --help as it prints
today, and the README's quickstart runs as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import synthetic_texts

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_up_to_date() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "dataselect.cli.reference"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "100"},
    ).stdout  # fmt: skip
    assert printed == (ROOT / "docs" / "cli.md").read_text(), "docs/cli.md is stale: make docs"


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    """The ```sh blocks under the README's quickstart heading, run in order in a shell,
    on a rows.jsonl of 300 rows (the hashing embedder: no model in this test)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 3, "the quickstart lost its commands"
    with open(tmp_path / "rows.jsonl", "w") as handle:
        for i, text in enumerate(synthetic_texts(300)):
            handle.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for block in blocks:
        script = block.replace("--embedder minilm", "--embedder hashing").replace(
            "embedder: minilm", "embedder: hashing"
        )
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, f"{script}\n{done.stderr}"
    assert (tmp_path / "runs" / "selection" / "part-00000.parquet").exists()
