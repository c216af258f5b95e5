"""dataselect: pick a small, diverse, high-value subset of a large training corpus.

The Python API mirrors the command line: each stage is a function over dataset folders.
Names are imported on first use, so `import dataselect` (and every command's start-up)
does not load every stage's libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dataselect.errors import DataError, DataselectError, UsageError

__version__ = "0.1.0"

_EXPORTS = {
    "ClusterConfig": "dataselect.clustering.config",
    "cluster": "dataselect.clustering.stage",
    "EmbedConfig": "dataselect.embedding.config",
    "embed": "dataselect.embedding.stage",
    "DedupConfig": "dataselect.deduplication.config",
    "dedup": "dataselect.deduplication.stage",
    "ScoreConfig": "dataselect.scoring.config",
    "score": "dataselect.scoring.stage",
    "SampleConfig": "dataselect.sampling.config",
    "sample": "dataselect.sampling.stage",
    "refine": "dataselect.sampling.stage",
    "Manifest": "dataselect.manifest",
    "read_manifest": "dataselect.manifest",
    "open_input": "dataselect.io.sources",
    "load_config": "dataselect.pipeline",
    "run_pipeline": "dataselect.pipeline",
    "evaluate": "dataselect.evaluation",
    "export": "dataselect.exporting",
    "describe": "dataselect.inspection",
    "make_report": "dataselect.report",
    "plan_run": "dataselect.pipeline",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dataselect' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from dataselect.clustering.config import ClusterConfig
    from dataselect.clustering.stage import cluster
    from dataselect.deduplication.config import DedupConfig
    from dataselect.deduplication.stage import dedup
    from dataselect.embedding.config import EmbedConfig
    from dataselect.embedding.stage import embed
    from dataselect.evaluation import evaluate
    from dataselect.exporting import export
    from dataselect.inspection import describe
    from dataselect.io.sources import open_input
    from dataselect.manifest import Manifest, read_manifest
    from dataselect.pipeline import load_config, plan_run, run_pipeline
    from dataselect.report import make_report
    from dataselect.sampling.config import SampleConfig
    from dataselect.sampling.stage import refine, sample
    from dataselect.scoring.config import ScoreConfig
    from dataselect.scoring.stage import score

__all__ = [
    "ClusterConfig",
    "DataError",
    "DataselectError",
    "DedupConfig",
    "EmbedConfig",
    "Manifest",
    "SampleConfig",
    "ScoreConfig",
    "UsageError",
    "__version__",
    "cluster",
    "dedup",
    "describe",
    "embed",
    "evaluate",
    "export",
    "load_config",
    "make_report",
    "open_input",
    "plan_run",
    "read_manifest",
    "refine",
    "run_pipeline",
    "sample",
    "score",
]
