"""dataselect: pick a small, diverse, high-value subset of a large training corpus.

The Python API mirrors the command line: each stage is a function over dataset folders.
"""

from __future__ import annotations

from dataselect.clustering.stage import ClusterConfig, cluster
from dataselect.embedding.stage import EmbedConfig, embed
from dataselect.errors import DataError, DataselectError, UsageError
from dataselect.io.sources import open_input
from dataselect.manifest import Manifest, read_manifest
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
    "embed",
    "open_input",
    "read_manifest",
    "refine",
    "sample",
    "score",
]
