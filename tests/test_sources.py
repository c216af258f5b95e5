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
    with pytest.raises(DataError, match="no Parquet, JSONL or CSV files"):
        open_input(tmp_path / "empty")
    with pytest.raises(DataError, match="matches no files"):
        open_input(str(tmp_path / "*.parquet"))


# -- the text inputs people have (issue 17, item 6) -------------------------------------------
ROWS = [{"id": i, "text": f"text number {i}", "label": f"l{i % 3}"} for i in range(7)]


def write_text_input(path: Path) -> Path:
    """ROWS in the format ``path``'s suffixes name (.jsonl/.json array/.csv/.tsv, + .gz/.zst)."""
    import io

    import pyarrow.csv as pacsv

    plain = path.name
    for suffix in (".gz", ".zst", ".bz2"):
        plain = plain.removesuffix(suffix)
    if plain.endswith((".jsonl", ".ndjson")):
        data = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
    elif plain.endswith(".json"):
        data = json.dumps(ROWS, indent=1).encode()
    else:
        sink = io.BytesIO()
        delimiter = "\t" if plain.endswith(".tsv") else ","
        pacsv.write_csv(pa.Table.from_pylist(ROWS), sink,
                        pacsv.WriteOptions(delimiter=delimiter))  # fmt: skip
        data = sink.getvalue()
    compression = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}.get(path.suffix)
    if compression:
        with pa.output_stream(str(path), compression=compression) as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "name",
    ["d.jsonl.gz", "d.jsonl.zst", "d.ndjson.bz2", "d.json", "d.json.gz", "d.csv", "d.tsv",
     "d.csv.gz"],
)  # fmt: skip
def test_text_inputs_read_the_same_rows(tmp_path: Path, name: str) -> None:
    dataset = open_input(write_text_input(tmp_path / name))
    batches = [b for s in dataset.shards for b in s.iter_batches(["id", "text", "label"], 3)]
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == [row["id"] for row in ROWS]
    assert table.column("text").to_pylist() == [row["text"] for row in ROWS]
    assert dataset.fingerprint()["files"][0]["file"] == name


def test_a_folder_of_compressed_jsonl_through_the_cli(cli, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    write_text_input(folder / "a.jsonl.gz")
    write_text_input(folder / "notes.txt").write_text("not data")
    out = tmp_path / "out"
    result = cli("embed", folder, out, "-e", "hashing", "--dim", "16", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == len(ROWS)


def test_bad_text_inputs_are_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(DataError, match="broken.jsonl.gz"):
        dataset = open_input(broken)
        list(dataset.shards[0].iter_batches(["id"]))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    (other / "image.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"no Parquet, JSONL or CSV .* \(skipped: image.png, notes"):
        open_input(other)
    scalar = tmp_path / "scalars.json"
    scalar.write_text("[1, 2]")
    with pytest.raises(DataError, match="record 1: a record must be an object"):
        open_input(scalar)


def test_chat_messages_as_text(cli, tmp_path: Path) -> None:
    """A list<struct<content, role>> column (either field order) reads as one `role:
    content` line per message, with --text-column or in a --template."""
    messages = [
        [{"content": "What is 2+2?", "role": "user"}, {"content": "4.", "role": "assistant"}],
        [{"content": "Name a colour.", "role": "user"}, {"content": "Blue", "role": "assistant"}],
    ]
    rows = {"id": ["a", "b"], "messages": messages, "tags": [["x", "y"], []]}
    pq.write_table(pa.table(rows), tmp_path / "chat.parquet")
    from dataselect.embedding.text import TextSpec

    dataset = open_input(tmp_path / "chat.parquet")
    shard = dataset.shards[0]
    batch = next(shard.iter_batches(["messages", "tags"]))
    spec = TextSpec("messages")
    spec.validate(dataset)
    assert spec.texts(batch, shard, 0)[0] == "user: What is 2+2?\nassistant: 4."
    template = TextSpec(template="{messages}\n[{tags}]")
    assert template.texts(batch, shard, 0) == [
        "user: What is 2+2?\nassistant: 4.\n[x\ny]",
        "user: Name a colour.\nassistant: Blue\n[]",
    ]
    result = cli("embed", tmp_path / "chat.parquet", tmp_path / "e", "-e", "hashing",
                 "--template", "{messages}", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output


def test_stdin_is_refused_with_a_reason(cli, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="stdin"):
        open_input("-")
    result = cli("embed", "-", tmp_path / "e", "-e", "hashing")
    assert result.exit_code == 2 and "save it first" in result.output
