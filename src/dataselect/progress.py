"""Progress for people and for cron: a rich bar on a terminal, plain log lines otherwise.

Both go to stderr, so stdout stays free for the JSON summary (--json).
"""

from __future__ import annotations

import sys
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


class Reporter:
    """Reports rows and shards of one stage run."""

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
                console=Console(file=self.stream),
                transient=False,
            )

    def __enter__(self) -> Reporter:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self.stage, total=self.total_rows, rate="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self._t0
        return self.rows / elapsed if elapsed > 0 else 0.0

    def advance(self, rows: int) -> None:
        self.rows += rows
        if self._bar is not None and self._task is not None:
            self._bar.update(TaskID(self._task), advance=rows, rate=f"{self.rate:,.0f} rows/s")
        elif not self.quiet and time.perf_counter() - self._last_log >= LOG_EVERY_SECONDS:
            self.log(f"{self.rows:,} rows, {self.rate:,.0f} rows/s")

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
