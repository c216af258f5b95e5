"""The `dataselect` command: a thin layer over the Python API. The stage commands are built
from their configs' options (``cli.common.stage_command``); scorers and strategies bring
their own options and --help paragraphs from their registries."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dataselect import __version__
from dataselect.cli import help_format
from dataselect.cli.common import (
    Debug,
    DryRun,
    EngineName,
    EngineOptions,
    JsonSummary,
    Quiet,
    RayAddress,
    Seed,
    Wait,
    Workers,
    emit_plans,
    emit_summary,
    fail,
    on_engine,
    run_command,
    stage_command,
    terminate,
)
from dataselect.io.lock import waiting
from dataselect.pipeline import SPECS
from dataselect.sampling.registry import STRATEGIES
from dataselect.scoring.registry import SCORERS

help_format.install()
app = typer.Typer(
    name="dataselect",
    help=(
        "Pick a small, diverse, high-value subset of a large training corpus.\n\n"
        "Stages read and write folders of Parquet shards: embed -> cluster -> score -> dedup -> "
        "sample; export writes a selection for training. "
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


STAGE_PANELS = ("Stage options", "Stage options")
INCOMPLETE_EXIT = 3  # `inspect`: a folder a run has not finished (scripts can tell)

EMBED_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect embed data/ runs/embed --embedder minilm\n\n"
    "  dataselect embed corpus.jsonl runs/embed --embedder hashing --text-column body\n\n"
    "  dataselect embed t0.parquet runs/embed --template '{prompt}\\n{completion}'\n\n"
    "  dataselect embed vectors/ runs/embed --vector-column emb --id-column doc_id\n\n"
    "INPUT is a Parquet file, folder or glob, JSONL, JSON-array, CSV or TSV file(s) "
    "(also .gz, .zst, .bz2), a datasets save_to_disk folder, or another stage's folder. "
    "OUTPUT gets part-NNNNN.parquet shards (id, embedding) and _manifest.json; input "
    "shard i becomes output shard i. "
    "A rerun skips finished shards."
)


CLUSTER_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect cluster runs/embed runs/cluster --k 1000\n\n"
    "  dataselect cluster runs/embed runs/cluster --k auto --k-grid 16,32,64,128\n\n"
    "  dataselect cluster new/embed new/cluster --centroids runs/cluster\n\n"
    "Fits FAISS k-means on a uniform sample of at most k x --max-points-per-centroid rows "
    "(keyed by seed and id, so sharding does not change it), then assigns every row. "
    "OUTPUT gets part-NNNNN.parquet (id, cluster, distance) and, in __artifacts__/, centroids.npy "
    "and clusters.parquet (cluster, size, mean_distance, max_distance)."
)


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
    + "".join(f"  {', '.join(s.names)}: {s.summary}\n\n" for s in SCORERS)
    + "INPUT is raw data or any stage folder; text, labels and embeddings are found by "
    "following the manifests back to the embed folder and the source. OUTPUT gets "
    "part-NNNNN.parquet (id, the input's cluster, distance and score columns, the new "
    "scores) and each fitted model ("
    + ", ".join(a for s in SCORERS for a in s.artifacts)
    + "), reused when a run resumes."
)
DEDUP_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect dedup runs/cluster runs/dedup\n\n"
    "  dataselect dedup runs/cluster runs/dedup --method exact,minhash,semantic --eps 0.05\n\n"
    "  dataselect dedup runs/cluster runs/dedup --method minhash --threshold 0.8 "
    "--ngram 3 --ngram-unit word\n\n"
    "  dataselect dedup runs/cluster runs/dedup --against test.parquet --against dev.jsonl\n\n"
    "  dataselect sample runs/dedup runs/selection --budget 5%   (draws only kept rows)\n\n"
    "Methods run in order (exact, minhash, semantic); a row dropped by one is not compared "
    "again. The row of a group that is kept is the first in keyed order (semantic: the "
    "closest to its centroid, or the highest --score-column), so results do not depend on "
    "sharding or engine. OUTPUT gets part-NNNNN.parquet (id, the input's cluster, distance "
    "and score columns, keep, duplicate_of: the kept row's id, similarity, dedup_method, "
    "contaminated_by: the evaluation row matched) and __artifacts__/duplicates.parquet; the "
    "summary counts the rows each method dropped."
)
SAMPLE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect sample runs/cluster runs/selection --budget 1000   (facility-location)\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy kmeans-closest --budget 1000\n\n"
    "  dataselect sample runs/cluster runs/selection --stratify-column language "
    "--mixture en=3,de=1\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy hierarchical --levels 100,10\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy kmeans-random --budget 5%\n\n"
    "  dataselect sample runs/score runs/selection --strategy kmq --score-column score_x\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy iterative --budget 2000 "
    "--feedback probe --label-column label\n\n"
    "  dataselect sample runs/cluster runs/selection --strategy iterative --budget 2000\n"
    "  (train on runs/selection, score its rows) ; dataselect refine runs/selection "
    "--feedback scores.parquet\n\n"
    "  dataselect sample runs/score runs/selection --strategy bandit "
    "--score-column score_influence --budget 5%\n\n"
    "[bold]Strategies[/bold]\n\n"
    + "".join(f"  {s.names[0]}: {s.summary}\n\n" for s in STRATEGIES)
    + "OUTPUT gets the selected rows with all their source columns (part-NNNNN.parquet, "
    "part i from source shard i), __artifacts__/decisions.parquet (the selected rows, sorted by "
    "id: id, cluster, score, selected, reason) and _selection.json (parameters, counts per "
    "cluster, Vendi scores of the selection and of the corpus, cluster coverage and entropy)."
)

app.command(name="embed", epilog=EMBED_EPILOG)(
    stage_command(
        SPECS["embed"],
        "Embed every row: write (id, embedding) shards of unit-norm float32 vectors.",
        "Input data: folder, file, glob or stage folder.",
        "Output stage folder.",
        STAGE_PANELS,
    )
)
app.command(name="cluster", epilog=CLUSTER_EPILOG)(
    stage_command(
        SPECS["cluster"],
        "Cluster the embeddings: k-means on a sample, then every row gets its nearest centroid.",
        "An embed stage folder (or any vectors).",
        "Output stage folder.",
        STAGE_PANELS,
    )
)
app.command(name="score", epilog=SCORE_EPILOG)(
    stage_command(
        SPECS["score"],
        "Score every row: one score_NAME column per --scorer, for top-k, kmq and the bandit.",
        "Raw data or a stage folder (cluster, embed).",
        "Output stage folder.",
        ("Stage options", "Scorer options"),
    )
)
app.command(name="dedup", epilog=DEDUP_EPILOG)(
    stage_command(
        SPECS["dedup"],
        "Mark duplicate rows (exact, near, semantic) and rows found in evaluation sets.",
        "A stage folder (cluster or score; embed for exact and minhash only).",
        "Output stage folder.",
        STAGE_PANELS,
    )
)
app.command(name="sample", epilog=SAMPLE_EPILOG)(
    stage_command(
        SPECS["sample"],
        "Select exactly --budget rows and write them with all their original columns.",
        "A cluster, score or dedup stage folder (its rows and their clusters).",
        "Output folder for the selection.",
        ("Stage options", "Strategy options"),
    )
)


REFINE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect refine runs/selection --feedback feedback.parquet\n\n"
    "  dataselect refine runs/selection --feedback scores.jsonl --feedback-column reward\n\n"
    "FILE holds an 'id' column and a numeric score for rows selected so far (higher is "
    "better: give -loss, not loss); ids not selected are ignored. It is stored as "
    "OUTPUT/_feedback/round-NNNN.parquet, and OUTPUT then holds the rows of every round so "
    "far. The same FILE again is a no-op (or finishes a round a crash interrupted). "
    "Exit 2 once every round is done."
)


RUN_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect run configs/kmeans-closest.yaml\n\n"
    "  dataselect run configs/kmq.yaml --set cluster.k=500 --set sample.budget=2%\n\n"
    "Runs embed, cluster, score (when the config has a score section) and sample into "
    "RUN_DIR/embed, RUN_DIR/cluster, RUN_DIR/score and RUN_DIR/sample. "
    "A stage whose folder is valid for its settings is skipped; one whose settings or input "
    "changed is recomputed, and the stages after it with it."
)


EVAL_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect eval --train runs/embed --test test/embed --selection runs/sample "
    "--label-column label\n\n"
    "  dataselect eval --train runs/embed --test test/embed --selection a/sample "
    "--selection b/sample --label-column intent --random-seeds 5 --json\n\n"
    "  dataselect eval --train runs/embed --test test.parquet --selection runs/sample "
    "--label-column label   (embedded as --train was)\n\n"
    "The proxy downstream evaluation: a logistic-regression probe (C = 10) is fitted on the "
    "selected rows' embeddings and labels and scored on --test; next to it, the same probe "
    "on random subsets of the same size (the random strategy's draw for seeds 0, 1, ...) "
    "and on all of --train. --train is an embed (or cluster/score) folder; --test is one "
    "made with the same embedder, or raw data (a file, folder or glob), which is embedded "
    "first with --train's embedder and text settings, from its lineage. Labels are read "
    "from the folders or their source data. A selection is a sample folder, or any data "
    "with an 'id' column."
)


EXPORT_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect export runs/selection train.jsonl.d --format jsonl --compression zstd\n\n"
    "  dataselect export runs/selection out/parquet --format parquet --shards 8\n\n"
    "  dataselect export runs/selection out/hf --format hf --columns text,label\n"
    "  (then: datasets.load_from_disk('out/hf'))\n\n"
    "OUTPUT is a folder of N files of nearly equal size (none empty): "
    "part-NNNNN-of-NNNNN.jsonl[.gz|.zst] or .parquet, or a datasets save_to_disk folder "
    "that keeps the source's features (ClassLabel names, nested types) when the source was "
    "a datasets folder. It is written beside OUTPUT and moved into place when complete; a "
    "rerun with the same selection and options does nothing, one with others is refused "
    "unless --overwrite."
)


REPORT_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect report runs/demo                (a run folder of `dataselect run`)\n\n"
    "  dataselect report runs/selection --output /tmp/selection.html\n\n"
    "  dataselect report runs/demo --text-column question --label-column intent\n\n"
    "Writes one self-contained HTML page (report.html in FOLDER, _report.html in a stage "
    "folder, unless --output; everything embedded, no network needed to view it) and its PNGs "
    "in report-plots/ (__report-plots__/) beside it. The page shows: the diversity metrics; "
    "an interactive 2-D map of a keyed sample of the corpus (hover a point to read its text, "
    "selected rows in red); a sortable table of the clusters with their top terms "
    "(class-based TF-IDF) and a card for each of the largest, with the texts nearest the "
    "centroid, selected texts and the lowest-scoring texts left out; the clusters with no "
    "selected row; the label distribution of corpus vs selection; the dedup stage's counts "
    "and example pairs; plots of cluster sizes, scores, per-cluster shares, iterative "
    "weights or bandit rewards and stage timings; the stages. Its size is bounded (5,000 "
    "corpus and 2,000 selected points on the map, texts cut short) and printed."
)


INSPECT_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  dataselect inspect runs/cluster\n\n"
    "  dataselect inspect runs/demo          (a run folder: every stage in it)\n\n"
    "  dataselect inspect runs/sample --verify --json\n\n"
    "Reads the manifest, the progress markers of an interrupted run and the Parquet "
    "footers: the stage, its parameters and input, complete or how many shards are done, "
    "rows, bytes, columns, side files and summary facts. Exit 1 when a shard is missing or "
    "damaged, 3 when a stage is incomplete (interrupted, or still running), 0 when all is "
    "complete."
)


EXAMPLE_EPILOG = """[bold]Example[/bold]

  dataselect example demo/data && dataselect embed demo/data demo/embed"""


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
    wait: Wait = 0.0,
) -> None:
    """Run the next round of an iterative selection from your training job's feedback."""
    from dataselect.sampling.stage import refine as refine_stage

    def action() -> Any:
        with waiting(wait):
            return refine_stage(output, feedback, feedback_column, quiet=quiet)

    result = run_command(debug, action)
    emit_summary(result.summary(), json_summary, quiet)


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
    wait: Wait = 0.0,
) -> None:
    """Run the whole pipeline from a config: embed, cluster, score and dedup (if any), sample."""
    from dataselect.pipeline import load_config, plan_run, run_pipeline, run_summary

    engines = EngineOptions(engine, ray_address, workers)
    if dry_run:
        plans = run_command(debug, lambda: on_engine(engines, lambda: plan_run(
            load_config(config, set_))))  # fmt: skip
        return emit_plans(plans, json_summary)

    def action() -> dict:
        with waiting(wait):
            return run_summary(run_pipeline(load_config(config, set_), quiet=quiet))

    summary = run_command(debug, lambda: on_engine(engines, action))
    if json_summary:
        emit_summary(summary, True, quiet)
    elif not quiet:  # on stderr, as every command's: stdout is for --json
        print(
            f"rows in {summary['rows_in']:,}"
            + (f" ({summary['rows_kept']:,} kept by dedup)" if "rows_kept" in summary else "")
            + f", clusters {summary['clusters']}, rows selected "
            f"{summary['rows_selected']:,}, coverage {summary['cluster_coverage']}, "
            f"Vendi q1 selected {summary['vendi_selected']['q1']} "
            f"(corpus {summary['vendi_corpus']['q1']}) -> {summary['selection']}",
            file=sys.stderr,
        )


@app.command(name="eval", epilog=EVAL_EPILOG)
def eval_command(
    train: Annotated[str, typer.Option(help="Embed folder of the rows selections come from.")],
    test: Annotated[
        str,
        typer.Option(
            help="The labelled test rows: an embed folder, or raw data to embed as --train was."
        ),
    ],
    selection: Annotated[list[str], typer.Option(help="A selection to evaluate (repeatable).")],
    label_column: Annotated[str, typer.Option(help="The label column.")],
    random_seeds: Annotated[
        int, typer.Option(help="Random subsets of each selection's size to compare with.")
    ] = 3,
    no_all: Annotated[
        bool, typer.Option("--no-all", help="Skip the probe on all of train.")
    ] = False,
    json_summary: JsonSummary = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Probe accuracy of selections next to random subsets of their size and all of train."""
    from dataselect.evaluation import evaluate, format_table

    report = run_command(
        debug,
        lambda: evaluate(
            train, test, list(selection), label_column, random_seeds, not no_all, quiet=quiet
        ),  # fmt: skip
    )
    for warning in report["warnings"]:
        print(f"dataselect eval: warning: {warning}", file=sys.stderr)
    if json_summary:
        emit_summary(report, True, False)
    else:
        print(format_table(report))


@app.command(epilog=EXPORT_EPILOG)
def export(
    selection: Annotated[Path, typer.Argument(help="A sample (selection) folder.")],
    output: Annotated[Path, typer.Argument(help="Folder to write the files into.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="jsonl, parquet or hf (datasets save_to_disk).")
    ] = "jsonl",
    shards: Annotated[int, typer.Option(help="Number of files (at most one per row).")] = 1,
    columns: Annotated[
        str | None, typer.Option(help="Columns to export, comma-separated \\[default: all].")
    ] = None,
    compression: Annotated[str, typer.Option(help="jsonl: none, gzip or zstd.")] = "none",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an OUTPUT that holds another export.")
    ] = False,
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Write a selection's rows as JSONL, Parquet or a datasets folder, ready for training."""
    from dataselect.exporting import export as export_selection

    names = tuple(c.strip() for c in (columns or "").split(",") if c.strip())
    summary = run_command(debug, lambda: export_selection(
        selection, output, format, shards, names, compression, overwrite))  # fmt: skip
    if json_summary:
        emit_summary(summary, True, quiet)
    elif not quiet:
        done = "already exported" if summary["already_done"] else "wrote"
        print(f"{done} {summary['rows']:,} rows in {len(summary['files'])} files -> "
              f"{summary['output']}", file=sys.stderr)  # fmt: skip


@app.command(epilog=REPORT_EPILOG)
def report(
    folder: Annotated[Path, typer.Argument(help="A run folder or a sample (selection) folder.")],
    output: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the HTML \\[default: FOLDER/report.html; _report.html in a "
            "stage folder]."
        ),
    ] = None,
    text_column: Annotated[
        str | None,
        typer.Option(
            help="Source column whose texts the report shows \\[default: what the embed "
            "stage embedded; with --vector-column, the first text column]."
        ),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(
            help="Label column compared between corpus and selection \\[default: the "
            "selection's --label-column, else a column named 'label']."
        ),
    ] = None,
    seed: Seed = 0,
    quiet: Quiet = False,
    json_summary: JsonSummary = False,
    debug: Debug = False,
) -> None:
    """Write an HTML report with plots of a selection and the stages behind it."""
    from dataselect.report import make_report

    summary = run_command(
        debug,
        lambda: make_report(
            folder, output, seed=seed, text_column=text_column, label_column=label_column
        ),
    )
    for warning in summary["warnings"]:
        print(f"dataselect: warning: {warning}", file=sys.stderr)
    if json_summary:
        emit_summary(summary, True, quiet)
    elif not quiet:
        print(f"wrote {summary['report']} ({summary['bytes'] / 1e6:.1f} MB, "
              f"{len(summary['plots'])} plots, {summary['map_points']:,} points on the map, "
              f"{summary['clusters_shown']:,} clusters)", file=sys.stderr)  # fmt: skip


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
    if not all(stage["complete"] for stage in stages):
        raise typer.Exit(INCOMPLETE_EXIT)


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
    signal.signal(signal.SIGTERM, terminate)  # like Ctrl-C: exit 143, this run's temp files gone
    app()
