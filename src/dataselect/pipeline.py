"""The pipeline: one spec of the stages (name, config, run, estimate, which input each reads)
that `dataselect run CONFIG.yaml`, `run --dry-run` and the stage commands all walk.

The config names the input, the run folder and each stage's options (the same names as
the command-line options, with underscores). Each stage runs through the same resumable
stage code: a stage whose folder is valid for its settings is skipped; one whose settings
or input changed is recomputed (and so, through their input fingerprints, is every stage
after it). Values are overridden from the command line with --set stage.option=value.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dataselect.clustering.config import ClusterConfig
from dataselect.deduplication.config import DedupConfig
from dataselect.embedding.config import EmbedConfig
from dataselect.errors import UsageError
from dataselect.io.lock import writing
from dataselect.options import OptionError, StageConfig
from dataselect.planning import DataShape, Plan, PlanRequest
from dataselect.sampling.config import SampleConfig
from dataselect.scoring.config import ScoreConfig
from dataselect.stage import StageResult


@dataclass(frozen=True)
class StageSpec:
    """One stage of the pipeline: its config, and where its run and its estimate live
    (imported on use, so the command line starts without every stage's libraries)."""

    name: str
    config: type[StageConfig]
    run_at: str  # "module:function" of run(input, output, config, overwrite, quiet)
    estimate_at: str  # "module:function" of estimate(config, PlanRequest)
    optional: bool = False  # `dataselect run`: only when the config has a section for it

    def run(
        self,
        input: str | Path,
        output: str | Path,
        config: Any,
        overwrite: bool | str = False,
        quiet: bool = False,
    ) -> StageResult:
        result: StageResult = _function(self.run_at)(
            input, output, config, overwrite=overwrite, quiet=quiet
        )
        return result

    def estimate(self, config: Any, request: PlanRequest) -> tuple[Plan, DataShape]:
        estimate: Callable[..., tuple[Plan, DataShape]] = _function(self.estimate_at)
        return estimate(config, request)


def _function(where: str) -> Any:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


PIPELINE = (
    StageSpec("embed", EmbedConfig, "dataselect.embedding.stage:embed",
              "dataselect.embedding.estimate:estimate_embed"),
    StageSpec("cluster", ClusterConfig, "dataselect.clustering.stage:cluster",
              "dataselect.clustering.estimate:estimate_cluster"),
    StageSpec("score", ScoreConfig, "dataselect.scoring.stage:score",
              "dataselect.scoring.estimate:estimate_score", optional=True),
    StageSpec("dedup", DedupConfig, "dataselect.deduplication.stage:dedup",
              "dataselect.deduplication.estimate:estimate_dedup", optional=True),
    StageSpec("sample", SampleConfig, "dataselect.sampling.stage:sample",
              "dataselect.sampling.estimate:estimate_sample"),
)  # fmt: skip
SPECS = {spec.name: spec for spec in PIPELINE}
STAGES: dict[str, type[StageConfig]] = {spec.name: spec.config for spec in PIPELINE}


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read the YAML config and apply ``stage.option=value`` overrides (values parsed as YAML)."""
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the config ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if not isinstance(config, dict):
        raise UsageError(f"{path}: the config must be a mapping")
    resolve_paths(config, Path(path).parent)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r}: expected key=value, e.g. cluster.k=200")
        target = config
        *parents, leaf = key.split(".")
        for name in parents:
            target = target.setdefault(name, {})
            if not isinstance(target, dict):
                raise UsageError(f"--set {item!r}: '{name}' is not a section")
        target[leaf] = yaml.safe_load(value)
    for name in ("input", "run_dir"):
        if not config.get(name):
            raise UsageError(f"{path}: '{name}' is required")
    unknown = set(config) - {"input", "run_dir", *STAGES}
    if unknown:
        raise UsageError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    return config


def resolve_paths(config: dict[str, Any], base: Path) -> None:
    """Relative paths in a config file are relative to the file's folder, not to wherever
    the command runs from (cron runs from $HOME): ``input``, ``run_dir`` and every option
    declared a path. (A --set value is taken as given: relative to the current folder.)"""

    def resolved(value: Any) -> Any:
        if isinstance(value, list):  # a repeatable path option
            return [resolved(item) for item in value]
        if isinstance(value, str) and value and "://" not in value:
            return value if Path(value).is_absolute() else os.path.normpath(base / value)
        return value

    for key in ("input", "run_dir"):
        config[key] = resolved(config.get(key))
    for name, cls in STAGES.items():
        section = config.get(name)
        if not isinstance(section, dict):
            continue
        for spec in cls.option_specs():
            if spec.meta.path and spec.name in section:
                section[spec.name] = resolved(section[spec.name])


def stage_config(name: str, values: dict[str, Any] | None) -> Any:
    """The config of stage ``name`` from its YAML section: every key an option of the stage
    (`dataselect NAME --help`), parsed as the command line parses it; errors name the key."""
    cls = STAGES[name]
    values = dict(values or {})
    known = sorted(spec.name for spec in cls.option_specs())
    unknown = set(values) - set(known)
    if unknown:
        raise UsageError(
            f"{name}: unknown option(s) {', '.join(sorted(unknown))} (known: {', '.join(known)})"
        )
    try:
        return cls(**values)
    except OptionError as exc:
        raise UsageError(f"{name}.{exc.option} {exc.problem}") from None


@dataclass(frozen=True)
class Step:
    """One stage of a run: its spec, config, input and output folder."""

    spec: StageSpec
    config: Any
    input: str | Path
    output: Path


def run_steps(config: dict[str, Any]) -> list[Step]:
    """The stages `dataselect run` runs, every config checked before any stage starts: each
    reads the folder of the one before it (the first reads the config's input)."""
    run_dir = Path(config["run_dir"])
    configs = {name: stage_config(name, config.get(name)) for name in STAGES}
    for stage in configs.values():
        stage.check()
    steps: list[Step] = []
    for spec in PIPELINE:
        if spec.optional and config.get(spec.name) is None:
            continue
        input = steps[-1].output if steps else config["input"]
        steps.append(Step(spec, configs[spec.name], input, run_dir / spec.name))
    carry_refined_rounds(steps[-1])
    return steps


def carry_refined_rounds(step: Step) -> None:
    """An iterative selection refined round by round keeps its rounds when the pipeline
    reruns (see ``sampling.stage.refined_rounds``)."""
    from dataselect.sampling.stage import refined_rounds

    step.config.options["feedback_digests"] = refined_rounds(step.input, step.output, step.config)


def run_pipeline(config: dict[str, Any], quiet: bool = False) -> list[StageResult]:
    """Run every stage in order under ``run_dir``; returns each stage's result. One run of a
    run folder at a time: a second waits or is refused (``io/lock.py``)."""
    steps = run_steps(config)
    run_dir = Path(config["run_dir"])
    run_dir.mkdir(parents=True, exist_ok=True)
    with writing(run_dir):
        return [
            step.spec.run(step.input, step.output, step.config, overwrite="stale", quiet=quiet)
            for step in steps
        ]


def plan_run(config: dict[str, Any]) -> list[Plan]:
    """Every stage of `dataselect run CONFIG`, each from its real input when that exists and
    is current, else from the shape the stage before it will write."""
    from dataselect.io.sources import open_stage_input

    steps = run_steps(config)
    source = open_stage_input(config["input"], shard_rows=steps[0].config.shard_rows)
    plans: list[Plan] = []
    shape: DataShape | None = None
    for step in steps:
        request = PlanRequest(step.input, step.output, "stale", shape, not plans, source)
        plan, shape = step.spec.estimate(step.config, request)
        plans.append(plan)
    return plans


def run_summary(results: list[StageResult]) -> dict[str, Any]:
    """The short summary `make demo` prints: rows in, clusters, rows selected, Vendi."""
    embedded, clustered, selected = results[0], results[1], results[-1]
    outputs = selected.manifest.outputs
    return {
        "rows_in": embedded.rows,
        "clusters": clustered.manifest.outputs.get("k"),
        "rows_selected": selected.rows,
        **({"rows_kept": outputs["rows_kept"]} if "rows_kept" in outputs else {}),
        "cluster_coverage": outputs.get("cluster_coverage"),
        "vendi_selected": outputs.get("vendi_selected"),
        "vendi_corpus": outputs.get("vendi_corpus"),
        "stages_skipped": [r.stage for r in results if r.shards_skipped == r.shards],
        "stages_replaced": {r.stage: r.replaced for r in results if r.replaced},
        "selection": str(selected.output),
    }
