"""Progress for people and for cron: a rich bar on a terminal, plain log lines otherwise.

Both go to stderr, so stdout stays free for the JSON summary (--json).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_EVERY_SECONDS = 10.0
HEARTBEAT_ENV = "DATASELECT_LOG_SECONDS"  # the most seconds between two log lines


def log_interval() -> float:
    """Seconds between log lines under cron: ``$DATASELECT_LOG_SECONDS``, else 10."""
    try:
        value = float(os.environ.get(HEARTBEAT_ENV, LOG_EVERY_SECONDS))
    except ValueError:
        return LOG_EVERY_SECONDS
    return value if value > 0 else LOG_EVERY_SECONDS


class Reporter:
    """Reports rows and shards of one stage run.

    Without a terminal, a heartbeat thread writes a line whenever nothing was logged for
    the log interval: the phase the stage is in (set by ``phase``), rows done, rate and,
    when the total is known, an estimate of the time left. So a long k-means fit, a slow
    model batch or a selection never looks like a hang under cron."""

    def __init__(
        self,
        stage: str,
        total_rows: int | None,
        total_shards: int,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.stage = stage
        self.total_rows = total_rows
        self.total_shards = total_shards
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.rows = 0
        self.shards = 0
        self._t0 = time.perf_counter()
        self._last_log = self._t0
        self._bar: Progress | None = None
        self._task: int | None = None
        self.interval = log_interval()
        self.current_phase = "starting"
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if not quiet and self.stream.isatty():
            self._bar = Progress(
                TextColumn(f"[bold]{stage}[/bold]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TaskProgressColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[phase]}"),
                console=Console(file=self.stream),
                transient=False,
            )

    def __enter__(self) -> Reporter:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.stage, total=self.total_rows, rate="",
                                            phase=self.current_phase)  # fmt: skip
        elif not self.quiet:
            self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                               name="dataselect-heartbeat")  # fmt: skip
            self._heartbeat.start()
        return self

    def phase(self, name: str) -> None:
        """What the stage does now (the heartbeat names it; the bar shows it)."""
        self.current_phase = name
        if self._bar is not None and self._task is not None:
            self._bar.update(TaskID(self._task), phase=name)

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.interval / 4)):
            if time.perf_counter() - self._last_log >= self.interval:
                self.log(f"working: {self.current_phase}; {self._rows_line()}")

    def _rows_line(self) -> str:
        line = f"{self.rows:,} rows done"
        if self.total_rows:
            line += f" of {self.total_rows:,}"
        if self.rows:
            line += f", {self.rate:,.0f} rows/s"
            if self.total_rows and self.total_rows > self.rows:
                left = (self.total_rows - self.rows) / max(self.rate, 1e-9)
                line += f", about {left:,.0f} s left"
        elapsed = time.perf_counter() - self._t0
        return f"{line}, {elapsed:,.0f} s in"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._bar is not None and self._task is not None:
            if exc_type is None:  # done: a full bar, whatever share of rows was written
                total = self.total_rows if self.total_rows is not None else self.rows
                self._bar.update(TaskID(self._task), total=total, completed=total, phase="done")
            self._bar.stop()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self._t0
        return self.rows / elapsed if elapsed > 0 else 0.0

    def advance(self, rows: int) -> None:
        self.rows += rows
        if self._bar is not None and self._task is not None:
            self._bar.update(TaskID(self._task), advance=rows, rate=f"{self.rate:,.0f} rows/s")
        elif not self.quiet and time.perf_counter() - self._last_log >= self.interval:
            self.log(f"{self.current_phase}; {self._rows_line()}")

    def shard_done(self, index: int, rows: int, seconds: float, skipped: bool = False) -> None:
        self.shards += 1
        if skipped:
            self.advance(rows)
            what = "already done, skipped"
        else:
            rate = rows / seconds if seconds > 0 else 0.0
            what = f"{rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)"
        if self._bar is None and not self.quiet:
            self.log(f"shard {index} done ({self.shards}/{self.total_shards}): {what}")

    def log(self, message: str) -> None:
        if self.quiet:
            return
        self._last_log = time.perf_counter()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        line = f"{stamp} dataselect {self.stage}: {message}"
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=self.stream, flush=True)
