"""The score stage: each scorer's estimate checked against ground truth, and the stage contract
(determinism, resume, lineage, bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from dataselect.io.folder_state import ARTIFACT_DIR
from dataselect.scoring.heuristic import quality, text_features
from dataselect.scoring.influence import influence_direction, influence_scores
from dataselect.scoring.probe import (
    LabelIndex,
    fit_probe,
    hessian_vector,
    mean_loss,
    probabilities,
    with_bias,
)
from tests.conftest import (
    DATASETS,
    needs_datasets,
    run_process,
    synthetic_texts,
    write_parquet_folder,
)


def read_scores(folder: Path) -> pa.Table:
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts])


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != "_manifest.json"
    }


# -- probe math --------------------------------------------------------------------------
def small_problem(seed: int, n: int, d: int = 5, classes: int = 3):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((classes, d)) * 1.5
    y = rng.integers(0, classes, n)
    x = means[y] + rng.standard_normal((n, d))
    return x, y


def test_hessian_vector_matches_finite_differences() -> None:
    x, y = small_problem(0, 40)
    x1 = with_bias(x)
    w = fit_probe(x, y, 3, 0.1)
    v = np.random.default_rng(1).standard_normal(w.shape)
    eps = 1e-6

    def grad(weights: np.ndarray) -> np.ndarray:
        p = probabilities(weights, x1)
        target = np.eye(3)[y]
        return (p - target).T @ x1 / len(x1) + 0.1 * weights

    numeric = (grad(w + eps * v) - grad(w - eps * v)) / (2 * eps)
    exact = hessian_vector(probabilities(w, x1), x1, v, 0.1)
    np.testing.assert_allclose(exact, numeric, rtol=1e-5, atol=1e-7)


def test_influence_agrees_with_leave_one_out_retraining() -> None:
    """Adding z to the probe's training set (refit: the reference with z versus without it,
    i.e. z left out) changes the reference loss as the influence score predicts."""
    x_ref, y_ref = small_problem(0, 80)
    x_z, y_z = small_problem(1, 40)
    y_z[:10] = (y_z[:10] + 1) % 3  # some rows mislabeled, so the effects spread widely
    l2 = 0.05
    weights, direction = influence_direction(x_ref, y_ref, 3, l2)
    predicted = influence_scores(weights, direction, x_z, y_z)
    base = mean_loss(weights, with_bias(x_ref), y_ref)
    actual = []
    for i in range(len(x_z)):
        refit = fit_probe(np.vstack([x_ref, x_z[i : i + 1]]), np.r_[y_ref, y_z[i]], 3, l2)
        actual.append(base - mean_loss(refit, with_bias(x_ref), y_ref))
    rho = spearmanr(predicted, actual).statistic
    assert rho >= 0.9, rho
    assert predicted[:10].mean() < predicted[10:].mean()  # mislabeled rows hurt


def test_label_index_marks_unknown_labels() -> None:
    index = LabelIndex.of(np.array(["b", "a", "c", "a"], dtype=object))
    assert index.ids(np.array(["c", "a", "zz"], dtype=object)).tolist() == [2, 0, -1]


# -- heuristic -----------------------------------------------------------------------------
def test_heuristic_scores_planted_junk_below_real_rows() -> None:
    real = [
        "How do I transfer money from my savings account to a friend?",
        "The weather forecast says it will rain heavily tomorrow afternoon.",
        "Write a function that returns the sum of two numbers in Python.",
        "My card payment was declined at the shop even though I have money.",
    ]
    junk = [
        "buy buy buy buy buy buy buy buy buy buy buy buy",
        "#$%^&*()!@#$%^&*(){}[]<>?/|\\~`",
        "",
        "   ",
        "ok",
        "spam spam eggs spam spam eggs spam spam eggs spam spam eggs",
        "12345 67890 13579 24680 11111 22222",
    ]
    scores = []
    for text in real + junk:
        words, alpha, repeated = text_features(text)
        scores.append(quality(np.array([words]), np.array([alpha]), np.array([repeated]))[0])
    assert min(scores[: len(real)]) > max(scores[len(real) :])
    assert min(scores[: len(real)]) == 1.0


# -- the stage through the CLI ---------------------------------------------------------------
@pytest.fixture
def clustered(tmp_path: Path, cli) -> Path:
    """A small labelled corpus, embedded (hashing) and clustered: 3 shards."""
    corpus = write_parquet_folder(tmp_path / "corpus", shards=3, rows=80)
    for part in sorted(corpus.glob("*.parquet")):  # a numeric column to pass through
        table = pq.read_table(part)
        reward = np.arange(table.num_rows, dtype=np.float64) / 10
        pq.write_table(table.append_column("reward", pa.array(reward)), part)
    assert (
        cli("embed", corpus, tmp_path / "embed", "--embedder", "hashing", "--quiet").exit_code == 0
    )
    assert (
        cli("cluster", tmp_path / "embed", tmp_path / "cluster", "--k", "3", "--quiet").exit_code
        == 0
    )
    return tmp_path / "cluster"


SCORE_ARGS = (
    "--scorer", "heuristic",
    "--scorer", "el2n", "--scorer", "grand", "--scorer", "vog",
    "--scorer", "label-agreement", "--label-column", "label",
    "--scorer", "column:reward",
    "--folds", "3", "--quiet",
)  # fmt: skip


def test_score_stage_columns_lineage_and_determinism(clustered: Path, tmp_path: Path, cli) -> None:
    out_a, out_b = tmp_path / "score-a", tmp_path / "score-b"
    result = cli("score", clustered, out_a, *SCORE_ARGS, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["rows"] == 240
    table = read_scores(out_a)
    names = table.column_names
    for column in ("id", "cluster", "distance", "score_heuristic", "score_el2n", "score_grand",
                   "score_vog", "score_label_agreement", "score_reward"):  # fmt: skip
        assert column in names
    assert table.column("score_reward").to_pylist()[:3] == pytest.approx([0.0, 0.1, 0.2])
    # cluster column carried unchanged from the input, row for row
    assert table.column("cluster").equals(read_scores(clustered).column("cluster"))
    for name in ("score_el2n", "score_label_agreement", "score_vog"):
        assert np.isfinite(table.column(name).to_numpy()).all()
    assert {"difficulty.npz", "label_agreement.npz"} <= {
        p.name for p in (out_a / ARTIFACT_DIR).iterdir()
    }
    assert cli("score", clustered, out_b, *SCORE_ARGS).exit_code == 0
    assert folder_bytes(out_a) == folder_bytes(out_b)
    # a rerun skips everything
    again = cli("score", clustered, out_a, *SCORE_ARGS, "--json")
    assert json.loads(again.stdout)["shards_skipped"] == 3


def test_score_resumes_after_a_crash_with_identical_bytes(clustered: Path, tmp_path: Path) -> None:
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    args = ["--scorer", "heuristic", "--scorer", "el2n", "--scorer", "label-agreement",
            "--label-column", "label", "--folds", "3", "--quiet"]  # fmt: skip
    assert run_process("score", clustered, whole, *args).returncode == 0
    crash = {"DATASELECT_TEST_CRASH_AFTER_SHARDS": "1"}
    assert run_process("score", clustered, crashed, *args, env=crash).returncode != 0
    assert (
        crashed / "__artifacts__/difficulty.npz"
    ).exists()  # the fitted probe survives for the rerun
    assert run_process("score", clustered, crashed, *args).returncode == 0
    assert folder_bytes(whole) == folder_bytes(crashed)


def test_sample_kmq_and_top_k_read_a_score_folder(clustered: Path, tmp_path: Path, cli) -> None:
    score = tmp_path / "score"
    assert cli("score", clustered, score, "--scorer", "column:reward", "--quiet").exit_code == 0
    out = tmp_path / "top"
    result = cli("sample", score, out, "--strategy", "top-k", "--score-column", "score_reward",
                 "--budget", "10", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    chosen = read_scores(out)
    # rewards are 0.0 .. 7.9 in each of the 3 shards: the 10 highest
    assert sorted(chosen.column("reward").to_pylist(), reverse=True) == pytest.approx(
        [7.9] * 3 + [7.8] * 3 + [7.7] * 3 + [7.6]
    )
    assert "text" in chosen.column_names  # joined back to the source through score/cluster/embed
    kmq = cli("sample", score, tmp_path / "kmq", "--strategy", "kmq", "--score-column",
              "score_reward", "--budget", "30", "--quiet")  # fmt: skip
    assert kmq.exit_code == 0, kmq.output
    assert read_scores(tmp_path / "kmq").num_rows == 30


def test_score_raw_input_needs_no_other_stage(tmp_path: Path, cli) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=30)
    result = cli("score", corpus, tmp_path / "score", "--scorer", "heuristic", "--quiet")
    assert result.exit_code == 0, result.output
    table = read_scores(tmp_path / "score")
    assert table.num_rows == 60 and table.column("id")[0].as_py() == "row-000000"


def test_classifier_model_is_saved_and_reusable(tmp_path: Path, cli) -> None:
    good = [t for t in synthetic_texts(60, seed=1) if "bank" in t or "card" in t][:15]
    bad = ["zzq xxv qqj " * 3 + str(i) for i in range(15)]
    pq.write_table(pa.table({"text": good}), tmp_path / "good.parquet")
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    corpus = write_parquet_folder(tmp_path / "corpus", shards=1, rows=40)
    first = tmp_path / "first"
    args = ("--scorer", "classifier", "--quiet")
    result = cli("score", corpus, first, *args, "--positives", tmp_path / "good.parquet",
                 "--negatives", tmp_path / "bad.parquet")  # fmt: skip
    assert result.exit_code == 0, result.output
    reused = tmp_path / "reused"
    result = cli("score", corpus, reused, *args, "--model", first / "__artifacts__/classifier.npz")
    assert result.exit_code == 0, result.output
    a, b = read_scores(first), read_scores(reused)
    assert a.column("score_classifier").equals(b.column("score_classifier"))
    values = a.column("score_classifier").to_numpy()
    assert ((values > 0) & (values < 1)).all()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("--scorer", "nope"), 2, "--scorer 'nope'"),
        (("--scorer", "dsir"), 2, "needs --target"),
        (("--scorer", "influence"), 2, "needs --reference"),
        (("--scorer", "label-agreement", "--label-column", "missing"), 1, "no label column"),
        (("--scorer", "column:text"), 1, "not numeric"),
        (("--scorer", "classifier"), 2, "needs --positives"),
        (("--scorer", "el2n", "--probe-epoch", "9"), 2, "--probe-epoch"),
    ],
)
def test_score_bad_input_is_one_clear_line(
    clustered: Path, tmp_path: Path, cli, args: tuple, code: int, message: str
) -> None:
    out = tmp_path / "out"
    result = cli("score", clustered, out, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.glob("part-*"))


def test_run_config_with_a_score_stage(tmp_path: Path, cli) -> None:
    corpus = write_parquet_folder(tmp_path / "corpus", shards=2, rows=60)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"input: {corpus}\nrun_dir: {tmp_path / 'run'}\n"
        "embed: {embedder: hashing}\ncluster: {k: 3}\n"
        "score: {scorers: [heuristic]}\n"
        "sample: {strategy: kmq, score_column: score_heuristic, budget: 12}\n"
    )
    result = cli("run", config, "--quiet", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_selected"] == 12
    assert (tmp_path / "run" / "score" / "_manifest.json").exists()


# -- real data -------------------------------------------------------------------------------
@needs_datasets()
def test_dsir_ranks_target_like_rows_first(tmp_path: Path, cli) -> None:
    """Target: banking77.test. Raw: 2,000 banking77.train rows + 2,000 T0 rows."""
    banking = pq.read_table(DATASETS / "banking77.train.parquet").slice(0, 2000)
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["id", "text"])
    t0 = t0.slice(0, 2000)
    raw = pa.table(
        {
            "id": banking.column("id").to_pylist() + t0.column("id").to_pylist(),
            "text": banking.column("text").to_pylist() + t0.column("text").to_pylist(),
        }
    )
    pq.write_table(raw, tmp_path / "raw.parquet")
    result = cli("score", tmp_path / "raw.parquet", tmp_path / "score", "--scorer", "dsir",
                 "--target", DATASETS / "banking77.test.parquet", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = read_scores(tmp_path / "score").column("score_dsir").to_numpy()
    truth = np.r_[np.ones(2000), np.zeros(2000)]
    assert roc_auc_score(truth, scores) >= 0.95


@needs_datasets()
def test_label_agreement_finds_shuffled_labels(tmp_path: Path, cli) -> None:
    """10% of banking77.train's labels shuffled: those rows score lower (AUC >= 0.9)."""
    table = pq.read_table(DATASETS / "banking77.train.parquet")
    rng = np.random.default_rng(0)
    labels = np.array(table.column("label").to_pylist(), dtype=object)
    noisy = rng.choice(len(labels), len(labels) // 10, replace=False)
    labels[noisy] = rng.permutation(labels)[: len(noisy)]
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[noisy] = labels[noisy] != np.array(table.column("label").to_pylist())[noisy]
    table = table.set_column(table.schema.get_field_index("label"), "label", pa.array(labels))
    pq.write_table(table, tmp_path / "noisy.parquet")
    assert cli("embed", tmp_path / "noisy.parquet", tmp_path / "embed",
               "--embedder", "hashing", "--quiet").exit_code == 0  # fmt: skip
    result = cli("score", tmp_path / "embed", tmp_path / "score", "--scorer", "label-agreement",
                 "--label-column", "label", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    scores = read_scores(tmp_path / "score").column("score_label_agreement").to_numpy()
    auc = roc_auc_score(~flipped, scores)
    assert auc >= 0.9, auc


def test_model_scorers_are_deterministic_and_resume_identically(
    clustered: Path, tmp_path: Path, cli
) -> None:
    """dsir, classifier and influence fit a model first; a crash after it keeps the model,
    and the rerun's bytes equal an uninterrupted run's."""
    texts = synthetic_texts(90, seed=5)
    pq.write_table(pa.table({"text": texts[:30]}), tmp_path / "target.parquet")
    pq.write_table(pa.table({"text": texts[30:60]}), tmp_path / "good.parquet")
    bad = [f"zzq xxv qqj {i}" for i in range(30)]
    pq.write_table(pa.table({"text": bad}), tmp_path / "bad.parquet")
    reference = write_parquet_folder(tmp_path / "reference", shards=1, rows=60, seed=7)
    embedded = cli("embed", reference, tmp_path / "ref-embed", "--embedder", "hashing", "--quiet")
    assert embedded.exit_code == 0
    args = ["--scorer", "dsir", "--target", tmp_path / "target.parquet",
            "--scorer", "classifier", "--positives", tmp_path / "good.parquet",
            "--negatives", tmp_path / "bad.parquet",
            "--scorer", "influence", "--reference", tmp_path / "ref-embed",
            "--label-column", "label", "--quiet"]  # fmt: skip
    whole, again, crashed = tmp_path / "whole", tmp_path / "again", tmp_path / "crashed"
    assert run_process("score", clustered, whole, *args).returncode == 0
    assert run_process("score", clustered, again, *args).returncode == 0
    assert folder_bytes(whole) == folder_bytes(again)
    crash = {"DATASELECT_TEST_CRASH_AFTER_SHARDS": "1"}
    assert run_process("score", clustered, crashed, *args, env=crash).returncode != 0
    for model in (
        "__artifacts__/dsir.npz",
        "__artifacts__/classifier.npz",
        "__artifacts__/influence.npz",
    ):
        assert (crashed / model).exists()
    assert run_process("score", clustered, crashed, *args).returncode == 0
    assert folder_bytes(whole) == folder_bytes(crashed)
    table = read_scores(whole)
    for name in ("score_dsir", "score_classifier", "score_influence"):
        assert np.isfinite(table.column(name).to_numpy()).all()
