"""The score stage: input shard i -> part i with id, the input's cluster/distance/score
columns carried along, and one ``score_<name>`` float32 column per scorer.

Scorers that need a model (dsir, classifier, influence, the probes) fit it once before the
shards and keep it as an artifact beside them, so a resumed run reuses it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.embedding.text import TextSpec, unescape_template
from dataselect.errors import UsageError
from dataselect.io.ids import id_type
from dataselect.io.output import StageOutput
from dataselect.io.sources import DEFAULT_SHARD_ROWS, InputDataset, InputShard, open_stage_input
from dataselect.scoring.agreement import AgreementScorer
from dataselect.scoring.classifier import ClassifierScorer
from dataselect.scoring.column import ColumnScorer
from dataselect.scoring.difficulty import KINDS, DifficultyScorer
from dataselect.scoring.dsir import DsirScorer
from dataselect.scoring.heuristic import HeuristicScorer
from dataselect.scoring.influence import InfluenceScorer
from dataselect.scoring.rows import RowReader
from dataselect.scoring.scorer import Scorer
from dataselect.stage import SchedulingTraits, StageResult, run_stage

SCORERS = ("heuristic", "dsir", "classifier", "influence", *KINDS, "label-agreement")
CARRIED = ("cluster", "distance")  # input columns the samplers need, kept as they are
READ_ROWS = 8192
FIT_FACTS = "fits.json"  # the facts of every fit, kept for a resumed run's manifest


@dataclass
class ScoreConfig:
    """Options of ``dataselect score`` (see its --help)."""

    scorers: tuple[str, ...] = ("heuristic",)
    text_column: str | None = None
    template: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    target: str | None = None
    positives: str | None = None
    negatives: str | None = None
    model: str | None = None
    reference: str | None = None
    reference_text_column: str | None = None
    l2: float = 1e-3
    probe_rows: int = 50_000
    epochs: int = 5
    probe_epoch: int = 2
    folds: int = 5
    classifier_c: float = 1.0
    seed: int = 0
    shard_rows: int = DEFAULT_SHARD_ROWS

    def check(self) -> None:
        if not self.scorers:
            raise UsageError("name at least one --scorer")
        for name in self.scorers:
            if name not in SCORERS and not (name.startswith("column:") and len(name) > 7):
                raise UsageError(
                    f"--scorer {name!r}: choose from {', '.join(SCORERS)}, or column:NAME"
                )
        if len(set(self.scorers)) != len(self.scorers):
            raise UsageError("--scorer: each scorer once")
        if "dsir" in self.scorers and not self.target:
            raise UsageError("--scorer dsir needs --target (a corpus of the text you want)")
        if "influence" in self.scorers and not self.reference:
            raise UsageError("--scorer influence needs --reference (an embed folder)")
        if self.l2 <= 0 or self.probe_rows < 10 or self.folds < 2 or self.epochs < 1:
            raise UsageError("--l2 must be > 0, --probe-rows >= 10, --folds >= 2, --epochs >= 1")
        if not 1 <= self.probe_epoch <= self.epochs:
            raise UsageError(f"--probe-epoch must be between 1 and --epochs ({self.epochs})")

    def text_spec(self) -> TextSpec | None:
        if self.template:
            return TextSpec(template=unescape_template(self.template))
        return TextSpec(self.text_column) if self.text_column else None

    def build(self) -> list[Scorer]:
        """The scorers, in the order given (el2n, grand and vog share one probe)."""
        reference_text = (
            TextSpec(self.reference_text_column) if self.reference_text_column else None
        )
        scorers: list[Scorer] = []
        difficulty = [name for name in self.scorers if name in KINDS]
        for name in self.scorers:
            if name == "heuristic":
                scorers.append(HeuristicScorer())
            elif name == "dsir":
                scorers.append(DsirScorer(str(self.target), reference_text))
            elif name == "classifier":
                scorers.append(
                    ClassifierScorer(
                        self.positives,
                        self.negatives,
                        self.model,
                        reference_text,
                        self.classifier_c,
                        self.seed,
                    )
                )
            elif name == "influence":
                scorers.append(InfluenceScorer(str(self.reference), self.label_column, self.l2))
            elif name in KINDS and name == difficulty[0]:
                scorers.append(
                    DifficultyScorer(
                        difficulty,
                        self.label_column,
                        self.probe_rows,
                        self.epochs,
                        self.probe_epoch,
                        self.seed,
                    )
                )
            elif name == "label-agreement":
                scorers.append(
                    AgreementScorer(
                        self.label_column, self.probe_rows, self.folds, self.l2, self.seed
                    )
                )
            elif name.startswith("column:"):
                scorers.append(ColumnScorer(name.split(":", 1)[1]))
        return scorers


class ScoreStage:
    name = "score"
    traits = SchedulingTraits()  # one scorer per core: side by side in worker processes

    def __init__(self, dataset: InputDataset, config: ScoreConfig) -> None:
        config.check()
        self.dataset = dataset
        self.config = config
        self.scorers = config.build()
        self.reader = RowReader(
            dataset.path,
            text=config.text_spec(),
            label_column=config.label_column,
            id_column=config.id_column,
            dataset=dataset,
        )
        self.fields = sorted({f for s in self.scorers for f in s.needs})
        self.raw_columns = [c for s in self.scorers for c in s.columns]
        self.reader.check(self.fields, self.raw_columns)
        new = [field for s in self.scorers for field in s.fields()]
        names = {field.name for field in new}
        if len(names) != len(new):
            raise UsageError("two scorers would write the same column")
        self.carried = [
            field
            for field in dataset.schema
            if (field.name in CARRIED or field.name.startswith(("score_", "heuristic_")))
            and field.name not in names
            and dataset.manifest is not None
        ]
        self.schema = pa.schema(
            [pa.field("id", id_type(dataset, self.reader.id_column), nullable=False)]
            + self.carried
            + new
        )
        self.artifacts = (*(a for s in self.scorers for a in s.artifacts), FIT_FACTS)
        self.facts: dict[str, Any] = {}

    def params(self) -> dict[str, Any]:
        params = asdict(self.config)
        params["id_column"] = self.reader.id_column
        params["text"] = asdict(self.reader.text) if "text" in self.fields else None
        params["scorers"] = {s.name: s.params() for s in self.scorers}
        return params

    # -- stage hooks -------------------------------------------------------------------
    def setup(self, output: StageOutput) -> None:
        for scorer in self.scorers:  # a resumed run reloads each fitted model
            self.facts[scorer.name] = scorer.fit(self.reader, output)
        saved = output.folder / FIT_FACTS
        if saved.exists():  # resumed: the facts of the fits as they were made
            self.facts = json.loads(saved.read_text())
        else:
            output.write_artifact(FIT_FACTS, json.dumps(self.facts, sort_keys=True).encode())

    def process(self, shard: InputShard) -> Iterator[pa.RecordBatch]:
        carried = [f.name for f in self.carried]
        for rows in self.reader.shard_rows(
            shard.index, self.fields, [*self.raw_columns, *carried], batch_rows=READ_ROWS
        ):
            columns: dict[str, Any] = {"id": rows.ids}
            columns.update({name: rows.columns[name] for name in carried})
            for scorer in self.scorers:
                columns.update(scorer.score(rows))
            yield pa.RecordBatch.from_arrays(
                [pa.array(columns[name]) if not isinstance(columns[name], pa.Array)
                 else columns[name] for name in self.schema.names],
                schema=self.schema,
            )  # fmt: skip

    def finish(self, output: StageOutput) -> dict[str, Any]:
        """Per score column: min, mean, quantiles and max over every row."""
        columns = [f.name for s in self.scorers for f in s.fields()]
        scores = [c for c in columns if c.startswith("score_")]
        parts = [
            pq.read_table(output.folder / str(record["file"]), columns=scores)
            for record in sorted(output.done.values(), key=lambda r: int(r["index"]))
        ]
        table = pa.concat_tables(parts) if parts else None
        summary: dict[str, Any] = {}
        for name in scores:
            if table is None or table.num_rows == 0:
                continue
            values = table.column(name).to_numpy().astype(np.float64)
            finite = values[np.isfinite(values)]
            if len(finite) == 0:
                summary[name] = {"finite": 0}
                continue
            q = np.quantile(finite, [0.1, 0.5, 0.9])
            summary[name] = {
                "min": round(float(finite.min()), 6),
                "p10": round(float(q[0]), 6),
                "median": round(float(q[1]), 6),
                "p90": round(float(q[2]), 6),
                "max": round(float(finite.max()), 6),
                "mean": round(float(finite.mean()), 6),
                "not_finite": int(len(values) - len(finite)),
            }
        return {"scores": summary, "fits": self.facts}


def score(
    input: str | Path,
    output: str | Path,
    config: ScoreConfig | None = None,
    overwrite: bool | str = False,
    quiet: bool = False,
) -> StageResult:
    """Score every row of ``input`` (raw data or any stage folder) into ``output``."""
    config = config or ScoreConfig()
    config.check()
    dataset = open_stage_input(input, shard_rows=config.shard_rows)
    stage = ScoreStage(dataset, config)
    return run_stage(stage, dataset, output, overwrite=overwrite, quiet=quiet)
