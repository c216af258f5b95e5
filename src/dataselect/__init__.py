"""dataselect: pick a small, diverse, high-value subset of a large training corpus.

The Python API mirrors the command line: each stage is a function over dataset folders.
"""

from __future__ import annotations

from dataselect.clustering.stage import ClusterConfig, cluster
from dataselect.embedding.stage import EmbedConfig, embed
from dataselect.errors import DataError, DataselectError, UsageError
from dataselect.evaluation import evaluate
from dataselect.inspection import describe
from dataselect.io.sources import open_input
from dataselect.manifest import Manifest, read_manifest
from dataselect.pipeline import load_config, run_pipeline
from dataselect.planning import plan_run
from dataselect.report import make_report
from dataselect.sampling.stage import SampleConfig, refine, sample
from dataselect.scoring.stage import ScoreConfig, score

__version__ = "0.1.0"

__all__ = [
    "ClusterConfig",
    "DataError",
    "DataselectError",
    "EmbedConfig",
    "Manifest",
    "SampleConfig",
    "ScoreConfig",
    "UsageError",
    "__version__",
    "cluster",
    "describe",
    "embed",
    "evaluate",
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
