"""Progress for people and for cron: rich bars on a terminal, plain log lines otherwise.

Both go to stderr, so stdout stays free for the JSON summary (--json).

A stage run goes through phases (``Reporter.phase``), each with its own total and unit:
rows (a pass over the input, the shards), iterations (a k-means fit), bytes (the shards of
a JSONL or CSV input, whose row count is unknown until read) or none (a step with nothing
to count). On a terminal each phase is a bar that ends full; under cron the lines say the
phase, its progress, rate and time left.

Code deep inside a stage (a FAISS fit, a model's forward passes, a file reader) reports
through the module functions (``phase``, ``step``, ``partial_rows``, ``bytes_read``,
``note``): they reach the innermost reporter of this process, and do nothing where there is
none (a worker process, a library call outside a stage run).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Column

LOG_EVERY_SECONDS = 10.0
HEARTBEAT_ENV = "DATASELECT_LOG_SECONDS"  # the most seconds between two log lines


def log_interval() -> float:
    """Seconds between log lines under cron: ``$DATASELECT_LOG_SECONDS``, else 10."""
    try:
        value = float(os.environ.get(HEARTBEAT_ENV, LOG_EVERY_SECONDS))
    except ValueError:
        return LOG_EVERY_SECONDS
    return value if value > 0 else LOG_EVERY_SECONDS


def amount(value: float, unit: str) -> str:
    """``value`` of ``unit`` for a person: bytes as KB/MB/GB, counts with separators."""
    if unit == "bytes":
        for size, name in ((1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")):
            if value >= size:
                return f"{value / size:,.1f} {name}"
        return f"{value:,.0f} B"
    return f"{value:,.0f}"


def per_second(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{amount(value, unit)}/s"
    return f"{value:,.0f} {unit}/s" if value >= 10 else f"{value:.2g} {unit}/s"


@dataclass
class Phase:
    """One step of a stage run: ``done`` of ``total`` (None: not known) ``unit`` (None:
    nothing counted), and a ``detail`` (e.g. the k-means objective) for the lines."""

    name: str
    total: float | None = None
    unit: str | None = "rows"
    done: float = 0
    detail: str = ""
    started: float = field(default_factory=time.perf_counter)
    task: TaskID | None = None

    def rate(self, now: float) -> float:
        elapsed = now - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def share(self) -> float | None:
        if not self.total:
            return None
        return min(self.done / self.total, 1.0)

    def seconds_left(self, now: float) -> float | None:
        rate = self.rate(now)
        if not self.total or not self.done or rate <= 0:
            return None
        return max(self.total - self.done, 0) / rate

    def progress(self, now: float) -> str:
        """What a log line says of this phase (without its name)."""
        if self.unit is None:
            line = f"{now - self.started:,.0f} s in this phase"
            return f"{line}, {self.detail}" if self.detail else line
        unit = self.unit
        counted = amount(self.done, unit)
        if self.total:
            counted += f" of {amount(self.total, unit)}"
        verb = "read" if unit == "bytes" else f"{unit} done"
        line = f"{counted} {verb}"
        if self.total:
            line += f" ({100 * (self.share() or 0):.0f}%)"
        if self.done:
            line += f", {per_second(self.rate(now), unit)}"
        left = self.seconds_left(now)
        if left is not None:
            line += f", about {left:,.0f} s left"
        return f"{line}, {self.detail}" if self.detail else line

    def count(self, finished: bool = False) -> str:
        """What the bar says beside this phase: done/total unit, share, detail."""
        if self.unit is None:
            return "done" if finished else self.detail
        unit = self.unit
        text = amount(self.done, unit)
        if self.total:
            text += f"/{amount(self.total, unit)}"
        if unit != "bytes":
            text += f" {unit}"
        share = self.share()
        if share is not None:
            text += f" {100 * share:.0f}%"
        return f"{text} {self.detail}" if self.detail else text


class Reporter:
    """Reports the phases, rows and shards of one stage run.

    Without a terminal, a heartbeat thread writes a line whenever nothing was logged for
    the log interval: the phase the stage is in, its progress (rows, iterations or bytes
    done of its total, rate and time left when the total is known). So a long k-means fit,
    a slow model batch or a selection never looks like a hang under cron. On a terminal,
    each phase is a bar of its own, and each ends full when the stage succeeds."""

    def __init__(
        self,
        stage: str,
        total_rows: int | None,
        total_shards: int,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.stage = stage
        self.total_rows = total_rows  # the total of rows counted before any phase is named
        self.total_shards = total_shards
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.rows = 0  # rows written
        self.rows_partial = 0  # rows of batches under way (a model's passes), not yet written
        self.bytes_published = 0  # the files of the shards published in this phase
        self.shards = 0
        self._t0 = time.perf_counter()
        self._last_log = self._t0
        self._bar: Progress | None = None
        self._phase: Phase | None = None
        self._lock = threading.RLock()
        self.interval = log_interval()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if not quiet and self.stream.isatty():
            # one line per phase that fits the terminal (80 columns at least): a long phase
            # name or count is cut short (the log lines above the bars say them whole); the
            # rate where there is room for it
            console = Console(file=self.stream)
            spare = max(console.width - 80, 0) // 2
            rate = [TextColumn("{task.fields[rate]}")] if console.width >= 100 else []
            self._bar = Progress(
                TextColumn(f"[bold]{stage}[/bold]"),
                TextColumn("{task.description}", markup=False, table_column=Column(
                    max_width=26 + spare - 8 * len(rate), no_wrap=True, overflow="ellipsis")),
                BarColumn(bar_width=12, table_column=Column(min_width=12)),
                TextColumn("{task.fields[count]}", markup=False, table_column=Column(
                    max_width=24 + spare - 8 * len(rate), no_wrap=True, overflow="ellipsis")),
                *rate,
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )  # fmt: skip

    @property
    def current_phase(self) -> str:
        return self._phase.name if self._phase is not None else "starting"

    def __enter__(self) -> Reporter:
        _reporters.append(self)
        if self._bar is not None:
            self._bar.start()
        elif not self.quiet:
            self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                               name="dataselect-heartbeat")  # fmt: skip
            self._heartbeat.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self in _reporters:
            _reporters.remove(self)
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._bar is not None:
            if exc_type is None:  # done: every phase's bar ends full
                self._end_phase()
            self._bar.stop()

    # -- phases --------------------------------------------------------------------------
    def phase(self, name: str, total: float | None = None, unit: str | None = None) -> None:
        """What the stage does now, with its own ``total`` of ``unit`` (None: nothing is
        counted in it; rows when only a total is given). The previous phase is over: its bar
        ends full."""
        if unit is None and total is not None:
            unit = "rows"
        with self._lock:
            self._end_phase()
            self._phase = Phase(name, total, unit)
            self.rows_partial = self.bytes_published = 0
            if self._bar is not None:
                self._phase.task = self._bar.add_task(name, total=total, rate="",
                                                      count=self._phase.count())  # fmt: skip

    def _current(self) -> Phase:
        """The phase counts go to: before any is named, one of rows over ``total_rows``."""
        if self._phase is None:
            self.phase(self.stage, self.total_rows, "rows")
        assert self._phase is not None
        return self._phase

    def _end_phase(self) -> None:
        """The current phase is over: its bar ends full. What a phase of a unit counted is
        its whole (a fit that converged early, rows settled differently), except bytes:
        the files were read to their end."""
        phase = self._phase
        if phase is None or self._bar is None or phase.task is None:
            return
        if phase.unit == "bytes" or not phase.done:
            phase.done = phase.total or phase.done
        elif phase.unit is not None:
            phase.total = phase.done
        full = phase.total if phase.unit is not None and phase.total else 1
        self._bar.update(phase.task, total=full, completed=full, count=phase.count(True))

    def _show(self, phase: Phase) -> None:
        """Bring the phase's bar up to date, or log a line when one is due."""
        if self._bar is not None and phase.task is not None:
            rate = phase.rate(time.perf_counter())
            self._bar.update(phase.task, completed=min(phase.done, phase.total or phase.done),
                             count=phase.count(), rate=per_second(rate, phase.unit or "rows")
                             if phase.unit and phase.done else "")  # fmt: skip
        elif not self.quiet and time.perf_counter() - self._last_log >= self.interval:
            self.log(f"{phase.name}; {self._line()}")

    # -- counts --------------------------------------------------------------------------
    def step(self, done: float = 1, detail: str | None = None) -> None:
        """``done`` more of the current phase's unit (an iteration, rows of a pass)."""
        with self._lock:
            phase = self._current()
            if phase.unit is None:
                return
            phase.done += done
            if detail is not None:
                phase.detail = detail
            self._show(phase)

    def advance(self, rows: int) -> None:
        """``rows`` more rows written; they count in a phase of rows."""
        with self._lock:
            self.rows += rows
            settled = min(self.rows_partial, rows)  # already counted as they were embedded
            self.rows_partial -= settled
            phase = self._current()
            if phase.unit == "rows":
                phase.done += rows - settled
            self._show(phase)

    def partial_rows(self, rows: int) -> None:
        """``rows`` of a batch under way are done (a model's forward pass inside one read
        batch); the batch's ``advance`` settles them, so nothing counts twice."""
        with self._lock:
            self.rows_partial += rows
            phase = self._current()
            if phase.unit == "rows":
                phase.done += rows
            self._show(phase)

    def bytes_read(self, count: int) -> None:
        """``count`` more bytes of a text input read: progress of a phase of bytes."""
        with self._lock:
            phase = self._phase
            if phase is None or phase.unit != "bytes":
                return
            phase.done += count
            self._show(phase)

    def shard_done(
        self, index: int, rows: int, seconds: float, skipped: bool = False, size: int = 0
    ) -> None:
        """Shard ``index`` is published (or was, ``skipped``). ``size``: the bytes of its
        file when its rows were not known: a phase of bytes counts at least the files of its
        published shards (where shards are read in other processes, nothing else counts)."""
        self.shards += 1
        with self._lock:
            phase = self._phase
            if size and not skipped and phase is not None and phase.unit == "bytes":
                self.bytes_published += size
                if self.bytes_published > phase.done:
                    phase.done = self.bytes_published
                    self._show(phase)
        if skipped:
            self.advance(rows)
            what = "already done, skipped"
        else:
            rate = rows / seconds if seconds > 0 else 0.0
            what = f"{rows:,} rows in {seconds:.1f} s ({rate:,.0f} rows/s)"
        if self._bar is None and not self.quiet:
            self.log(f"shard {index} done ({self.shards}/{self.total_shards}): {what}")

    # -- lines ---------------------------------------------------------------------------
    def _line(self) -> str:
        """The current phase's progress; rows done too when the phase counts another unit."""
        now = time.perf_counter()
        with self._lock:
            phase = self._phase
            parts = [phase.progress(now)] if phase is not None else []
            rows = self.rows + self.rows_partial
            if rows and (phase is None or phase.unit != "rows"):
                parts.append(f"{rows:,} rows done")
        parts.append(f"{now - self._t0:,.0f} s in")
        return ", ".join(parts)

    def _beat(self) -> None:
        while True:
            due = self._last_log + self.interval - time.perf_counter()
            if self._stop.wait(max(due, 0.02)):
                return
            if time.perf_counter() - self._last_log >= self.interval:
                self.log(f"working: {self.current_phase}; {self._line()}")

    def log(self, message: str) -> None:
        if self.quiet:
            return
        self._last_log = time.perf_counter()
        stamp = datetime.now().isoformat(timespec="milliseconds")
        line = f"{stamp} dataselect {self.stage}: {message}"
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:  # one write: the heartbeat thread's lines never interleave with others
            self.stream.write(line + "\n")
            self.stream.flush()


# the reporters of this process's runs, innermost last (eval runs an embed stage inside)
_reporters: list[Reporter] = []


def current() -> Reporter | None:
    """The reporter of the innermost run in this process, if any."""
    return _reporters[-1] if _reporters else None


def phase(name: str, total: float | None = None, unit: str | None = None) -> None:
    """``Reporter.phase`` of the current run (nothing without one)."""
    if (reporter := current()) is not None:
        reporter.phase(name, total, unit)


def step(done: float = 1, detail: str | None = None) -> None:
    if (reporter := current()) is not None:
        reporter.step(done, detail)


def partial_rows(rows: int) -> None:
    if (reporter := current()) is not None:
        reporter.partial_rows(rows)


def bytes_read(count: int) -> None:
    if (reporter := current()) is not None and count:
        reporter.bytes_read(count)


def note(message: str) -> None:
    """A log line of the current run (shown above the bars on a terminal)."""
    if (reporter := current()) is not None:
        reporter.log(message)
