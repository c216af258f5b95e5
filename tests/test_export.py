"""`dataselect export`: a selection as JSONL, Parquet or a datasets folder a trainer loads
as it is, with the source's features kept, written atomically, a rerun a no-op."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import datasets
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataselect.exporting import RECORD


def read_all(path: Path) -> bytes:
    """A file's bytes, decompressed as its suffix says (pyarrow: gzip and zstd)."""
    with pa.input_stream(str(path), compression="detect") as stream:
        return stream.read()


def selection(cli, data: Path, run: Path, budget: int = 10) -> Path:
    steps = [
        ("embed", data, run / "embed", "-e", "hashing", "--shard-rows", 40),
        ("cluster", run / "embed", run / "cluster", "--k", 4),
        ("sample", run / "cluster", run / "sample", "-b", budget),
    ]
    for step in steps:
        result = cli(*step, "-q")
        assert result.exit_code == 0, (step, result.output)
    return run / "sample"


def test_hf_export_keeps_class_labels_and_nested_types(cli, tmp_path: Path) -> None:
    features = datasets.Features({
        "text": datasets.Value("string"),
        "label": datasets.ClassLabel(names=["neg", "pos", "neutral"]),
        "tags": datasets.Sequence(datasets.Value("string")),
        "meta": {"source": datasets.Value("string"), "score": datasets.Value("float32")},
    })  # fmt: skip
    rows = 120
    source = datasets.Dataset.from_dict({
        "text": [f"text number {i} about topic {i % 5}" for i in range(rows)],
        "label": [i % 3 for i in range(rows)],
        "tags": [[f"t{i % 4}", "x"] for i in range(rows)],
        "meta": [{"source": f"s{i % 2}", "score": i / 10} for i in range(rows)],
    }, features=features)  # fmt: skip
    source.save_to_disk(str(tmp_path / "source"))
    chosen = selection(cli, tmp_path / "source", tmp_path / "run")
    result = cli("export", chosen, tmp_path / "hf", "--format", "hf", "--shards", 3, "--json")
    assert result.exit_code == 0, result.output
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    assert loaded.features["label"] == features["label"]  # ClassLabel with its names
    assert (
        loaded.features["tags"] == features["tags"] and loaded.features["meta"] == features["meta"]
    )
    expected = pq.read_table(chosen).to_pandas()
    assert len(loaded) == len(expected) == 10
    assert loaded["text"] == expected["text"].tolist()
    assert len(json.loads(result.stdout)["files"]) == 3 + 2  # 3 arrow files, state, info


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_jsonl_files_are_evenly_sized(cli, corpus: Path, tmp_path: Path, compression) -> None:
    chosen = selection(cli, corpus, tmp_path / "run")
    out = tmp_path / "jsonl"
    result = cli("export", chosen, out, "--shards", 4, "--compression", compression, "-q")
    assert result.exit_code == 0, result.output
    files = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    suffix = {"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}[compression]
    assert [p.name for p in files] == [f"part-{i:05d}-of-00004{suffix}" for i in range(4)]
    parts = [pd.read_json(io.BytesIO(read_all(p)), lines=True) for p in files]
    assert [len(p) for p in parts] == [3, 3, 2, 2]
    together = pd.concat(parts, ignore_index=True)
    expected = pq.read_table(chosen).to_pandas()
    assert together["id"].tolist() == expected["id"].tolist()
    assert together["text"].tolist() == expected["text"].tolist()
    if compression == "gzip":
        assert gzip.decompress(files[0].read_bytes()).startswith(b'{"id"')


def test_parquet_export_columns_and_no_empty_file(cli, corpus: Path, tmp_path: Path) -> None:
    chosen = selection(cli, corpus, tmp_path / "run", budget=3)
    out = tmp_path / "pq"
    result = cli("export", chosen, out, "-f", "parquet", "--shards", 8, "--columns", "id,text")
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.parquet"))
    assert len(files) == 3  # one per row at most: no empty file
    table = pq.read_table(out)
    assert table.column_names == ["id", "text"] and table.num_rows == 3


def test_rerun_skips_and_changes_are_refused(cli, corpus: Path, tmp_path: Path) -> None:
    chosen = selection(cli, corpus, tmp_path / "run")
    out = tmp_path / "out"
    assert cli("export", chosen, out, "-q").exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = cli("export", chosen, out, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["already_done"] is True
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    changed = cli("export", chosen, out, "--shards", 2)
    assert changed.exit_code == 2 and "--overwrite" in changed.output
    assert cli("export", chosen, out, "--shards", 2, "--overwrite", "-q").exit_code == 0
    assert len([p for p in out.iterdir() if p.suffix == ".jsonl"]) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert cli("export", chosen, foreign).exit_code == 2
    assert (foreign / "notes.txt").read_text() == "mine"
    assert cli("export", corpus, tmp_path / "x").exit_code == 2  # not a stage folder
    assert cli("export", chosen, tmp_path / "y", "--format", "csv").exit_code == 2


def test_a_failed_export_leaves_nothing(cli, corpus, tmp_path: Path, monkeypatch) -> None:
    chosen = selection(cli, corpus, tmp_path / "run")
    out = tmp_path / "out"

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("dataselect.exporting._publish", broken)
    with pytest.raises(OSError):
        from dataselect.exporting import export

        export(chosen, out)
    assert not out.exists()
    assert not list(tmp_path.glob(".export-*"))  # its work folder is gone too
    assert RECORD.startswith(".")  # the record is hidden from every reader


def test_the_python_api_names_the_functions() -> None:
    """`from dataselect import dedup, export` gives the functions (their modules are named
    deduplication and exporting so that no submodule shadows them)."""
    import dataselect
    from dataselect import dedup, export

    assert callable(dedup) and callable(export)
    assert dataselect.export is export and dataselect.dedup is dedup
