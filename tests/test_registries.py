"""Every registered scorer and strategy, tested the moment it is registered: the tests below
walk ``SCORERS`` and ``STRATEGIES`` rather than a list of names.

- every scorer: two runs give the same bytes, a run killed after one shard resumes to them,
  a wrong value of each of its options is refused naming the option, and its checks name
  what is missing;
- every strategy: the budget exactly, no id twice, the same bytes for the same seed; every
  one-shot strategy: the same bytes streamed and with the rows in memory.

A new entry that needs an input the fixture below lacks fails here until the fixture gets it.
"""

from __future__ import annotations

import dataclasses
import signal
import typing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import Cli, run_process, shard_bytes, synthetic_texts

from dataselect.engine.base import CRASH_AFTER_ENV
from dataselect.errors import UsageError
from dataselect.io.folder_state import artifact_file
from dataselect.options import option_specs
from dataselect.sampling.config import SampleConfig
from dataselect.sampling.registry import STRATEGIES
from dataselect.scoring.config import ScoreConfig
from dataselect.scoring.registry import SCORERS

SCORE_COLUMN = "score_label_agreement"
# what a strategy needs besides its traits' inputs to run unattended to its full budget
UNATTENDED = {"iterative": ["--feedback", "probe", "--label-column", "label"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A labelled corpus of 3 shards with a numeric column, embedded, clustered and scored,
    and every side input a scorer may ask for."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    (root / "corpus").mkdir()
    texts = synthetic_texts(240, seed=1)
    for s in range(3):
        rows = range(80 * s, 80 * (s + 1))
        pq.write_table(
            pa.table({
                "id": [f"r{i:04d}" for i in rows],
                "text": [texts[i] for i in rows],
                "label": [str(i % 3) for i in rows],
                "reward": rng.standard_normal(80),
            }),
            root / "corpus" / f"part-{s}.parquet",
        )  # fmt: skip
    for name, seed in (("target", 2), ("positives", 3), ("negatives", 4)):
        pq.write_table(pa.table({"text": synthetic_texts(40, seed)}), root / f"{name}.parquet")
    pq.write_table(
        pa.table({"id": [f"q{i}" for i in range(60)], "text": synthetic_texts(60, 5),
                  "label": [str(i % 3) for i in range(60)]}),
        root / "reference.parquet",
    )  # fmt: skip
    cli = Cli()
    steps = [
        ("embed", root / "corpus", root / "embed", "-e", "hashing", "--dim", 32),
        ("embed", root / "reference.parquet", root / "reference", "-e", "hashing", "--dim", 32),
        ("cluster", root / "embed", root / "cluster", "--k", 5),
        ("score", root / "cluster", root / "score", "--scorer", "label-agreement",
         "--scorer", "heuristic", "--label-column", "label"),
    ]  # fmt: skip
    for step in steps:
        result = cli(*step, "-q")
        assert result.exit_code == 0, result.output
    return {name: root / name for name in ("cluster", "score", "reference")} | {
        name: root / f"{name}.parquet" for name in ("target", "positives", "negatives")
    }


def scorer_args(entry: type, world: dict[str, Path]) -> list[object]:
    """--scorer NAME and the options of ``entry`` the fixture can give."""
    name = entry.names[0].replace("NAME", "reward")  # column:NAME
    given = {"target": world["target"], "positives": world["positives"],
             "negatives": world["negatives"], "reference": world["reference"]}  # fmt: skip
    args: list[object] = ["--scorer", name, "--label-column", "label"]
    for spec in option_specs(entry.Options):
        if spec.name in given:
            args += [spec.flags[0], given[spec.name]]
    return args


@pytest.mark.parametrize("entry", list(SCORERS), ids=lambda e: e.names[0])
def test_every_scorer_is_deterministic_and_resumes_after_a_kill(entry, world, tmp_path: Path):
    args = scorer_args(entry, world)
    clean, again = tmp_path / "clean", tmp_path / "again"
    for out in (clean, again):
        done = run_process("score", world["cluster"], out, *args, "--workers", 1)
        assert done.returncode == 0, done.stderr
    assert shard_bytes(clean) == shard_bytes(again) and len(shard_bytes(clean)) == 3
    killed = tmp_path / "killed"
    crashed = run_process("score", world["cluster"], killed, *args, "--workers", 1,
                          env={CRASH_AFTER_ENV: "1"})  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(shard_bytes(killed)) == 1
    resumed = run_process("score", world["cluster"], killed, *args, "--workers", 1)
    assert resumed.returncode == 0, resumed.stderr
    assert shard_bytes(killed) == shard_bytes(clean)
    for artifact in entry.artifacts:  # a resumed run reuses the fit it kept
        assert (killed / artifact_file(artifact)).read_bytes() == (
            clean / artifact_file(artifact)
        ).read_bytes()


def wrong_value(kind: object) -> object:
    """A value of another type than ``kind`` (int, float, str, X | None, tuple[X, ...])."""
    members = set(typing.get_args(kind)) - {type(None)} or {kind}
    if members & {int, float}:
        return "not a number"
    if str(kind).startswith("tuple"):
        return [1, 2]
    return 12345


SCORER_OPTIONS = [(e, s) for e in SCORERS for s in option_specs(e.Options)]


@pytest.mark.parametrize(
    "entry, spec", SCORER_OPTIONS, ids=[f"{e.names[0]}-{s.name}" for e, s in SCORER_OPTIONS]
)
def test_every_scorer_option_refuses_a_wrong_value(entry, spec) -> None:
    with pytest.raises(UsageError, match=spec.flags[0]):
        ScoreConfig(scorers=(entry.names[0].replace("NAME", "x"),),
                    **{spec.name: wrong_value(spec.type)}).check()  # fmt: skip


@pytest.mark.parametrize("entry", list(SCORERS), ids=lambda e: e.names[0])
def test_every_scorer_check_names_what_is_missing(entry) -> None:
    config = ScoreConfig(scorers=(entry.names[0].replace("NAME", "x"),))
    try:
        config.check()
    except UsageError as error:  # e.g. dsir without --target
        assert "--" in str(error), error


STRATEGY_OPTIONS = [(e, s) for e in STRATEGIES for s in option_specs(e.Options) if s.meta.cli]


@pytest.mark.parametrize(
    "entry, spec", STRATEGY_OPTIONS, ids=[f"{e.names[0]}-{s.name}" for e, s in STRATEGY_OPTIONS]
)
def test_every_strategy_option_refuses_a_wrong_value(entry, spec) -> None:
    with pytest.raises(UsageError, match=spec.flags[0]):
        SampleConfig(strategy=entry.names[0], score_column=SCORE_COLUMN,
                     **{spec.name: wrong_value(spec.type)}).check()  # fmt: skip


def sample_args(entry: type) -> list[object]:
    name = entry.names[0]
    args: list[object] = ["--strategy", name, *UNATTENDED.get(name, [])]
    if entry.traits.needs_score:
        args += ["--score-column", SCORE_COLUMN]
    return args


@pytest.mark.parametrize("entry", list(STRATEGIES), ids=lambda e: e.names[0])
@pytest.mark.parametrize("budget", [1, 37, 240])
def test_every_strategy_meets_the_budget_exactly_without_duplicates(
    cli, entry, world, tmp_path: Path, budget: int
) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = cli("sample", world["score"], out, *sample_args(entry), "--budget", budget, "-q")
        assert result.exit_code == 0, result.output
        runs.append(out)
    parts = sorted(str(p) for p in runs[0].glob("part-*.parquet"))
    ids = pq.read_table(parts, columns=["id"]).column("id").to_pylist()
    assert len(ids) == budget == len(set(ids))
    decisions = pq.read_table(runs[0] / "__artifacts__/decisions.parquet")
    assert sorted(decisions.column("id").to_pylist()) == sorted(ids)
    for name in ("__artifacts__/decisions.parquet", "_selection.json", *shard_bytes(runs[0])):
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name


@pytest.mark.parametrize(
    "entry", [e for e in STRATEGIES if e.traits.streams], ids=lambda e: e.names[0]
)
def test_every_one_shot_strategy_gives_the_same_bytes_streamed_and_in_memory(
    entry, world, tmp_path: Path, monkeypatch
) -> None:
    from dataselect import sample

    config = SampleConfig(
        strategy=entry.names[0],
        budget="15%",
        score_column=SCORE_COLUMN if entry.traits.needs_score else None,
    )
    sample(world["score"], tmp_path / "streamed", config, quiet=True)
    monkeypatch.setattr(entry, "traits", dataclasses.replace(entry.traits, streams=False))
    sample(world["score"], tmp_path / "pool", config, quiet=True)
    for name in (
        "__artifacts__/decisions.parquet",
        "_selection.json",
        *shard_bytes(tmp_path / "streamed"),
    ):
        streamed = (tmp_path / "streamed" / name).read_bytes()
        assert streamed == (tmp_path / "pool" / name).read_bytes(), name
