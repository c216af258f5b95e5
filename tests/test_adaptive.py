"""Adaptive samplers: iterative refinement (with refine and probe feedback) and the bandit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_process
from hypothesis import given, settings
from hypothesis import strategies as st

from dataselect.sampling.bandit import BanditParams, NeighbourCredit, run_bandit
from dataselect.sampling.iterative import IterativeParams, round_budgets, update_weights
from dataselect.sampling.strategies import Pool, allocate_weighted

GROUPS, PER_GROUP, DIM = 15, 60, 16
JUNK = (12, 13, 14)  # planted groups with low feedback
HIGH = (3, 7, 11)  # planted groups with a high score (bandit)


# -- pure parts ------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 10), st.integers(0, 30)), min_size=1, max_size=12),
    st.data(),
)
def test_weighted_allocation_is_exact_and_within_capacity(pairs, data) -> None:
    shares = np.array([s for s, _ in pairs])
    capacity = np.array([c for _, c in pairs])
    budget = data.draw(st.integers(0, int(capacity.sum())))
    quota = allocate_weighted(shares, capacity, budget)
    assert int(quota.sum()) == budget
    assert (quota >= 0).all() and (quota <= capacity).all()


def test_weighted_allocation_follows_the_shares() -> None:
    quota = allocate_weighted(np.array([3.0, 1.0, 0.0]), np.array([100, 100, 100]), 40)
    assert quota.tolist() == [30, 10, 0]
    # a full cluster hands its excess to the others in proportion
    assert allocate_weighted(np.array([3.0, 1.0]), np.array([5, 100]), 40).tolist() == [5, 35]


def test_round_budgets_add_up() -> None:
    assert round_budgets(10, 3) == [4, 3, 3]
    assert sum(round_budgets(1001, 7)) == 1001


def test_weight_update_only_lowers_bounded_and_keeps_unprobed_clusters() -> None:
    params = IterativeParams(shrinkage=5.0, step=3.0, max_update=2.0)
    cluster = np.repeat([0, 1, 2], 20)
    values = np.concatenate([np.ones(20), np.ones(20), np.zeros(20)])
    weights, shrunk, facts = update_weights(np.ones(4), cluster, values, params)
    assert facts["rows"] == 60
    assert shrunk[3] == pytest.approx(values.mean())  # no rows: the global mean
    # clusters 0, 1 and the unprobed 3 keep equal weights; cluster 2 drops by at most e^-2
    assert weights[0] == pytest.approx(weights[1]) == pytest.approx(weights[3])
    assert weights[2] / weights[0] == pytest.approx(np.exp(-2.0))
    assert weights.mean() == pytest.approx(1.0)
    same, _, _ = update_weights(np.ones(3), cluster, np.ones(60), params)  # constant feedback
    assert same.tolist() == [1.0, 1.0, 1.0]


def test_bandit_pool_concentrates_on_high_arms_and_retires_them() -> None:
    rng = np.random.default_rng(0)
    cluster = np.repeat(np.arange(10), 50).astype(np.int32)
    score = rng.normal(0.0, 0.1, 500) + np.isin(cluster, [2, 5]) * 1.0
    pool = Pool(keys=rng.integers(0, 2**63, 500).astype(np.uint64), cluster=cluster, score=score)
    result = run_bandit(
        pool, 120, BanditParams(probes=10, block=10, alpha=1.0, tau=0.5)
    )  # pure UCB
    rows = result.selection.rows
    assert len(rows) == 120 and len(set(rows.tolist())) == 120
    assert np.isin(cluster[rows], [2, 5]).sum() == 100  # both high arms taken whole
    arms = {a["arm"]: a for a in result.arms}
    assert arms[2]["admitted"] == arms[5]["admitted"] == 50
    kinds = result.pulls["kind"]
    assert (kinds == "start").sum() == 10  # each arm pulled once before any admission
    assert (result.pulls["admitted"][kinds == "start"] == 0).all()
    assert result.pulls["admitted"].sum() == 120


def test_bandit_coverage_floor_reaches_every_fit_arm_and_no_junk_arm() -> None:
    """Half the budget spread first over the arms not confidently below tau, in proportion
    to size: every ordinary arm gets rows, the two junk arms none; admission by score."""
    rng = np.random.default_rng(0)
    cluster = np.repeat(np.arange(10), 50).astype(np.int32)
    score = rng.normal(0.0, 0.1, 500) + np.isin(cluster, [2, 5]) * 1.0
    score -= np.isin(cluster, [8, 9]) * 2.0
    pool = Pool(keys=rng.integers(0, 2**63, 500).astype(np.uint64), cluster=cluster, score=score)
    params = BanditParams(probes=10, block=10, alpha=1.0, tau=0.0, floor=0.5, admit="score")
    result = run_bandit(pool, 120, params)
    rows = result.selection.rows
    assert len(rows) == 120 and len(set(rows.tolist())) == 120
    floor = result.pulls["kind"] == "floor"
    assert result.pulls["admitted"][floor].sum() == 60
    assert sorted(result.pulls["arm"][floor].tolist()) == [0, 1, 2, 3, 4, 5, 6, 7]
    counts = np.bincount(cluster[rows], minlength=10)
    assert (counts[:8] >= 7).all() and counts[8:].sum() == 0
    # within an arm, the highest scores first
    for arm in range(8):
        taken = rows[cluster[rows] == arm]
        rest = np.setdiff1d(np.flatnonzero(cluster == arm), taken)
        assert score[taken].min() >= score[rest].max()


def test_neighbour_credit_goes_to_close_arms_only() -> None:
    centroids = np.array([[1.0, 0.0], [0.99, 0.141], [0.0, 1.0]])
    weights = NeighbourCredit(centroids, radius=0.1)[0]
    assert weights[0] == 0.0 and weights[2] == 0.0
    assert weights[1] == pytest.approx(1 - (1 - 0.99 / np.hypot(0.99, 0.141)) / 0.1)


# -- through the CLI ---------------------------------------------------------------------------
def planted_corpus(folder: Path, shards: int = 3, draw: int | None = None) -> Path:
    """15 well separated groups of 60 vectors; labels agree within good groups, junk groups
    carry random labels; a 'quality' column is high in the HIGH groups. ``draw``: other rows
    around the same group centres (a test split)."""
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((GROUPS, DIM)) * 4
    if draw is not None:
        rng = np.random.default_rng(draw)
    group = np.repeat(np.arange(GROUPS), PER_GROUP)
    order = rng.permutation(len(group))
    group = group[order]
    x = (centers[group] + rng.standard_normal((len(group), DIM))).astype(np.float32)
    label = np.where(np.isin(group, JUNK), rng.integers(0, 4, len(group)), group % 4)
    quality = rng.normal(0.0, 0.1, len(group)) + np.isin(group, HIGH)
    folder.mkdir(parents=True)
    for s, part in enumerate(np.array_split(np.arange(len(group)), shards)):
        table = pa.table(
            {
                "id": [f"r{i:05d}" for i in part],
                "embedding": pa.FixedSizeListArray.from_arrays(x[part].reshape(-1), DIM),
                "label": [f"c{v}" for v in label[part]],
                "group": group[part],
                "quality": quality[part],
            }
        )
        pq.write_table(table, folder / f"part-{s}.parquet")
    return folder


@pytest.fixture
def planted(tmp_path: Path, cli) -> Path:
    corpus = planted_corpus(tmp_path / "corpus")
    ok = cli("embed", corpus, tmp_path / "embed", "--vector-column", "embedding", "--quiet")
    assert ok.exit_code == 0, ok.output
    ok = cli("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", GROUPS, "--quiet")
    assert ok.exit_code == 0, ok.output
    return tmp_path / "cluster"


def selected_groups(selection: Path) -> np.ndarray:
    parts = sorted(selection.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p, columns=["group"]) for p in parts]).column(
        "group"
    ).to_numpy()  # fmt: skip


def write_feedback(selection: Path, path: Path, seed: int = 0) -> None:
    """The 'training job': 1 for rows of good groups, 0 for junk, plus noise."""
    rng = np.random.default_rng(seed)
    parts = sorted(selection.glob("part-*.parquet"))
    table = pa.concat_tables([pq.read_table(p, columns=["id", "group"]) for p in parts])
    good = ~np.isin(table.column("group").to_numpy(), JUNK)
    score = good.astype(np.float64) + rng.normal(0, 0.2, table.num_rows)
    pq.write_table(pa.table({"id": table.column("id"), "score": score}), path)


def test_iterative_refine_filters_junk_clusters(planted: Path, tmp_path: Path, cli) -> None:
    budget = 150
    baseline = tmp_path / "kmeans-random"
    args = ["--budget", budget, "--quiet"]
    assert cli("sample", planted, baseline, "--strategy", "kmeans-random", *args).exit_code == 0
    junk_baseline = int(np.isin(selected_groups(baseline), JUNK).sum())
    assert junk_baseline >= 25  # 3 of 15 equal groups: ~30 of 150

    out = tmp_path / "iterative"
    assert cli("sample", planted, out, "--strategy", "iterative", *args).exit_code == 0
    state = json.loads((out / "_selection.json").read_text())
    assert (state["rounds_done"], state["rows_selected"], state["complete"]) == (1, 50, False)
    for round_ in (1, 2):
        feedback = tmp_path / f"feedback-{round_}.parquet"
        write_feedback(out, feedback, seed=round_)
        result = cli("refine", out, "--feedback", feedback, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["rounds_done"] == round_ + 1
        # the same feedback again: a no-op
        again = cli("refine", out, "--feedback", feedback, "--json")
        assert again.exit_code == 0 and json.loads(again.stdout)["rows_processed"] == 0
    state = json.loads((out / "_selection.json").read_text())
    assert state["complete"] and state["rows_selected"] == budget
    groups = selected_groups(out)
    assert len(groups) == budget
    junk = int(np.isin(groups, JUNK).sum())
    # round 1 is kmq and takes a third of kmeans-random's junk by construction; rounds 2 and
    # 3 should take almost none of theirs
    decisions = pq.read_table(out / "__artifacts__/decisions.parquet").to_pandas()
    later = decisions[decisions["round"] >= 2]
    later_junk = int(np.isin(later_groups(later, planted), JUNK).sum())
    assert later_junk <= 0.1 * junk_baseline * 2 / 3, (later_junk, junk_baseline)
    assert junk <= 0.5 * junk_baseline, (junk, junk_baseline)
    good = set(range(GROUPS)) - set(JUNK)
    assert good <= set(groups.tolist())  # every good group still covered
    weights = state["round_history"][-1]["weights"]
    assert len(weights) == GROUPS and min(weights) < 0.2 < max(weights)
    assert len(list((out / "_feedback").glob("round-*.parquet"))) == 2
    # every round is done: refine says so with exit 2
    extra = tmp_path / "feedback-3.parquet"
    write_feedback(out, extra, seed=3)
    done = cli("refine", out, "--feedback", extra)
    assert done.exit_code == 2 and "all 3 rounds are done" in done.stderr


def later_groups(decisions, cluster_folder: Path) -> np.ndarray:
    """Planted group of the given decision rows (ids map back to the corpus)."""
    corpus = cluster_folder.parent / "corpus"
    table = pa.concat_tables(
        [pq.read_table(p, columns=["id", "group"]) for p in sorted(corpus.glob("*.parquet"))]
    )
    group = dict(
        zip(table.column("id").to_pylist(), table.column("group").to_pylist(), strict=True)
    )
    return np.array([group[i] for i in decisions["id"]])


def test_refine_refuses_bad_feedback_without_touching_the_round(
    planted: Path, tmp_path: Path, cli
) -> None:
    out = tmp_path / "iterative"
    assert cli("sample", planted, out, "--strategy", "iterative", "--budget", 90,
               "--quiet").exit_code == 0  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    unknown = tmp_path / "unknown.parquet"
    pq.write_table(pa.table({"id": ["nope-1", "nope-2"], "score": [1.0, 2.0]}), unknown)
    nan = tmp_path / "nan.parquet"
    pq.write_table(pa.table({"id": ["r00001"], "score": [float("nan")]}), nan)
    no_column = tmp_path / "no-column.parquet"
    pq.write_table(pa.table({"id": ["r00001"], "reward": [1.0]}), no_column)
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "r00001", "score": 1}\n{"id": "r00001", "score": 2}\n')
    for path, words in ((unknown, "no feedback id"), (nan, "NaN"), (no_column, "score"),
                        (dup, "more than one")):  # fmt: skip
        result = cli("refine", out, "--feedback", path)
        assert result.exit_code in (1, 2), result.output
        assert words in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before and not (out / "_feedback").exists()
    # refine on a selection that is not iterative
    other = tmp_path / "random"
    assert cli("sample", planted, other, "--strategy", "random", "--budget", 9,
               "--quiet").exit_code == 0  # fmt: skip
    result = cli("refine", other, "--feedback", unknown)
    assert result.exit_code == 2 and "not an iterative selection" in result.stderr


def test_iterative_probe_loop_runs_unattended_and_resumes_identically(
    planted: Path, tmp_path: Path
) -> None:
    args = ["--strategy", "iterative", "--budget", 150, "--feedback", "probe",
            "--label-column", "label", "--quiet"]  # fmt: skip
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    assert run_process("sample", planted, whole, *args).returncode == 0
    crash = {"DATASELECT_TEST_CRASH_AFTER_SHARDS": "1"}
    assert run_process("sample", planted, crashed, *args, env=crash).returncode != 0
    assert run_process("sample", planted, crashed, *args).returncode == 0
    files = ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
             "__artifacts__/decisions.parquet", "_selection.json")  # fmt: skip
    for name in files:
        assert (whole / name).read_bytes() == (crashed / name).read_bytes(), name
    state = json.loads((whole / "_selection.json").read_text())
    assert state["rounds_done"] == 3 and state["rows_selected"] == 150
    assert [h["feedback"]["source"] for h in state["round_history"][:2]] == ["probe", "probe"]
    junk = np.isin(selected_groups(whole), JUNK).sum()
    assert junk <= 0.6 * 150 * len(JUNK) / GROUPS  # junk groups: 20% of the corpus


def test_refine_resumes_after_a_crash_with_identical_bytes(planted: Path, tmp_path: Path) -> None:
    outs = {name: tmp_path / name for name in ("whole", "crashed")}
    for out in outs.values():
        assert run_process("sample", planted, out, "--strategy", "iterative", "--budget", 90,
                           "--quiet").returncode == 0  # fmt: skip
    feedback = tmp_path / "feedback.parquet"
    write_feedback(outs["whole"], feedback)
    assert run_process("refine", outs["whole"], "--feedback", feedback, "--quiet").returncode == 0
    crash = {"DATASELECT_TEST_CRASH_AFTER_SHARDS": "1"}
    killed = run_process("refine", outs["crashed"], "--feedback", feedback, env=crash)
    assert killed.returncode != 0
    other = tmp_path / "other.parquet"
    write_feedback(outs["whole"], other, seed=9)
    refused = run_process("refine", outs["crashed"], "--feedback", other)
    assert refused.returncode == 2 and "did not finish" in refused.stderr
    assert run_process("refine", outs["crashed"], "--feedback", feedback).returncode == 0
    for name in ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet",
                 "__artifacts__/decisions.parquet", "_selection.json"):  # fmt: skip
        assert (outs["whole"] / name).read_bytes() == (outs["crashed"] / name).read_bytes()


def test_bandit_through_the_cli_writes_the_pull_log(planted: Path, tmp_path: Path, cli) -> None:
    score = tmp_path / "score"
    assert cli("score", planted, score, "--scorer", "column:quality", "--quiet").exit_code == 0
    out = tmp_path / "bandit"
    budget = len(HIGH) * PER_GROUP + 20
    args = ["--strategy", "bandit", "--score-column", "score_quality", "--budget", budget,
            "--neighbour-radius", "0.2", "--coverage-floor", "0", "--quiet"]  # fmt: skip
    result = cli("sample", score, out, *args)
    assert result.exit_code == 0, result.output
    groups = selected_groups(out)
    assert len(groups) == budget and np.isin(groups, HIGH).sum() == len(HIGH) * PER_GROUP
    log = pq.read_table(out / "__artifacts__/pulls.parquet")
    assert log.column_names == ["pull", "arm", "kind", "reward", "ucb", "admitted"]
    assert sum(log.column("admitted").to_pylist()) == budget
    state = json.loads((out / "_selection.json").read_text())
    assert state["strategy"] == "bandit" and len(state["arms"]) == GROUPS
    assert sum(a["admitted"] for a in state["arms"]) == budget
    again = tmp_path / "bandit-again"
    assert cli("sample", score, again, *args).exit_code == 0
    for name in (
        "__artifacts__/pulls.parquet",
        "__artifacts__/decisions.parquet",
        "_selection.json",
    ):
        assert (out / name).read_bytes() == (again / name).read_bytes()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--strategy", "iterative", "--feedback", "probe"], "needs --label-column"),
        (["--strategy", "iterative", "--feedback", "loss"], "--feedback must be"),
        (["--strategy", "iterative", "--rounds", "0"], "--rounds"),
        (["--strategy", "iterative", "--budget-tokens", "100"], "--budget-tokens"),
        (["--strategy", "bandit"], "needs --score-column"),
        (["--strategy", "bandit", "--score-column", "cluster", "--probes", "0"], "--probes"),
    ],
)
def test_adaptive_usage_errors(planted: Path, tmp_path: Path, cli, args, words) -> None:
    result = cli("sample", planted, tmp_path / "out", *args)
    assert result.exit_code == 2 and words in result.stderr
    assert not (tmp_path / "out").exists()
