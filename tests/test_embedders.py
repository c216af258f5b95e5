"""The hashing embedder, precomputed vectors, and text templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import synthetic_texts
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.embedding.hashing import HashingEmbedder
from dataselect.embedding.stage import EmbedConfig, embed

EMBEDDER = HashingEmbedder(dim=128)


def test_hashing_vectors_are_unit_norm_float32() -> None:
    vectors = EMBEDDER.embed(["hello world", "", "!!!", "ünïcödé text 日本語"])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_hashing_similarity_follows_shared_words() -> None:
    a, b, c = EMBEDDER.embed(
        [
            "how do I transfer money to my bank account",
            "transfer money from my bank account please",
            "the weather forecast says rain and storms tomorrow",
        ]
    )
    assert a @ b > 0.4 > a @ c


def test_hashing_is_deterministic_and_seeded() -> None:
    texts = synthetic_texts(50)
    again = HashingEmbedder(dim=128).embed(texts)
    assert np.array_equal(EMBEDDER.embed(texts), again)
    assert not np.array_equal(HashingEmbedder(dim=128, seed=1).embed(texts), again)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(max_size=200), min_size=1, max_size=30), st.integers(1, 29))
def test_hashing_rows_do_not_depend_on_their_batch(texts: list[str], cut: int) -> None:
    whole = EMBEDDER.embed(texts)
    parts = np.concatenate([EMBEDDER.embed(texts[:cut]), EMBEDDER.embed(texts[cut:])])
    assert np.array_equal(whole, parts[: len(texts)])
    assert np.isfinite(whole).all()
    np.testing.assert_allclose(np.linalg.norm(whole, axis=1), 1.0, rtol=1e-5)


def test_precomputed_vectors_are_normalised(tmp_path: Path) -> None:
    raw = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 1.0]])
    for kind in (pa.list_(pa.float64()), pa.list_(pa.float32(), 2)):
        source = tmp_path / f"v{kind.id}.parquet"
        pq.write_table(pa.table({"emb": pa.array(raw.tolist(), type=kind)}), source)
        result = embed(
            source, tmp_path / f"out{kind.id}", EmbedConfig(vector_column="emb"), quiet=True
        )
        table = pq.read_table(result.output / "part-00000.parquet")
        got = np.array(table.column("embedding").to_pylist())
        np.testing.assert_allclose(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6)
        assert table.column("id").to_pylist() == [f"{source.name}:{i}" for i in range(3)]
        assert result.manifest.params["embedder"] == "precomputed"


def test_template_over_several_columns(tmp_path: Path) -> None:
    source = tmp_path / "pc.parquet"
    pq.write_table(pa.table({"prompt": ["Say hi", "Add 2+2"], "completion": ["hi", "4"]}), source)
    config = EmbedConfig(embedder="hashing", template="{prompt}\n{completion}", dim=64)
    result = embed(source, tmp_path / "out", config, quiet=True)
    got = np.array(
        pq.read_table(result.output / "part-00000.parquet").column("embedding").to_pylist()
    )
    expected = HashingEmbedder(dim=64).embed(["Say hi\nhi", "Add 2+2\n4"])
    np.testing.assert_array_equal(got.astype(np.float32), expected)


def test_jsonl_input_end_to_end(tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    texts = synthetic_texts(20)
    source.write_text("\n".join(f'{{"doc": {i}, "text": "{t}"}}' for i, t in enumerate(texts)))
    config = EmbedConfig(embedder="hashing", id_column="doc", dim=32)
    result = embed(source, tmp_path / "out", config, quiet=True)
    table = pq.read_table(result.output / "part-00000.parquet")
    assert table.column("id").to_pylist() == list(range(20))
    assert table.schema.field("id").type == pa.int64()


def test_derived_ids_across_row_groups_and_shards(tmp_path: Path) -> None:
    source = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": synthetic_texts(100)}), source, row_group_size=10)
    config = EmbedConfig(embedder="hashing", dim=16, shard_rows=25)
    result = embed(source, tmp_path / "out", config, quiet=True)
    assert result.shards == 4
    ids = pq.read_table(result.output).column("id").to_pylist()
    assert ids == [f"plain.parquet:{i}" for i in range(100)]
