"""Shared command-line plumbing: the option groups every command shares (declared once),
stage commands built from their configs, one run-or-plan path, error lines and exit codes,
--json summaries."""

from __future__ import annotations

import inspect
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from dataselect.errors import DataselectError
from dataselect.io.lock import waiting
from dataselect.options import OptionSpec
from dataselect.planning import PlanRequest
from dataselect.registry import RegistryConfig

RUN_PANEL, ENGINE_PANEL = "Run options", "Engine options"

Overwrite = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace an OUTPUT made with other settings.", rich_help_panel=RUN_PANEL
    ),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the plan and estimates (memory, time from a small probe, output size); "
        "write nothing.",
        rich_help_panel=RUN_PANEL,
    ),
]
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress and no log lines.", rich_help_panel=RUN_PANEL),
]
JsonSummary = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print a machine-readable JSON summary on stdout.",
        rich_help_panel=RUN_PANEL,
    ),
]
Debug = Annotated[
    bool,
    typer.Option("--debug", help="Show the full traceback on errors.", rich_help_panel=RUN_PANEL),
]
Seed = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
Wait = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="When another run holds OUTPUT (or an input folder this one would replace), wait "
        "up to SECONDS for it (inf: as long as it takes) instead of stopping with exit 2.",
        rich_help_panel=RUN_PANEL,
    ),
]
EngineName = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: this process. ray: every shard a Ray task (needs the 'ray' extra); the "
        "same bytes either way.",
        rich_help_panel=ENGINE_PANEL,
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        help="--engine ray: the cluster to join (e.g. auto, ray://head:10001) "
        "\\[default: start a local Ray instance].",
        rich_help_panel=ENGINE_PANEL,
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
        rich_help_panel=ENGINE_PANEL,
    ),
]


@dataclass(frozen=True)
class RunOptions:
    overwrite: bool = False
    dry_run: bool = False
    quiet: bool = False
    json: bool = False
    debug: bool = False
    wait: float = 0.0


@dataclass(frozen=True)
class EngineOptions:
    engine: str = "local"
    ray_address: str | None = None
    workers: str = "auto"


def _keyword(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)  # fmt: skip


RUN_PARAMETERS = [
    _keyword("overwrite", Overwrite, False),
    _keyword("dry_run", DryRun, False),
    _keyword("quiet", Quiet, False),
    _keyword("json_summary", JsonSummary, False),
    _keyword("debug", Debug, False),
    _keyword("wait", Wait, 0.0),
]
ENGINE_PARAMETERS = [
    _keyword("engine", EngineName, "local"),
    _keyword("ray_address", RayAddress, None),
    _keyword("workers", Workers, "auto"),
]


def option_parameter(spec: OptionSpec, panel: str) -> inspect.Parameter:
    """A config option as a command-line option: its flags, help, type and default."""
    kind = spec.meta.cli_type or spec.type
    default = spec.default
    if typing.get_origin(kind) is tuple:  # repeatable: --scorer a --scorer b
        kind, default = list[str], list(default)
    elif isinstance(default, tuple):  # given as one text, e.g. --k-grid 8,16,32
        default = ",".join(map(str, default))
    option = typer.Option(*spec.flags, help=spec.meta.help, rich_help_panel=panel)
    if spec.meta.required:
        default = inspect.Parameter.empty
    return _keyword(spec.name, Annotated[kind, option], default)


def config_parameters(config: type[Any], panels: tuple[str, str]) -> list[inspect.Parameter]:
    """The command-line options of a config: its own (first panel) and, for a registry
    config, its registry's entries' (second panel)."""
    shared = set(config.registry.options) if issubclass(config, RegistryConfig) else set()
    return [
        option_parameter(spec, panels[spec.name in shared])
        for spec in config.option_specs()
        if spec.meta.cli
    ]


def stage_command(
    spec: Any, doc: str, input_help: str, output_help: str, panels: tuple[str, str]
) -> Callable[..., None]:
    """The command of pipeline stage ``spec``: INPUT OUTPUT, the options of its config,
    then the run and engine options; it runs or plans through ``run_or_plan``."""
    options = config_parameters(spec.config, panels)
    names = [p.name for p in options]

    def command(**given: Any) -> None:
        run = RunOptions(given["overwrite"], given["dry_run"], given["quiet"],
                         given["json_summary"], given["debug"], given["wait"])  # fmt: skip
        engine = EngineOptions(given["engine"], given["ray_address"], given["workers"])
        values = {name: given[name] for name in names}
        run_or_plan(spec, given["input"], given["output"], values, run, engine)

    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [
        inspect.Parameter("input", positional, annotation=Annotated[
            str, typer.Argument(help=input_help)]),
        inspect.Parameter("output", positional, annotation=Annotated[
            Path, typer.Argument(help=output_help)]),
        *options, *RUN_PARAMETERS, *ENGINE_PARAMETERS,
    ]  # fmt: skip
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    command.__doc__ = doc
    command.__name__ = spec.name
    return command


def run_or_plan(
    spec: Any,
    input: str,
    output: Path,
    values: dict[str, Any],
    run: RunOptions,
    engine: EngineOptions,
) -> None:
    """The one path of every stage command: build the config (its parsing and checks), then
    run the stage, or, with --dry-run, print its plan, on the chosen engine."""

    def action() -> Any:
        with waiting(run.wait):
            config = spec.config(**values)
            if run.dry_run:
                return spec.estimate(config, PlanRequest(input, output, run.overwrite))[0]
            return spec.run(input, output, config, overwrite=run.overwrite, quiet=run.quiet)

    result = run_command(run.debug, lambda: on_engine(engine, action))
    if run.dry_run:
        emit_plans([result], run.json)
    else:
        emit_summary(result.summary(), run.json, run.quiet)


def on_engine(engine: EngineOptions, action: Callable[[], Any]) -> Any:
    """Run ``action`` (stage calls) on the chosen engine."""
    from dataselect.engine import use_engine

    with use_engine(engine.engine, engine.ray_address, engine.workers):
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


class Terminated(BaseException):
    """SIGTERM, raised where the run is (as Ctrl-C raises KeyboardInterrupt), so that its
    rollback and cleanup run: the temporary files of this run are removed; finished shards
    stay for the rerun."""


def terminate(signum: int, frame: object) -> None:
    raise Terminated()


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
    except Terminated:
        print("dataselect: terminated; rerun the same command to resume", file=sys.stderr)
        raise typer.Exit(143) from None
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
