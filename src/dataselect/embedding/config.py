"""The options of the embed stage (``dataselect embed``, the ``embed:`` section of a run)."""

from __future__ import annotations

from dataclasses import dataclass

from dataselect.embedding.text import parse_template
from dataselect.errors import UsageError
from dataselect.io.sources import DEFAULT_SHARD_ROWS
from dataselect.options import StageConfig, at_least, one_of, option, seed_option

EMBEDDERS = ("minilm", "static", "hashing")


@dataclass
class EmbedConfig(StageConfig):
    """Options of ``dataselect embed`` (see its --help)."""

    embedder: str = option(
        "minilm",
        "minilm: all-MiniLM-L6-v2 (needs the 'embed' extra). static: a model2vec static "
        "model distilled from it on first use (~100x faster, a few probe points lower), or "
        "--model. hashing: hashed word and byte n-grams, no model, fast.",
        flags=("--embedder", "-e"),
    )
    text_column: str = option("text", "Column holding the text.", flags=("--text-column", "-t"))
    template: str | None = option(
        None,
        "Build the text from several columns, e.g. '{prompt}\\n{completion}' (\\n and \\t "
        "are understood).",
        parse=parse_template,
    )
    vector_column: str | None = option(
        None, "Take precomputed vectors from this list column (validated, normalised)."
    )
    id_column: str | None = option(
        None, "Column with unique row ids \\[default: 'id' if present, else '<file>:<row>']."
    )
    dim: int | None = option(
        None,
        "hashing: output dimension \\[default: 384]. static: PCA dimension of the distilled "
        "model \\[default: 256]. --vector-column: required dimension.",
        parse=lambda v: None if v is None else at_least(1)(v),
    )
    batch_size: int = option(
        64, "minilm: texts per forward pass (at most 16 with an ONNX backend).",
        parse=at_least(1),
    )  # fmt: skip
    device: str = option(
        "auto", "minilm: auto (GPU when there is one), cpu or cuda.",
        parse=one_of("auto", "cpu", "cuda"),
    )  # fmt: skip
    backend: str = option(
        "torch",
        "minilm: torch (sentence-transformers), onnx (ONNX Runtime, the same vectors to "
        "1e-4, about 1.05-1.25x torch's speed on CPU) or onnx-int8 (int8 weights: 2-2.7x "
        "torch's speed on CPU, cosine to fp32 ~0.994). "
        "The ONNX models are exported from the installed package on first use and cached.",
        parse=one_of("torch", "onnx", "onnx-int8"),
    )
    model: str | None = option(
        None, "static: a model2vec model folder \\[default: distilled from the packaged MiniLM]."
    )
    model_cache: str | None = option(
        None,
        "Folder of the models built on first use \\[default: $DATASELECT_MODEL_CACHE, else "
        "the user's cache folder].",
    )
    shard_rows: int = option(
        DEFAULT_SHARD_ROWS,
        "Cut large Parquet inputs along row groups into shards of ~N rows.",
        parse=at_least(1),
    )
    seed: int = seed_option()

    def check(self) -> None:
        if self.vector_column is None and self.embedder not in EMBEDDERS:
            raise UsageError(f"--embedder must be one of {', '.join(EMBEDDERS)}")
        if self.backend != "torch" and self.device == "cuda":
            raise UsageError(f"--backend {self.backend} runs on the CPU; use --backend torch "
                             "with --device cuda")  # fmt: skip
        if self.model is not None and self.embedder != "static":
            raise UsageError("--model is for --embedder static (a model2vec model folder)")
        if self.embedder == "minilm" and self.dim not in (None, 384) and not self.vector_column:
            raise UsageError("--dim: the minilm embedder has dimension 384")
