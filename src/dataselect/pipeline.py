"""`dataselect run CONFIG.yaml`: embed -> cluster -> [score] -> sample, one folder per stage.

The config names the input, the run folder and each stage's options (the same names as
the command-line options, with underscores). Each stage runs through the same resumable
stage code: a stage whose folder is valid for its settings is skipped; one whose settings
or input changed is recomputed (and so, through their input fingerprints, is every stage
after it). Values are overridden from the command line with --set stage.option=value.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from dataselect.clustering.stage import ClusterConfig, cluster
from dataselect.embedding.stage import EmbedConfig, embed
from dataselect.errors import UsageError
from dataselect.sampling.stage import SampleConfig, refined_rounds, sample
from dataselect.scoring.stage import ScoreConfig, score
from dataselect.stage import StageResult

STAGES: dict[str, type] = {
    "embed": EmbedConfig,
    "cluster": ClusterConfig,
    "score": ScoreConfig,  # optional: runs only when the config has a score section
    "sample": SampleConfig,
}


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


def stage_config(name: str, values: dict[str, Any] | None) -> Any:
    cls = STAGES[name]
    values = dict(values or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - fields
    if unknown:
        raise UsageError(
            f"{name}: unknown option(s) {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(fields))})"
        )
    if name == "cluster" and "k_grid" in values:
        values["k_grid"] = tuple(values["k_grid"])
    if name == "score" and "scorers" in values:
        scorers = values["scorers"]
        values["scorers"] = (scorers,) if isinstance(scorers, str) else tuple(scorers)
    if name == "sample" and "budget" in values:
        values["budget"] = str(values["budget"])
    return cls(**values)


def run_pipeline(config: dict[str, Any], quiet: bool = False) -> list[StageResult]:
    """Run every stage in order under ``run_dir``; returns each stage's result."""
    run_dir = Path(config["run_dir"])
    configs = {name: stage_config(name, config.get(name)) for name in STAGES}
    folders = {name: run_dir / name for name in STAGES}
    results = [
        embed(config["input"], folders["embed"], configs["embed"], overwrite="stale", quiet=quiet),
        cluster(
            folders["embed"], folders["cluster"], configs["cluster"], overwrite="stale", quiet=quiet
        ),
    ]
    scored = config.get("score") is not None
    if scored:
        results.append(
            score(
                folders["cluster"],
                folders["score"],
                configs["score"],
                overwrite="stale",
                quiet=quiet,
            )
        )
    sample_input = folders["score" if scored else "cluster"]
    configs["sample"].feedback_digests = refined_rounds(
        sample_input, folders["sample"], configs["sample"]
    )
    results.append(
        sample(
            sample_input,
            folders["sample"],
            configs["sample"],
            overwrite="stale",
            quiet=quiet,
        )
    )
    return results


def run_summary(results: list[StageResult]) -> dict[str, Any]:
    """The short summary `make demo` prints: rows in, clusters, rows selected, Vendi."""
    embedded, clustered, selected = results[0], results[1], results[-1]
    outputs = selected.manifest.outputs
    return {
        "rows_in": embedded.rows,
        "clusters": clustered.manifest.outputs.get("k"),
        "rows_selected": selected.rows,
        "cluster_coverage": outputs.get("cluster_coverage"),
        "vendi_selected": outputs.get("vendi_selected"),
        "vendi_corpus": outputs.get("vendi_corpus"),
        "stages_skipped": [r.stage for r in results if r.shards_skipped == r.shards],
        "selection": str(selected.output),
    }
