"""How much of MiniLM's forward passes is padding: texts sorted by characters (as a plain
SentenceTransformer.encode sorts them, and as the embed stage did) against the stage's passes,
sorted by token count. Padding is computed like any token, so it is time spent for nothing.

    python scripts/bench/padding.py      # a few seconds

Writes scripts/bench/results/padding.md / .json. Needs ../shared/datasets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from common import write_results

from dataselect.embedding.minilm import MiniLMEmbedder

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


def padding_share(tokens: np.ndarray, passes: list[np.ndarray]) -> float:
    """Padded tokens over real ones, minus 1: each pass pads to its longest text."""
    padded = sum(len(rows) * int(tokens[rows].max()) for rows in passes)
    return padded / int(tokens.sum()) - 1


def by_characters(texts: list[str], size: int) -> list[np.ndarray]:
    """A plain encode's passes: longest texts (in characters) first, ``size`` at a time."""
    order = np.argsort([-len(text) for text in texts], kind="stable")
    return [order[start : start + size] for start in range(0, len(order), size)]


def main() -> None:
    banking = pq.read_table(DATASETS / "banking77.train.parquet", columns=["text"])
    rows = np.sort(np.random.default_rng(0).permutation(banking.num_rows)[:3000])
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["text"])
    t0_texts = t0.column("text").to_pylist()
    corpora = {
        "short (banking77, the embed bench's 3,000)": [
            banking.column("text").to_pylist()[i] for i in rows
        ],
        "long (T0, >1000 chars, the first 300)": [t for t in t0_texts if len(t) > 1000][:300],
        "T0, all": t0_texts,
    }
    results = []
    for name, texts in corpora.items():
        torch = MiniLMEmbedder(device="cpu", backend="torch")
        onnx = MiniLMEmbedder(device="cpu", backend="onnx")  # (passes only: no model built)
        tokens = np.array([len(ids) for ids in torch.tokenize(texts)], dtype=np.int64)
        results.append({
            "texts": name,
            "rows": len(texts),
            "plain_encode_by_characters": padding_share(tokens, by_characters(texts, 32)),
            "stage_torch_by_tokens": padding_share(tokens, torch.passes(tokens)),
            "stage_onnx_by_tokens": padding_share(tokens, onnx.passes(tokens)),
        })  # fmt: skip
    lines = [
        "# padding in MiniLM's forward passes",
        "",
        "`python scripts/bench/padding.py`: padded tokens over real tokens, minus 1. Plain "
        "encode: 32 texts a pass, sorted by characters (sentence-transformers' default); the "
        "embed stage: sorted by token count, its torch passes (at most 64 texts and 4,096 "
        "padded tokens on the CPU) and ONNX passes (16 texts, 384 padded tokens).",
        "",
        "| texts | rows | plain encode, by characters | stage torch, by tokens | "
        "stage onnx, by tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        shares = (r["plain_encode_by_characters"], r["stage_torch_by_tokens"],
                  r["stage_onnx_by_tokens"])  # fmt: skip
        lines.append(f"| {r['texts']} | {r['rows']:,} | " + " | ".join(f"{x:.1%}" for x in shares)
                     + " |")  # fmt: skip
    write_results("padding", lines, results)


if __name__ == "__main__":
    main()
