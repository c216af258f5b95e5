"""Shared command-line plumbing: error lines and exit codes, --json summaries."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from dataselect.errors import DataselectError

Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an OUTPUT made with other settings.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no log lines.")]
JsonSummary = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable JSON summary on stdout.")
]
Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback on errors.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
EngineName = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: this process. ray: every shard a Ray task (needs the 'ray' extra); the "
        "same bytes either way.",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="--engine ray: the cluster to join (e.g. auto, ray://head:10001) "
        "\\[default: start a local Ray instance]."
    ),
]
Workers = Annotated[
    str,
    typer.Option(
        "--workers",
        help="--engine local: shards in this many processes at once, or auto: one per core "
        "when the stage's per-shard work is single-threaded (hashing or vector embed, score) "
        "and there are 200,000 rows or more in 2 shards or more; else 1 (MiniLM, the k-means "
        "assignment and the sample stage's threaded reads already use every core). The same "
        "bytes whatever the count.",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the plan and estimates (memory, time from a small probe, output size); "
        "write nothing.",
    ),
]


def on_engine(engine: str, address: str | None, workers: str, action: Callable[[], Any]) -> Any:
    """Run ``action`` (a stage call) on the chosen engine."""
    from dataselect.engine import use_engine

    with use_engine(engine, address, workers):
        return action()


def emit_plans(plans: list[Any], as_json: bool) -> None:
    """Print dry-run plans: lines for people, or JSON for scripts."""
    from dataselect.planning import format_plans

    if as_json:
        print(json.dumps({"dry_run": True, "stages": [p.as_dict() for p in plans]}, indent=2))
    else:
        print(format_plans(plans))
    refused = [p for p in plans if p.action.startswith("refused")]
    if refused:  # the real command would stop here with exit 2: so does its dry run
        raise fail(
            f"{refused[0].output}: the {refused[0].stage} stage would be refused "
            f"({refused[0].action.removeprefix('refused: ')})",
            2,
        )


def fail(message: str, code: int) -> typer.Exit:
    print(f"dataselect: error: {message}", file=sys.stderr, flush=True)
    return typer.Exit(code)


def run_command(debug: bool, action: Callable[[], Any]) -> Any:
    """Run ``action``; turn errors into one stderr line and the documented exit code."""
    try:
        return action()
    except DataselectError as exc:
        if debug:
            raise
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        print("dataselect: interrupted; rerun the same command to resume", file=sys.stderr)
        raise typer.Exit(130) from None
    except MemoryError:
        if debug:
            raise
        raise fail("out of memory (try a smaller --batch-size)", 1) from None
    except Exception as exc:  # a bug: say so, briefly, unless --debug
        if debug:
            raise
        raise fail(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            1,
        ) from None


def emit_summary(summary: dict[str, Any], as_json: bool, quiet: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    elif not quiet:
        parts = []
        for key, value in summary.items():
            if isinstance(value, dict) and len(value) <= 8:  # e.g. vendi_selected.q1=...
                parts += [f"{key}.{k}={v}" for k, v in value.items() if not isinstance(v, dict)]
            elif not isinstance(value, (list, dict)):
                parts.append(f"{key}={value}")
        print(", ".join(parts), file=sys.stderr)
