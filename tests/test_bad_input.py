"""Every bad input gets one clear error line, its exit code, no traceback, no output left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_parquet_folder


def assert_clean_failure(result, code: int, *needles: str, output: Path | None = None) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dataselect: error: "), lines[0]
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    if output is not None:
        assert not output.exists() or not any(output.iterdir()), list(output.iterdir())


def hashing(cli, source: Path | str, out: Path, *extra: str):
    return cli("embed", source, out, "--embedder", "hashing", "--quiet", *extra)


def test_missing_text_column(cli, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = hashing(cli, corpus, out, "--text-column", "body")
    assert_clean_failure(result, 1, "no text column 'body'", "columns: id, text, label", output=out)


def test_missing_template_column(cli, corpus: Path, tmp_path: Path) -> None:
    result = hashing(cli, corpus, tmp_path / "out", "--template", "{text}\\n{answer}")
    assert_clean_failure(result, 1, "no text column 'answer'", output=tmp_path / "out")


def test_empty_input(cli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), empty)
    assert_clean_failure(
        hashing(cli, empty, tmp_path / "o"), 1, "has no rows", output=tmp_path / "o"
    )
    (tmp_path / "nothing").mkdir()
    result = hashing(cli, tmp_path / "nothing", tmp_path / "o")
    assert_clean_failure(result, 1, "no Parquet, JSONL or CSV files", output=tmp_path / "o")
    for files in (["empty.jsonl"], ["a.jsonl", "b.jsonl"]):  # named: the file, else the folder
        folder = tmp_path / f"jsonl-{len(files)}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("\n")
        source = folder / files[0] if len(files) == 1 else folder
        result = hashing(cli, source, tmp_path / "o")
        assert_clean_failure(result, 1, f"{source}: the JSONL input has no records",
                             output=tmp_path / "o")  # fmt: skip


def test_null_text_names_file_and_row(cli, tmp_path: Path) -> None:
    source = tmp_path / "c"
    write_parquet_folder(source, shards=2, rows=10)
    pq.write_table(
        pa.table({"id": ["a", "b"], "text": ["ok", None], "label": ["x", "y"]}),
        source / "data-002.parquet",
    )
    out = tmp_path / "out"
    result = hashing(cli, source, out)
    assert_clean_failure(
        result, 1, "data-002.parquet", "null text in column 'text' at row 1", output=out
    )


def test_non_string_text(cli, tmp_path: Path) -> None:
    source = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), source)
    result = hashing(cli, source, tmp_path / "out")
    assert_clean_failure(result, 1, "column 'text' is int64, not text", output=tmp_path / "out")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_parquet(cli, tmp_path: Path, damage: str) -> None:
    source = write_parquet_folder(tmp_path / "c", shards=3, rows=10)
    victim = source / "data-001.parquet"
    data = victim.read_bytes()
    victim.write_bytes(data[:-20] if damage == "truncate" else b"\x00" * len(data))
    result = hashing(cli, source, tmp_path / "out")
    assert_clean_failure(
        result, 1, "data-001.parquet", "corrupt or truncated", output=tmp_path / "out"
    )


def test_corrupt_page_inside_a_valid_footer(cli, tmp_path: Path) -> None:
    """Damage found only while reading: the run rolls back everything it wrote."""
    source = write_parquet_folder(tmp_path / "c", shards=3, rows=200)
    victim = source / "data-002.parquet"
    data = bytearray(victim.read_bytes())
    data[8:400] = b"\xff" * 392  # column chunk pages, footer intact
    victim.write_bytes(bytes(data))
    out = tmp_path / "out"
    result = hashing(cli, source, out)
    assert_clean_failure(result, 1, "data-002.parquet", output=out)


def _vectors_file(path: Path, vectors: list) -> Path:
    pq.write_table(pa.table({"id": [f"v{i}" for i in range(len(vectors))], "emb": vectors}), path)
    return path


def test_vectors_of_mixed_dimension(cli, tmp_path: Path) -> None:
    source = _vectors_file(tmp_path / "v.parquet", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 2.0]])
    result = cli("embed", source, tmp_path / "out", "--vector-column", "emb")
    assert_clean_failure(result, 1, "row 2", "dimension 2, expected 3", output=tmp_path / "out")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_vectors(cli, tmp_path: Path, bad: float) -> None:
    source = _vectors_file(tmp_path / "v.parquet", [[1.0, 0.0], [bad, 1.0]])
    result = cli("embed", source, tmp_path / "out", "--vector-column", "emb")
    assert_clean_failure(result, 1, "row 1", "NaN or infinite", output=tmp_path / "out")


def test_vector_dimension_other_than_required(cli, tmp_path: Path) -> None:
    source = _vectors_file(tmp_path / "v.parquet", [[1.0, 0.0], [0.0, 1.0]])
    result = cli("embed", source, tmp_path / "out", "--vector-column", "emb", "--dim", "384")
    assert_clean_failure(result, 2, "--dim 384", "dimension 2", output=tmp_path / "out")


def test_output_folder_of_another_stage(cli, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert hashing(cli, corpus, out).exit_code == 0
    manifest = json.loads((out / "_manifest.json").read_text())
    manifest["stage"] = "cluster"
    (out / "_manifest.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = hashing(cli, corpus, out)
    assert_clean_failure(result, 2, "'cluster' stage", "--overwrite")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_duplicate_ids(cli, tmp_path: Path) -> None:
    source = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "a"], "text": ["x", "y", "z"]}), source)
    result = hashing(cli, source, tmp_path / "out")
    assert_clean_failure(result, 1, "duplicate id 'a'", output=tmp_path / "out")


def test_missing_id_column(cli, corpus: Path, tmp_path: Path) -> None:
    result = hashing(cli, corpus, tmp_path / "out", "--id-column", "doc")
    assert_clean_failure(result, 1, "no id column 'doc'", output=tmp_path / "out")


def test_invalid_utf8_jsonl(cli, tmp_path: Path) -> None:
    source = tmp_path / "a.jsonl"
    source.write_bytes(b'{"text": "fine"}\n{"text": "\xc3\x28"}\n')
    result = hashing(cli, source, tmp_path / "out")
    assert_clean_failure(result, 1, "a.jsonl line 2: invalid UTF-8", output=tmp_path / "out")


def test_unwritable_output(cli, corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = hashing(cli, corpus, blocker / "out")
    assert_clean_failure(result, 1, "cannot write here")


def test_usage_errors_exit_2(cli, corpus: Path, tmp_path: Path) -> None:
    result = cli("embed", corpus, tmp_path / "out", "--embedder", "bert", "-q")
    assert_clean_failure(result, 2, "--embedder must be one of minilm, static, hashing")
    result = cli("embed", corpus, tmp_path / "out", "--device", "tpu", "-q")
    assert_clean_failure(result, 2, "--device")
    assert cli("embed", corpus).exit_code == 2  # missing OUTPUT argument


def test_debug_shows_the_traceback(cli, corpus: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no text column 'body'"):
        hashing(cli, corpus, tmp_path / "out", "--text-column", "body", "--debug")


def test_zero_vector_is_rejected(cli, tmp_path: Path) -> None:
    source = _vectors_file(tmp_path / "v.parquet", [[1.0, 0.0], [0.0, 0.0]])
    result = cli("embed", source, tmp_path / "out", "--vector-column", "emb")
    assert_clean_failure(result, 1, "row 1", "zero vector")


@pytest.mark.parametrize(
    ("vectors", "needle"),
    [([[1.0, 0.0], None], "row 1: null vector"), ([[1.0, 0.0], [0.5, None]], "null inside")],
)
def test_null_vectors(cli, tmp_path: Path, vectors: list, needle: str) -> None:
    source = _vectors_file(tmp_path / "v.parquet", vectors)
    result = cli("embed", source, tmp_path / "out", "--vector-column", "emb")
    assert_clean_failure(result, 1, needle, output=tmp_path / "out")


# -- the rest of the catalogue (README, "Bad input") -----------------------------------------
def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, hidden ones included, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_a_failed_overwrite_keeps_the_earlier_output(cli, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert hashing(cli, corpus, out).exit_code == 0
    before = folder_bytes(out)
    schema = pq.read_schema(next(corpus.glob("*.parquet")))
    bad = pa.table({"id": ["z1"], "text": [None], "label": ["0"]}, schema=schema)
    pq.write_table(bad, corpus / "data-999.parquet")
    result = hashing(cli, corpus, out, "--overwrite")
    assert_clean_failure(result, 1, "null text")
    assert folder_bytes(out) == before  # the replaced output is back, byte for byte
    assert not list(out.glob(".replaced-*"))


def test_empty_shards_are_accepted_through_the_pipeline(cli, tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    for name, ids in (("a", ["r1", "r2", "r3"]), ("b", []), ("c", ["r4", "r5", "r6"])):
        texts = [f"text of {i}" for i in ids]
        table = pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())})
        pq.write_table(table, source / f"{name}.parquet")
    assert hashing(cli, source, tmp_path / "embed").exit_code == 0
    assert cli("cluster", tmp_path / "embed", tmp_path / "cl", "--k", 2, "-q").exit_code == 0
    done = cli("sample", tmp_path / "cl", tmp_path / "sel", "--budget", 4, "--json")
    assert done.exit_code == 0 and json.loads(done.stdout)["rows"] == 4


def test_a_shard_with_another_schema(cli, tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["hello there"]}), source / "p0.parquet")
    pq.write_table(pa.table({"id": ["b"], "body": ["other"]}), source / "p1.parquet")
    result = hashing(cli, source, tmp_path / "out")
    assert_clean_failure(result, 1, "p1.parquet: schema differs", "'text' is missing",
                         output=tmp_path / "out")  # fmt: skip


def test_a_ten_megabyte_text_is_embedded(cli, tmp_path: Path) -> None:
    big = ("lorem ipsum dolor sit amet " * 400_000)[:10_000_000]
    source = tmp_path / "big.parquet"
    pq.write_table(pa.table({"id": ["big", "small"], "text": [big, "a short text"]}), source)
    assert hashing(cli, source, tmp_path / "out").exit_code == 0
    vectors = pq.read_table(tmp_path / "out" / "part-00000.parquet").column("embedding")
    assert len(vectors) == 2


@pytest.mark.parametrize(
    ("stage", "needle"),
    [
        ("cluster", "column 'text' is string, not a list of numbers"),
        ("sample", "score column 'id' is string, not numeric"),
    ],
)
def test_wrong_column_types_in_later_stages(cli, corpus: Path, tmp_path: Path, stage, needle):
    assert hashing(cli, corpus, tmp_path / "embed", "--dim", "16").exit_code == 0
    assert cli("cluster", tmp_path / "embed", tmp_path / "cl", "--k", 3, "-q").exit_code == 0
    assert cli("score", tmp_path / "cl", tmp_path / "sc", "--scorer", "column:text",
               "-q").exit_code == 1  # fmt: skip
    if stage == "cluster":
        result = cli("cluster", corpus, tmp_path / "out", "--vector-column", "text", "-q")
    else:
        result = cli("sample", tmp_path / "cl", tmp_path / "out", "-s", "top-k",
                     "--score-column", "id", "-q")  # fmt: skip
    assert result.exit_code in (1, 2) and needle in result.stderr, result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.fixture
def tiny_filesystem(tmp_path: Path):
    """A 160 kB tmpfs: the disk fills up after the first shard (needs root to mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill up: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_fails_cleanly_and_keeps_earlier_outputs(cli, tmp_path, tiny_filesystem):
    small = write_parquet_folder(tmp_path / "small", shards=1, rows=10)
    earlier = tiny_filesystem / "earlier"
    assert hashing(cli, small, earlier, "--dim", "32").exit_code == 0
    before = folder_bytes(earlier)
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=60)
    out = tiny_filesystem / "out"
    result = hashing(cli, corpus, out)  # 3 x 60 x 384 floats: ~280 kB
    assert_clean_failure(result, 1, "No space left on device", output=out)
    assert folder_bytes(earlier) == before
    assert not [p for p in tiny_filesystem.rglob(".*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("stage", ["score", "sample"])
def test_a_cycle_of_manifests_is_refused_not_followed_for_ever(cli, corpus, tmp_path, stage):
    """A cluster folder whose manifest's input points back at the folder itself."""
    assert hashing(cli, corpus, tmp_path / "embed", "--dim", "16").exit_code == 0
    clusters = tmp_path / "cl"
    assert cli("cluster", tmp_path / "embed", clusters, "--k", 3, "-q").exit_code == 0
    manifest = json.loads((clusters / "_manifest.json").read_text())
    manifest["input"]["path"] = str(clusters)
    (clusters / "_manifest.json").write_text(json.dumps(manifest))
    extra = ("--scorer", "heuristic") if stage == "score" else ()
    result = cli(stage, clusters, tmp_path / "out", *extra, "-q")
    assert_clean_failure(result, 1, "form a cycle", output=tmp_path / "out")


def test_a_missing_side_input_or_a_broken_template_is_one_line(cli, corpus, tmp_path) -> None:
    """--target, --reference, --positives naming nothing, and a template with a lone brace:
    one line with its code (they were internal errors)."""
    assert hashing(cli, corpus, tmp_path / "embed", "--dim", "16").exit_code == 0
    assert cli("cluster", tmp_path / "embed", tmp_path / "cl", "--k", 3, "-q").exit_code == 0
    nothing = tmp_path / "nothing.parquet"
    cases = [
        ("--scorer", "dsir", "--target", nothing),
        ("--scorer", "influence", "--reference", nothing),
        ("--scorer", "classifier", "--positives", nothing, "--negatives", nothing),
    ]
    for args in cases:
        result = cli("score", tmp_path / "cl", tmp_path / "out", *args, "-q")
        assert_clean_failure(
            result, 1, f"{nothing}: no such file or folder", output=tmp_path / "out"
        )
    result = hashing(cli, corpus, tmp_path / "out", "--template", "{")
    assert_clean_failure(result, 2, "--template is not a valid template", output=tmp_path / "out")


@pytest.mark.parametrize(
    "lines, needle",
    [
        (['{"id": 18446744073709551621, "text": "a b"}'], "integer beyond 64 bits"),
        (['{"id": 1, "text": "a"}', '{"id": 18446744073709551621, "text": "b"}'],
         "integer beyond 64 bits"),
        (['{"id": 1, "text": ' + "[" * 100_000 + "]" * 100_000 + "}"], "nested too deeply"),
        (['{"id": 1, "text": "a"}', '{"id": 2, "text": ' + "[" * 100_000 + "]" * 100_000 + "}"],
         "line 2: JSON nested too deeply"),
    ],
)  # fmt: skip
def test_jsonl_values_python_cannot_hold(cli, tmp_path: Path, lines: list[str], needle: str):
    source = tmp_path / "data.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert_clean_failure(hashing(cli, source, tmp_path / "o"), 1, needle, output=tmp_path / "o")


def test_an_unreadable_input_folder(cli, corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """(Tests run as root, whom permissions do not stop: the listing fails as it would.)"""

    def denied(self: Path, pattern: str):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "rglob", denied)
    result = hashing(cli, corpus, tmp_path / "o")
    assert_clean_failure(result, 1, f"{corpus}: cannot read (Permission denied)")


def test_a_token_budget_larger_than_the_data(cli, corpus: Path, tmp_path: Path) -> None:
    assert hashing(cli, corpus, tmp_path / "embed", "--dim", "16").exit_code == 0
    assert cli("cluster", tmp_path / "embed", tmp_path / "cl", "--k", 3, "-q").exit_code == 0
    result = cli("sample", tmp_path / "cl", tmp_path / "o", "--budget-tokens", 10**9, "-q")
    assert_clean_failure(result, 2, "--budget-tokens 1,000,000,000 is larger than the data",
                         "tokens in 150 rows", output=tmp_path / "o")  # fmt: skip


def test_vectors_beyond_float32_squares_are_normalised_not_zeroed(cli, tmp_path: Path) -> None:
    """3e38 (whose square overflows float32) and 1e-30 (whose square underflows): unit
    vectors pointing the same way, not zeros, and no warning."""
    values = [[3e38] * 4, [-3e38, 3e38, 0.0, 0.0], [1e-30] * 4, [1.0, 1.0, 1.0, 1.0]]
    source = _vectors_file(tmp_path / "v.parquet", values)
    result = cli("embed", source, tmp_path / "out", "--vector-column", "emb", "-q")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    table = pq.read_table(tmp_path / "out" / "part-00000.parquet")
    unit = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    half, root = np.float32(0.5), np.float32(1 / np.sqrt(2))
    assert np.allclose(unit, [[half] * 4, [-root, root, 0, 0], [half] * 4, [half] * 4])


def test_an_output_inside_its_raw_input_folder(cli, corpus: Path, tmp_path: Path) -> None:
    """The stage folder is not read as input: the rerun skips, it does not fail."""
    out = corpus / "embedded"
    assert hashing(cli, corpus, out).exit_code == 0
    rerun = cli("embed", corpus, out, "--embedder", "hashing", "--json")
    assert rerun.exit_code == 0, rerun.stderr
    assert json.loads(rerun.stdout)["shards_skipped"] == 3
