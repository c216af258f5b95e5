"""Input discovery and reading: Parquet folders/files/globs, JSONL, datasets folders."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_parquet_folder

from dataselect.errors import DataError, UsageError
from dataselect.io.ids import batch_ids
from dataselect.io.sources import open_input


def read_all(dataset, columns):
    return [
        row
        for shard in dataset.shards
        for batch in shard.iter_batches(columns, batch_rows=7)
        for row in batch.to_pylist()
    ]


def test_parquet_folder_file_and_glob_agree(tmp_path: Path) -> None:
    folder = write_parquet_folder(tmp_path / "c", shards=3, rows=20)
    by_folder = open_input(folder)
    by_glob = open_input(str(folder / "data-*.parquet"))
    by_file = open_input(folder / "data-001.parquet")
    assert [s.relpath for s in by_folder.shards] == [f"data-00{i}.parquet" for i in range(3)]
    assert [s.relpath for s in by_glob.shards] == [s.relpath for s in by_folder.shards]
    assert by_folder.rows == 60 and by_file.rows == 20
    assert read_all(by_folder, ["id"]) == read_all(by_glob, ["id"])
    assert by_folder.fingerprint() == by_glob.fingerprint()


def test_large_file_is_cut_along_row_groups(tmp_path: Path) -> None:
    folder = write_parquet_folder(tmp_path / "c", shards=1, rows=100, row_group_size=10)
    dataset = open_input(folder, shard_rows=25)
    assert [s.rows for s in dataset.shards] == [30, 30, 30, 10]
    assert [s.first_row for s in dataset.shards] == [0, 30, 60, 90]
    rows = read_all(dataset, ["id"])
    assert [r["id"] for r in rows] == [f"row-{i:06d}" for i in range(100)]
    # derived ids count rows in the file, so they do not depend on how files are cut
    derived = []
    for shard in dataset.shards:
        offset = 0
        for batch in shard.iter_batches(["text"], batch_rows=1000):
            derived += batch_ids(batch, shard, offset, None).to_pylist()
            offset += batch.num_rows
    assert derived == [f"data-000.parquet:{i}" for i in range(100)]


def test_jsonl_files(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t{i}", "n": i}) for i in range(5)) + "\n\n")
    dataset = open_input(path)
    assert dataset.format == "jsonl" and dataset.schema.names == ["text", "n"]
    assert [r["text"] for r in read_all(dataset, ["text"])] == [f"t{i}" for i in range(5)]


def test_jsonl_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "bad \xff"}\n')
    dataset = open_input(path)
    with pytest.raises(DataError, match="line 2: invalid UTF-8"):
        read_all(dataset, ["text"])


def test_datasets_save_to_disk_folder(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(30)], "y": list(range(30))})
    ds.save_to_disk(str(tmp_path / "hf"))
    dataset = open_input(tmp_path / "hf")
    assert dataset.format == "datasets" and dataset.rows == 30
    assert [r["y"] for r in read_all(dataset, ["y"])] == list(range(30))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UsageError, match="name one split folder"):
        open_input(tmp_path / "dd")
    assert open_input(tmp_path / "dd" / "train").rows == 30


def test_schema_mismatch_between_files(tmp_path: Path) -> None:
    folder = write_parquet_folder(tmp_path / "c", shards=2, rows=5)
    pq.write_table(pa.table({"id": [1], "text": ["x"], "label": ["a"]}), folder / "data-9.parquet")
    with pytest.raises(DataError, match="schema differs.*'id' is int64"):
        open_input(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_parquet(tmp_path: Path, damage: str) -> None:
    folder = write_parquet_folder(tmp_path / "c", shards=2, rows=5)
    victim = folder / "data-001.parquet"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"PAR1" + b"x" * 50)
    with pytest.raises(DataError, match="data-001.parquet: corrupt or truncated Parquet"):
        open_input(folder)


def test_missing_and_empty_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        open_input(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no Parquet or JSONL files"):
        open_input(tmp_path / "empty")
    with pytest.raises(DataError, match="matches no files"):
        open_input(str(tmp_path / "*.parquet"))
