"""The score stage: input shard i -> part i with id, the input's cluster/distance/score
columns carried along, and one ``score_<name>`` float32 column per scorer.

Scorers that need a model (dsir, classifier, influence, the probes) fit it once before the
shards and keep it as an artifact beside them, so a resumed run reuses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect import progress
from dataselect.errors import UsageError
from dataselect.io.ids import id_type
from dataselect.io.output import StageOutput
from dataselect.io.sources import InputDataset, InputShard, open_stage_input
from dataselect.numeric import one_blas_thread
from dataselect.scoring.config import ScoreConfig
from dataselect.scoring.rows import RowReader
from dataselect.scoring.scorer import Scorer, ScorerTraits
from dataselect.stage import SchedulingTraits, StageResult, reading_inputs, run_stage

CARRIED = (
    "cluster",
    "distance",
    "vector_hash",
)  # input columns the samplers need, kept as they are
READ_ROWS = 8192
FIT_FACTS = "fits.json"  # the facts of every fit, kept for a resumed run's manifest


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
        params = self.config.values()
        params["id_column"] = self.reader.id_column
        params["text"] = asdict(self.reader.text) if "text" in self.fields else None
        params["scorers"] = {s.name: s.params() for s in self.scorers}
        return params

    # -- stage hooks -------------------------------------------------------------------
    @one_blas_thread  # the fits: the same bytes whatever the thread count (numeric.py)
    def setup(self, output: StageOutput) -> None:
        for number, scorer in enumerate(self.scorers, start=1):
            # a resumed run reloads each fitted model
            self.facts[scorer.name] = self._fit(scorer, number, output)
        saved = output.saved_artifact(FIT_FACTS)
        if saved is not None:  # resumed: the facts of the fits as they were made
            self.facts = json.loads(saved.read_text())
        else:
            output.write_artifact(FIT_FACTS, json.dumps(self.facts, sort_keys=True).encode())

    def _fit(self, scorer: Scorer, number: int, output: StageOutput) -> dict[str, Any]:
        """One scorer's fit, logged as it starts and ends (rows, seconds) and named in the
        heartbeat while it runs; scorers without a model fit nothing and say nothing."""
        if not getattr(scorer, "traits", ScorerTraits()).fits_model:
            return scorer.fit(self.reader, output)
        what = f"fit {scorer.name} (scorer {number} of {len(self.scorers)})"
        progress.phase(what)
        progress.note(f"{what}: started, on {self.reader.rows:,} input rows")
        started = time.perf_counter()
        facts = scorer.fit(self.reader, output)
        seconds = time.perf_counter() - started
        if facts.get("resumed") or facts.get("model") in ("given", "resumed"):
            how = "a saved or given model, loaded"
        else:
            how = ", ".join(f"{k}={v:,}" for k, v in facts.items() if _is_count(k, v))
        progress.note(f"{what}: done in {seconds:.1f} s" + (f" ({how})" if how else ""))
        return facts

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


def _is_count(key: str, value: object) -> bool:
    """A fit fact that counts rows (probe_rows, reference_rows, positives, ...)."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (key.endswith("_rows") or key in ("positives", "negatives"))
    )


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
    with reading_inputs(input):  # no run replaces what this one reads
        dataset = open_stage_input(input, shard_rows=config.shard_rows)
        stage = ScoreStage(dataset, config)
        return run_stage(stage, dataset, output, overwrite=overwrite, quiet=quiet)
