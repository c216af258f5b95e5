"""The `dataselect` command: a thin layer over the Python API (one function per command)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dataselect import __version__
from dataselect.cli.common import (
    Debug,
    DryRun,
    EngineName,
    JsonSummary,
    Overwrite,
    Quiet,
    RayAddress,
    Seed,
    Workers,
    emit_plans,
    emit_summary,
    fail,
    on_engine,
    run_command,
)

app = typer.Typer(
    name="dataselect",
    help=(
        "Pick a small, diverse, high-value subset of a large training corpus.\n\n"
        "Stages read and write folders of Parquet shards: embed -> cluster -> score -> sample. "
        "Exit codes: 0 ok, 1 data or runtime error, 2 usage error."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"dataselect {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


EMBED_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect embed data/ runs/embed --embedder minilm\n\n"
    "  dataselect embed corpus.jsonl runs/embed --embedder hashing --text-column body\n\n"
    "  dataselect embed t0.parquet runs/embed --template '{prompt}\\n{completion}'\n\n"
    "  dataselect embed vectors/ runs/embed --vector-column emb --id-column doc_id\n\n"
    "INPUT is a Parquet file, folder or glob, JSONL file(s), a datasets save_to_disk "
    "folder, or another stage's folder. OUTPUT gets part-NNNNN.parquet shards (id, "
    "embedding) and _manifest.json; input shard i becomes output shard i. "
    "A rerun skips finished shards."
)


@app.command(epilog=EMBED_EPILOG)
def embed(
    input: Annotated[str, typer.Argument(help="Input data: folder, file, glob or stage folder.")],
    output: Annotated[Path, typer.Argument(help="Output stage folder.")],
    embedder: Annotated[
        str,
        typer.Option(
            "--embedder",
            "-e",
            help="minilm: all-MiniLM-L6-v2 (needs the 'embed' extra). "
            "hashing: hashed word and byte n-grams, no model, fast.",
        ),
    ] = "minilm",
    text_column: Annotated[
        str, typer.Option("--text-column", "-t", help="Column holding the text.")
    ] = "text",
    template: Annotated[
        str | None,
        typer.Option(
            help="Build the text from several columns, e.g. '{prompt}\\n{completion}' "
            "(\\n and \\t are understood).",
        ),
    ] = None,
    vector_column: Annotated[
        str | None,
        typer.Option(
            help="Take precomputed vectors from this list column (validated, normalised)."
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            help="Column with unique row ids \\[default: 'id' if present, else '<file>:<row>']."
        ),
    ] = None,
    dim: Annotated[
        int | None,
        typer.Option(
            help="hashing: output dimension \\[default: 384]. --vector-column: required dimension."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="minilm: texts per forward pass.")] = 64,
    device: Annotated[
        str, typer.Option(help="minilm: auto (GPU when there is one), cpu or cuda.")
    ] = "auto",
    shard_rows: Annotated[
        int, typer.Option(help="Cut large Parquet inputs along row groups into shards of ~N rows.")
    ] = 100_000,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    engine: EngineName = "local",
    ray_address: RayAddress = None,
    workers: Workers = "auto",
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Embed every row: write (id, embedding) shards of unit-norm float32 vectors."""
    from dataselect.embedding.stage import EmbedConfig
    from dataselect.embedding.stage import embed as embed_stage
    from dataselect.embedding.text import unescape_template

    config = EmbedConfig(
        embedder=embedder,
        text_column=text_column,
        template=unescape_template(template) if template else None,
        vector_column=vector_column,
        id_column=id_column,
        dim=dim,
        batch_size=batch_size,
        device=device,
        seed=seed,
        shard_rows=shard_rows,
    )
    if dry_run:
        from dataselect.planning import plan_embed

        plan, _ = run_command(
            debug,
            lambda: on_engine(
                engine, ray_address, workers, lambda: plan_embed(input, output, config, overwrite)
            ),
        )
        return emit_plans([plan], json_summary)
    result = run_command(
        debug,
        lambda: on_engine(
            engine,
            ray_address,
            workers,
            lambda: embed_stage(input, output, config, overwrite=overwrite, quiet=quiet),
        ),
    )
    emit_summary(result.summary(), json_summary, quiet)


CLUSTER_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect cluster runs/embed runs/cluster --k 1000\n\n"
    "  dataselect cluster runs/embed runs/cluster --k auto --k-grid 16,32,64,128\n\n"
    "  dataselect cluster new/embed new/cluster --centroids runs/cluster/centroids.npy\n\n"
    "Fits FAISS k-means on a uniform sample of at most k x --max-points-per-centroid rows "
    "(keyed by seed and id, so sharding does not change it), then assigns every row. "
    "OUTPUT gets part-NNNNN.parquet (id, cluster, distance), centroids.npy and "
    "clusters.parquet (cluster, size, mean_distance, max_distance)."
)


@app.command(epilog=CLUSTER_EPILOG)
def cluster(
    input: Annotated[str, typer.Argument(help="An embed stage folder (or any vectors).")],
    output: Annotated[Path, typer.Argument(help="Output stage folder.")],
    k: Annotated[
        str, typer.Option("--k", help="Number of clusters, or 'auto' (best silhouette on a grid).")
    ] = "100",
    k_grid: Annotated[
        str, typer.Option(help="Candidates for --k auto, comma-separated.")
    ] = "8,16,32,64,128,256,512,1024",
    niter: Annotated[int, typer.Option(help="k-means iterations.")] = 20,
    max_points_per_centroid: Annotated[
        int, typer.Option(help="The fit sample holds at most k x this many rows.")
    ] = 256,
    metric: Annotated[str, typer.Option(help="cosine (spherical k-means) or l2.")] = "cosine",
    vector_column: Annotated[str, typer.Option(help="Column holding the vectors.")] = "embedding",
    id_column: Annotated[
        str | None, typer.Option(help="Column with unique row ids \\[default: 'id' if present].")
    ] = None,
    centroids: Annotated[
        str | None,
        typer.Option(help="Assign to these centroids (a k x d .npy file) instead of fitting."),
    ] = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    engine: EngineName = "local",
    ray_address: RayAddress = None,
    workers: Workers = "auto",
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Cluster the embeddings: k-means on a sample, then every row gets its nearest centroid."""
    from dataselect.clustering.stage import ClusterConfig
    from dataselect.clustering.stage import cluster as cluster_stage

    def action() -> object:
        from dataselect.planning import plan_cluster

        config = ClusterConfig(
            k=_parse_k(k),
            k_grid=_parse_grid(k_grid),
            niter=niter,
            max_points_per_centroid=max_points_per_centroid,
            metric=metric,
            vector_column=vector_column,
            id_column=id_column,
            centroids=centroids,
            seed=seed,
        )
        if dry_run:
            return plan_cluster(input, output, config, overwrite)[0]
        return cluster_stage(input, output, config, overwrite=overwrite, quiet=quiet)

    result = run_command(debug, lambda: on_engine(engine, ray_address, workers, action))
    if dry_run:
        return emit_plans([result], json_summary)
    emit_summary(result.summary(), json_summary, quiet)


def _parse_k(value: str) -> int | str:
    from dataselect.errors import UsageError

    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--k must be a positive integer or 'auto', not {value!r}") from None


def _parse_grid(value: str) -> tuple[int, ...]:
    from dataselect.errors import UsageError

    try:
        grid = tuple(sorted({int(v) for v in value.split(",") if v.strip()}))
    except ValueError:
        raise UsageError(f"--k-grid must be integers separated by commas, not {value!r}") from None
    if not grid:
        raise UsageError("--k-grid is empty")
    return grid


SCORE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect score runs/cluster runs/score --scorer heuristic\n\n"
    "  dataselect score runs/cluster runs/score --scorer dsir --target data/wanted.parquet\n\n"
    "  dataselect score runs/cluster runs/score --scorer classifier --positives good.jsonl "
    "--negatives bad.jsonl\n\n"
    "  dataselect score runs/cluster runs/score --scorer label-agreement --label-column label\n\n"
    "  dataselect score runs/cluster runs/score --scorer influence --reference ref/embed "
    "--label-column label\n\n"
    "  dataselect score runs/cluster runs/score --scorer el2n --scorer vog "
    "--scorer column:reward\n\n"
    "[bold]Scorers[/bold] (each writes score_NAME, float32, higher = more of what it "
    "estimates)\n\n"
    "  heuristic: text quality from length, letters and repeated n-grams, in [0, 1] (also "
    "heuristic_words, heuristic_alpha, heuristic_repetition). Needs text. Cost: one pass, "
    "~10k rows/s.\n\n"
    "  dsir: log p_target(x) - log p_raw(x) under hashed word 1-2-gram models: how much a row "
    "looks like --target. Needs text and --target. Cost: one extra pass to count this input.\n\n"
    "  classifier: P(positive) of a logistic regression on hashed n-grams (PreSelect-style). "
    "Needs text and --positives/--negatives, or --model (a classifier.npz from an earlier run). "
    "Cost: a fit on the examples, then a sparse product per row.\n\n"
    "  influence: reduction of the --reference loss if the row were added to a probe fitted on "
    "the reference (exact Hessian, -I(z) of Koh and Liang). Needs embeddings, --reference (an "
    "embed folder, same embedder) and --label-column in both (or cluster ids via the "
    "centroids). Cost: one fit + one conjugate-gradient solve, then O(classes x d) per row.\n\n"
    "  el2n, grand, vog: difficulty from a probe trained --epochs epochs on --probe-rows rows' "
    "own labels (or cluster ids); high = hard or mislabeled. Needs embeddings and labels. "
    "Cost: a short SGD run, then O(epochs x classes x d) per row.\n\n"
    "  label-agreement: cross-validated probability of the row's own label (--folds probes on "
    "--probe-rows rows); low = likely mislabeled. Needs embeddings and --label-column. Cost: "
    "--folds L-BFGS fits, then O(folds x classes x d) per row.\n\n"
    "  column:NAME: a numeric column you computed (e.g. a reward model), as score_NAME.\n\n"
    "INPUT is raw data or any stage folder; text, labels and embeddings are found by "
    "following the manifests back to the embed folder and the source. OUTPUT gets "
    "part-NNNNN.parquet (id, the input's cluster, distance and score columns, the new "
    "scores) and each fitted model (dsir.npz, classifier.npz, influence.npz, difficulty.npz, "
    "label_agreement.npz), reused when a run resumes."
)


@app.command(epilog=SCORE_EPILOG)
def score(
    input: Annotated[str, typer.Argument(help="Raw data or a stage folder (cluster, embed).")],
    output: Annotated[Path, typer.Argument(help="Output stage folder.")],
    scorer: Annotated[
        list[str],
        typer.Option(
            "--scorer",
            help="heuristic, dsir, classifier, influence, el2n, grand, vog, label-agreement "
            "or column:NAME (repeatable).",
        ),
    ],
    text_column: Annotated[
        str | None,
        typer.Option(help="Text column \\[default: what the embed stage embedded, else 'text']."),
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Text from several columns, e.g. '{prompt}\\n{response}'.")
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="Labels for the probe scorers \\[default: cluster ids]."),
    ] = None,
    target: Annotated[str | None, typer.Option(help="dsir: corpus of the wanted text.")] = None,
    positives: Annotated[str | None, typer.Option(help="classifier: good examples.")] = None,
    negatives: Annotated[str | None, typer.Option(help="classifier: bad examples.")] = None,
    model: Annotated[
        str | None, typer.Option(help="classifier: reuse a fitted classifier.npz.")
    ] = None,
    reference: Annotated[
        str | None, typer.Option(help="influence: embed folder of the reference set.")
    ] = None,
    reference_text_column: Annotated[
        str | None,
        typer.Option(help="Text column of --target/--positives/--negatives \\[default: as input]."),
    ] = None,
    l2: Annotated[float, typer.Option(help="Probe L2 strength (influence, agreement).")] = 1e-3,
    probe_rows: Annotated[
        int, typer.Option(help="Rows (a keyed sample) the probes are trained on.")
    ] = 50_000,
    epochs: Annotated[int, typer.Option(help="el2n/grand/vog: probe training epochs.")] = 5,
    probe_epoch: Annotated[
        int, typer.Option(help="el2n/grand: the (early) epoch they are measured at.")
    ] = 2,
    folds: Annotated[int, typer.Option(help="label-agreement: cross-validation folds.")] = 5,
    id_column: Annotated[
        str | None,
        typer.Option(help="Raw input: column with unique ids \\[default: 'id' if present]."),
    ] = None,
    shard_rows: Annotated[
        int, typer.Option(help="Raw input: rows per shard (Parquet is cut along row groups).")
    ] = 100_000,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    engine: EngineName = "local",
    ray_address: RayAddress = None,
    workers: Workers = "auto",
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Score every row: one score_NAME column per --scorer, for top-k, kmq and the bandit."""
    from dataselect.scoring.stage import ScoreConfig
    from dataselect.scoring.stage import score as score_stage

    config = ScoreConfig(
        scorers=tuple(scorer),
        text_column=text_column,
        template=template,
        label_column=label_column,
        id_column=id_column,
        target=target,
        positives=positives,
        negatives=negatives,
        model=model,
        reference=reference,
        reference_text_column=reference_text_column,
        l2=l2,
        probe_rows=probe_rows,
        epochs=epochs,
        probe_epoch=probe_epoch,
        folds=folds,
        seed=seed,
        shard_rows=shard_rows,
    )
    if dry_run:
        from dataselect.planning import plan_score

        plan, _ = run_command(
            debug,
            lambda: on_engine(
                engine, ray_address, workers, lambda: plan_score(input, output, config, overwrite)
            ),
        )
        return emit_plans([plan], json_summary)
    result = run_command(
        debug,
        lambda: on_engine(
            engine,
            ray_address,
            workers,
            lambda: score_stage(input, output, config, overwrite=overwrite, quiet=quiet),
        ),
    )
    emit_summary(result.summary(), json_summary, quiet)


SAMPLE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy kmeans-closest --budget 1000\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy kmeans-random --budget 5%\n\n"
    "  dataselect sample runs/score runs/selection --strategy kmq --score-column score_x\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy iterative --budget 2000 "
    "--feedback probe --label-column label\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy iterative --budget 2000\n"
    "  (train on runs/selection, score its rows) ; dataselect refine runs/selection "
    "--feedback scores.parquet\n\n"
    "  dataselect sample runs/score runs/selection --strategy bandit "
    "--score-column score_influence --budget 5%\n\n"
    "[bold]iterative[/bold]: --rounds rounds each add budget/rounds rows; cluster weights "
    "start uniform (round 1 = kmq) and after each round w_j *= exp(clip(step * z_j, "
    "-max_update, 0)) (only lowered, then renormalised), z_j = the cluster's mean "
    "feedback shrunk toward the global mean by --shrinkage rows, in standard deviations "
    "of the feedback. Feedback comes from "
    "--feedback probe (cross-validated log-likelihood of each selected row's own label "
    "minus that of the probe's average class: unattended) or, round by round, from "
    "`dataselect refine`.\n\n"
    "[bold]bandit[/bold]: clusters are arms; a pull reads --probes rows of an arm, reward = "
    "their mean score - tau; arms ranked by mean reward + alpha * sd(score) * "
    "sqrt(2 ln pulls / (pulls_j + 1)); a positive reward admits --block rows. The pull log "
    "is OUTPUT/pulls.parquet.\n\n"
    "OUTPUT gets the selected rows with all their source columns (part-NNNNN.parquet, "
    "part i from source shard i), decisions.parquet (the selected rows, sorted by id: id, "
    "cluster, score, selected, reason) and selection.json (parameters, counts per cluster, "
    "Vendi scores of the selection and of the corpus, cluster coverage and entropy)."
)


@app.command(epilog=SAMPLE_EPILOG)
def sample(
    input: Annotated[str, typer.Argument(help="A cluster stage folder.")],
    output: Annotated[Path, typer.Argument(help="Output folder for the selection.")],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            "-s",
            help="random, top-k, kmeans-closest, kmeans-random, kmq, iterative or bandit.",
        ),
    ] = "kmeans-closest",
    budget: Annotated[
        str, typer.Option("--budget", "-b", help="Rows to select: a count (1000) or a share (5%).")
    ] = "5%",
    score_column: Annotated[
        str | None,
        typer.Option(
            help="Score column (higher is better): ranks top-k, draws within clusters for kmq "
            "and iterative, rewards bandit arms."
        ),
    ] = None,
    allocation: Annotated[
        str | None,
        typer.Option(
            help="Budget per cluster: proportional to size, or equal (leftovers to clusters "
            "with rows left) \\[default: equal for kmeans-closest, else proportional]."
        ),
    ] = None,
    temperature: Annotated[
        float, typer.Option(help="kmq: rows drawn with probability softmax(score / T).")
    ] = 1.0,
    budget_tokens: Annotated[
        int | None,
        typer.Option(help="Budget in tokens instead of rows: the most rows that fit."),
    ] = None,
    token_column: Annotated[
        str | None,
        typer.Option(
            help="Tokens per row for --budget-tokens \\[default: whitespace tokens of the text]."
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="iterative: rounds.")] = 3,
    feedback: Annotated[
        str | None,
        typer.Option(
            help="iterative: 'probe' runs every round unattended; left out, each later round "
            "comes from `dataselect refine OUTPUT --feedback FILE`."
        ),
    ] = None,
    label_column: Annotated[
        str | None, typer.Option(help="iterative --feedback probe: the label column.")
    ] = None,
    shrinkage: Annotated[
        float, typer.Option(help="iterative: rows of global mean added to each cluster's mean.")
    ] = 5.0,
    step: Annotated[
        float, typer.Option(help="iterative: log-weight change per standard deviation.")
    ] = 3.0,
    max_update: Annotated[
        float, typer.Option(help="iterative: most a round lowers a log-weight by.")
    ] = 2.0,
    probes: Annotated[int, typer.Option(help="bandit: rows read per pull.")] = 10,
    block: Annotated[int, typer.Option(help="bandit: rows admitted by a positive pull.")] = 5,
    alpha: Annotated[
        float, typer.Option(help="bandit: exploration, in standard deviations of the score.")
    ] = 3.0,
    tau: Annotated[
        float | None,
        typer.Option(help="bandit: reward threshold \\[default: the score column's median]."),
    ] = None,
    neighbour_radius: Annotated[
        float | None,
        typer.Option(
            help="bandit: also credit arms whose centroids lie within this cosine distance."
        ),
    ] = None,
    seed: Seed = 0,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    engine: EngineName = "local",
    ray_address: RayAddress = None,
    workers: Workers = "auto",
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Select exactly --budget rows and write them with all their original columns."""
    from dataselect.sampling.stage import SampleConfig
    from dataselect.sampling.stage import sample as sample_stage

    config = SampleConfig(
        strategy=strategy,
        budget=budget,
        score_column=score_column,
        allocation=allocation,
        temperature=temperature,
        seed=seed,
        budget_tokens=budget_tokens,
        token_column=token_column,
        rounds=rounds,
        feedback=feedback,
        label_column=label_column,
        shrinkage=shrinkage,
        step=step,
        max_update=max_update,
        probes=probes,
        block=block,
        alpha=alpha,
        tau=tau,
        neighbour_radius=neighbour_radius,
    )
    if dry_run:
        from dataselect.planning import plan_sample

        plan = run_command(
            debug,
            lambda: on_engine(
                engine, ray_address, workers, lambda: plan_sample(input, output, config, overwrite)
            ),
        )
        return emit_plans([plan], json_summary)
    result = run_command(
        debug,
        lambda: on_engine(
            engine,
            ray_address,
            workers,
            lambda: sample_stage(input, output, config, overwrite=overwrite, quiet=quiet),
        ),
    )
    emit_summary(result.summary(), json_summary, quiet)


REFINE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect refine runs/selection --feedback feedback.parquet\n\n"
    "  dataselect refine runs/selection --feedback scores.jsonl --feedback-column reward\n\n"
    "FILE holds an 'id' column and a numeric score for rows selected so far (higher is "
    "better: give -loss, not loss); ids not selected are ignored. It is stored as "
    "OUTPUT/feedback/round-NNNN.parquet, and OUTPUT then holds the rows of every round so "
    "far. The same FILE again is a no-op (or finishes a round a crash interrupted). "
    "Exit 2 once every round is done."
)


@app.command(epilog=REFINE_EPILOG)
def refine(
    output: Annotated[Path, typer.Argument(help="An iterative selection folder.")],
    feedback: Annotated[
        str, typer.Option(help="Parquet or JSONL of id and score for the rows selected so far.")
    ],
    feedback_column: Annotated[str, typer.Option(help="The score column of FILE.")] = "score",
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Run the next round of an iterative selection from your training job's feedback."""
    from dataselect.sampling.stage import refine as refine_stage

    result = run_command(
        debug, lambda: refine_stage(output, feedback, feedback_column, quiet=quiet)
    )
    emit_summary(result.summary(), json_summary, quiet)


RUN_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect run configs/kmeans-closest.yaml\n\n"
    "  dataselect run configs/kmq.yaml --set cluster.k=500 --set sample.budget=2%\n\n"
    "Runs embed, cluster, score (when the config has a score section) and sample into "
    "RUN_DIR/embed, RUN_DIR/cluster, RUN_DIR/score and RUN_DIR/sample. "
    "A stage whose folder is valid for its settings is skipped; one whose settings or input "
    "changed is recomputed, and the stages after it with it."
)


@app.command(name="run", epilog=RUN_EPILOG)
def run_config(
    config: Annotated[Path, typer.Argument(help="A YAML config (see configs/).")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a value: stage.option=value (repeatable)."),
    ] = None,
    dry_run: DryRun = False,
    engine: EngineName = "local",
    ray_address: RayAddress = None,
    workers: Workers = "auto",
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Run the whole pipeline from a config: embed -> cluster -> [score] -> sample."""
    from dataselect.engine import use_engine
    from dataselect.pipeline import load_config, run_pipeline, run_summary

    if dry_run:
        from dataselect.planning import plan_run

        plans = run_command(
            debug,
            lambda: on_engine(
                engine, ray_address, workers, lambda: plan_run(load_config(config, set_))
            ),
        )
        return emit_plans(plans, json_summary)

    def action() -> dict:
        with use_engine(engine, ray_address, workers):
            return run_summary(run_pipeline(load_config(config, set_), quiet=quiet))

    summary = run_command(debug, action)
    if json_summary:
        emit_summary(summary, True, quiet)
    else:
        print(
            f"rows in {summary['rows_in']:,}, clusters {summary['clusters']}, rows selected "
            f"{summary['rows_selected']:,}, coverage {summary['cluster_coverage']}, "
            f"Vendi q1 selected {summary['vendi_selected']['q1']} "
            f"(corpus {summary['vendi_corpus']['q1']}) -> {summary['selection']}"
        )


EVAL_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect eval --train runs/embed --test test/embed --selection runs/sample "
    "--label-column label\n\n"
    "  dataselect eval --train runs/embed --test test/embed --selection a/sample "
    "--selection b/sample --label-column intent --random-seeds 5 --json\n\n"
    "The proxy downstream evaluation: a logistic-regression probe (C = 10) is fitted on the "
    "selected rows' embeddings and labels and scored on --test; next to it, the same probe "
    "on random subsets of the same size (the random strategy's draw for seeds 0, 1, ...) "
    "and on all of --train. --train and --test are embed (or cluster/score) folders made "
    "with the same embedder; labels are read from them or their source data. A selection "
    "is a sample folder, or any data with an 'id' column."
)


@app.command(name="eval", epilog=EVAL_EPILOG)
def eval_command(
    train: Annotated[str, typer.Option(help="Embed folder of the rows selections come from.")],
    test: Annotated[str, typer.Option(help="Embed folder of the labelled test rows.")],
    selection: Annotated[list[str], typer.Option(help="A selection to evaluate (repeatable).")],
    label_column: Annotated[str, typer.Option(help="The label column.")],
    random_seeds: Annotated[
        int, typer.Option(help="Random subsets of each selection's size to compare with.")
    ] = 3,
    no_all: Annotated[
        bool, typer.Option("--no-all", help="Skip the probe on all of train.")
    ] = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Probe accuracy of selections next to random subsets of their size and all of train."""
    from dataselect.evaluation import evaluate, format_table

    report = run_command(
        debug,
        lambda: evaluate(train, test, list(selection), label_column, random_seeds, not no_all),
    )
    if json_summary:
        emit_summary(report, True, False)
    else:
        print(format_table(report))


REPORT_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect report runs/demo                (a run folder of `dataselect run`)\n\n"
    "  dataselect report runs/selection --output /tmp/selection.html\n\n"
    "Writes one self-contained HTML page (report.html in FOLDER unless --output; images "
    "embedded, no network needed to view it) and its PNGs in report-plots/ beside it: "
    "cluster sizes, a PCA projection of a keyed sample of the embeddings with the selected "
    "rows highlighted, score and distance distributions of selected vs all rows, per-cluster "
    "share selected vs share of the corpus, iterative weights or bandit rewards per round, "
    "stage timings and rows, and the diversity metrics (Vendi scores, coverage, entropy)."
)


@app.command(epilog=REPORT_EPILOG)
def report(
    folder: Annotated[Path, typer.Argument(help="A run folder or a sample (selection) folder.")],
    output: Annotated[
        Path | None, typer.Option(help="Where to write the HTML \\[default: FOLDER/report.html].")
    ] = None,
    seed: Seed = 0,
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Write an HTML report with plots of a selection and the stages behind it."""
    from dataselect.report import make_report

    summary = run_command(debug, lambda: make_report(folder, output, seed=seed))
    if json_summary:
        emit_summary(summary, True, quiet)
    elif not quiet:
        print(f"wrote {summary['report']} ({len(summary['plots'])} plots)", file=sys.stderr)


INSPECT_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect inspect runs/cluster\n\n"
    "  dataselect inspect runs/demo          (a run folder: every stage in it)\n\n"
    "  dataselect inspect runs/sample --verify --json\n\n"
    "Reads the manifest, the progress markers of an interrupted run and the Parquet "
    "footers: the stage, its parameters and input, complete or how many shards are done, "
    "rows, bytes, columns, side files and summary facts. Exit 1 when a shard is missing or "
    "damaged."
)


@app.command(epilog=INSPECT_EPILOG)
def inspect(
    folder: Annotated[Path, typer.Argument(help="A stage folder or a run folder.")],
    verify: Annotated[
        bool, typer.Option("--verify", help="Also recompute every shard's SHA-256.")
    ] = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Say what a stage folder holds: stage, parameters, input, shards, rows, completeness."""
    from dataselect.inspection import describe, format_description

    info = run_command(debug, lambda: describe(folder, verify=verify))
    if json_summary:
        emit_summary(info, True, False)
    else:
        print(format_description(info))
    stages = info["stages"] if info["kind"] == "run" else [info]
    if any(stage["problems"] for stage in stages):
        raise typer.Exit(1)


EXAMPLE_EPILOG = """[bold]Example[/bold]

  dataselect example demo/data && dataselect embed demo/data demo/embed"""


@app.command(epilog=EXAMPLE_EPILOG)
def example(
    output: Annotated[Path, typer.Argument(help="Folder to write the example corpus into.")],
    shards: Annotated[int, typer.Option(help="Number of Parquet files to write.")] = 4,
    limit: Annotated[int | None, typer.Option(help="Keep only the first N docstrings.")] = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Write the built-in example corpus: the installed Python standard library's docstrings.

    Columns: id (module:qualname), text, module, kind. Needs no network.
    """
    from dataselect.example import write_example

    if shards < 1:
        raise fail("--shards must be at least 1", 2)
    rows = run_command(debug, lambda: write_example(output, shards=shards, limit=limit))
    if not quiet:
        print(f"wrote {rows:,} docstrings in {shards} shards to {output}", file=sys.stderr)


def main() -> None:
    app()
