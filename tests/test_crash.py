"""The crash benchmark itself, on a few trials: SIGKILL `dataselect run`, rerun, same bytes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench" / "crash.py"


@pytest.mark.slow
def test_crash_script_passes_its_trials() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--trials", "3", "--rows", "4000", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 of 3 trials passed" in done.stdout
