"""Crash test: SIGKILL `dataselect run` at random moments, rerun, compare with a clean run.

A corpus of 4 Parquet files goes through every stage (hashing embed, k-means, heuristic and
label-agreement scores, kmq sample). One uninterrupted run is the reference (and gives each
stage's duration). Trial i starts from an empty run folder and targets stage i mod 4: once
that stage starts, it kills the run after a delay uniform in [0, the stage's duration],
checks that no reader-visible file is half-written (every
visible part-*.parquet and artifact in a stage folder opens), reruns to completion, and
compares every file with the reference: shards and artifacts byte for byte, manifests
without their timings. It prints the trials passed and exits 1 if any failed.

    python scripts/bench/crash.py                 # 30 trials
    python scripts/bench/crash.py --trials 5 --rows 300

Overlap mode (`--overlap`): two runs of one stage on one OUTPUT folder at once, as cron and
Makefiles start them. Trial i takes stage i mod 4 (its input: the uninterrupted run's folder
of the stage before), starts run A, and after a delay uniform in [0, the stage's duration]
run B on the same OUTPUT: in turn the same command, the same with --wait 600 (B queues),
and other settings (another seed: B must be refused, never mixed in). A trial passes when
every run exited 0 or was refused with exit 2 and one error line, at least one finished,
and OUTPUT is byte-identical to a solo run of A's command, with no temporary file left.

    python scripts/bench/crash.py --overlap       # 30 trials

Writes scripts/bench/results/crash.md or crash-overlap.md (full runs only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from common import folder_files

RESULTS = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "results"
WORDS = "bank card money weather rain storm python code error music song film".split()


def write_corpus(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    per_file = rows // 4
    for f in range(4):
        topics = rng.integers(0, 4, per_file)
        texts = [
            " ".join(rng.choice(WORDS[3 * t : 3 * t + 3], size=int(rng.integers(4, 12))))
            + f" {f}-{i}"
            for i, t in enumerate(topics)
        ]
        table = pa.table(
            {
                "id": [f"doc-{f}-{i:05d}" for i in range(per_file)],
                "text": texts,
                "label": [f"topic{t}" for t in topics],
            }
        )
        pq.write_table(table, folder / f"part-{f}.parquet", row_group_size=1_000)


def config(corpus: Path, run_dir: Path) -> dict:
    return {
        "input": str(corpus),
        "run_dir": str(run_dir),
        "embed": {"embedder": "hashing", "dim": 64, "shard_rows": 2_000},
        "cluster": {"k": 12},
        "score": {"scorers": ["heuristic", "label-agreement"], "label_column": "label"},
        "sample": {"strategy": "kmq", "score_column": "score_label_agreement", "budget": "10%"},
    }


def run(config_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dataselect", "run", str(config_path), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def half_written(run_dir: Path) -> list[str]:
    """Reader-visible files that do not open: what a crash must never leave."""
    bad = []
    for path in run_dir.rglob("*"):
        relative = path.relative_to(run_dir)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        try:
            if path.suffix == ".parquet":
                pq.read_metadata(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix in (".npy", ".npz"):
                np.load(path, allow_pickle=False)
        except Exception as exc:  # any failure to open is the finding
            bad.append(f"{relative}: {type(exc).__name__}")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlap", action="store_true", help="two runs on one folder")
    args = parser.parse_args()
    if args.overlap:
        return overlap_main(args)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        write_corpus(corpus, args.rows)
        reference_config = root / "reference.yaml"
        reference_config.write_text(yaml.safe_dump(config(corpus, root / "reference")))
        started = time.perf_counter()
        done = run(reference_config)
        windows = stage_windows(done, root / "reference")
        if done.wait() != 0:
            raise SystemExit(f"reference run failed: {done.stderr.read().decode()}")
        wall = time.perf_counter() - started
        reference = folder_files(root / "reference")
        trial_config = root / "trial.yaml"
        trial_config.write_text(yaml.safe_dump(config(corpus, root / "trial")))
        passed, failures, stages_hit = 0, [], {}
        for trial in range(1, args.trials + 1):
            shutil.rmtree(root / "trial", ignore_errors=True)
            stage = STAGES[trial % len(STAGES)]  # each stage in turn, at a random moment of it
            delay = rng.uniform(0, windows[stage])
            process = run(trial_config)
            wait_for_stage(process, root / "trial", stage)
            time.sleep(delay)
            killed = process.poll() is None
            if killed:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            visible_damage = half_written(root / "trial") if (root / "trial").exists() else []
            where = stage_at_kill(root / "trial") if killed else "after the end"
            stages_hit[where] = stages_hit.get(where, 0) + 1
            rerun = run(trial_config)
            code = rerun.wait()
            problems = list(visible_damage)
            if code != 0:
                problems.append(f"rerun exit {code}: {rerun.stderr.read().decode().strip()}")
            else:
                got = folder_files(root / "trial")
                differ = sorted(
                    k for k in reference.keys() | got.keys() if reference.get(k) != got.get(k)
                )
                problems += [f"differs: {name}" for name in differ[:5]]
                leftovers = [str(p) for p in (root / "trial").rglob(".*.tmp")]
                problems += [f"temporary file left: {p}" for p in leftovers]
            status = "ok" if not problems else "FAILED " + "; ".join(problems)
            print(
                f"trial {trial:2d}: kill {delay:5.2f} s into {stage} ({where}): {status}",
                flush=True,
            )
            passed += not problems
            if problems:
                failures.append((trial, problems))
    hits = ", ".join(f"{name} {count}" for name, count in stages_hit.items())
    print(f"{passed} of {args.trials} trials passed; kills landed: {hits}")
    if args.trials >= 30:
        write(args, wall, passed, failures, hits)
    raise SystemExit(0 if passed == args.trials else 1)


STAGES = ("embed", "cluster", "score", "sample")


def started(run_dir: Path, stage: str) -> bool:
    return (run_dir / stage / "_manifest.json").exists()


def complete(run_dir: Path, stage: str) -> bool:
    try:
        return bool(json.loads((run_dir / stage / "_manifest.json").read_text())["complete"])
    except (OSError, ValueError, KeyError):
        return False


def stage_windows(process: subprocess.Popen, run_dir: Path) -> dict[str, float]:
    """Seconds each stage of the reference run took, from its manifest appearing to its
    completion (polled every 5 ms); the last stage runs to the process's end."""
    begin: dict[str, float] = {}
    end: dict[str, float] = {}
    while process.poll() is None or len(end) < len(STAGES):
        now = time.perf_counter()
        for stage in STAGES:
            if stage not in begin and started(run_dir, stage):
                begin[stage] = now
            if stage in begin and stage not in end and complete(run_dir, stage):
                end[stage] = now
        if process.poll() is not None:
            for stage in STAGES:
                begin.setdefault(stage, now)
                end.setdefault(stage, now)
        time.sleep(0.005)
    return {stage: max(end[stage] - begin[stage], 0.01) for stage in STAGES}


def wait_for_stage(process: subprocess.Popen, run_dir: Path, stage: str) -> None:
    while process.poll() is None and not started(run_dir, stage):
        time.sleep(0.002)


def stage_at_kill(run_dir: Path) -> str:
    """The stage the kill interrupted: the first one without a complete manifest."""
    for stage in ("embed", "cluster", "score", "sample"):
        manifest = run_dir / stage / "_manifest.json"
        try:
            if not json.loads(manifest.read_text())["complete"]:
                return f"during {stage}"
        except (OSError, ValueError):
            return f"before {stage}" if stage != "embed" else "before embed (start-up)"
    return "after sample (finishing)"


def write(args: argparse.Namespace, wall: float, passed: int, failures: list, hits: str) -> None:
    text = (
        "# crash test\n\n"
        f"`python scripts/bench/crash.py`, {time.strftime('%Y-%m-%d')}: {args.rows:,} rows in "
        "4 files through hashing embed (shards of 2,000 rows), k-means (k = 12), heuristic "
        "and label-agreement scores, kmq sample, in one `dataselect run`. Trial i targets "
        "stage i mod 4: once that stage's folder appears, SIGKILL after a delay uniform in "
        "[0, the stage's duration in the uninterrupted run]; then a rerun. The uninterrupted "
        f"run took {wall:.1f} s.\n\n"
        f"**{passed} of {args.trials} trials passed**: every final file byte-identical to the "
        "uninterrupted run (manifests without timings), no reader-visible file half-written "
        "after the kill, no temporary file left after the rerun.\n\n"
        f"Where the kills landed: {hits}.\n"
    )
    if failures:
        text += "\nFailures:\n\n" + "\n".join(f"- trial {t}: {'; '.join(p)}" for t, p in failures)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crash.md").write_text(text + "\n")


def stage_command(stage: str, upstream: Path, corpus: Path, out: Path, seed: int = 0) -> list:
    """The single-stage command of ``config``'s stage (its input: the stage before it)."""
    before = {"cluster": "embed", "score": "cluster", "sample": "score"}
    source = corpus if stage == "embed" else upstream / before[stage]
    own = {
        "embed": ["-e", "hashing", "--dim", "64", "--shard-rows", "2000", "--seed", seed],
        "cluster": ["--k", "12", "--seed", seed],
        "score": ["--scorer", "heuristic", "--scorer", "label-agreement", "--label-column",
                  "label", "--seed", seed],
        "sample": ["-s", "kmq", "--score-column", "score_label_agreement", "-b", "10%",
                   "--seed", seed],
    }[stage]  # fmt: skip
    return [sys.executable, "-m", "dataselect", stage, str(source), str(out), *map(str, own)]


def start(command: list) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def overlap_main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    variants = ("same command", "same with --wait", "other settings")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = root / "corpus"
        write_corpus(corpus, args.rows)
        solo, windows, references = root / "solo", {}, {}
        for stage in STAGES:  # each stage alone, in order: the inputs and the references
            began = time.perf_counter()
            done = start(stage_command(stage, solo, corpus, solo / stage))
            if done.wait() != 0:
                raise SystemExit(f"solo {stage} failed: {done.stderr.read().decode()}")
            windows[stage] = time.perf_counter() - began
            references[stage] = folder_files(solo / stage)
        passed, failures, outcomes = 0, [], {}
        for trial in range(1, args.trials + 1):
            stage = STAGES[trial % len(STAGES)]
            variant = variants[(trial // len(STAGES)) % len(variants)]
            out = root / "trial"
            shutil.rmtree(out, ignore_errors=True)
            first = stage_command(stage, solo, corpus, out)
            second = {
                "same command": first,
                "same with --wait": [*first, "--wait", "600"],
                "other settings": stage_command(stage, solo, corpus, out, seed=1),
            }[variant]
            delay = rng.uniform(0, windows[stage])
            a = start(first)
            time.sleep(delay)
            b = start(second)
            codes = (a.wait(), b.wait())
            errors = [p.stderr.read().decode().strip() for p in (a, b)]
            problems = []
            for name, code, error in zip("AB", codes, errors, strict=True):
                if code not in (0, 2) or (code == 2 and len(error.splitlines()) != 1):
                    problems.append(f"run {name} exit {code}: {error[:200]}")
            if variant == "other settings" and codes[1] == 0:
                problems.append("run B with other settings was not refused")
            if 0 not in codes:
                problems.append("neither run finished")
            got = folder_files(out) if out.exists() else {}
            want = references[stage]
            differ = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
            problems += [f"differs: {name}" for name in differ[:5]]
            problems += [f"temporary file left: {p.name}" for p in out.rglob(".*.tmp")]
            outcome = "/".join("ok" if c == 0 else "refused" if c == 2 else str(c) for c in codes)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            status = "ok" if not problems else "FAILED " + "; ".join(problems)
            print(f"trial {trial:2d}: {stage}, {variant}, B after {delay:5.2f} s: A/B {outcome}: "
                  f"{status}", flush=True)  # fmt: skip
            passed += not problems
            if problems:
                failures.append((trial, problems))
    seen = ", ".join(f"{name} {count}" for name, count in sorted(outcomes.items()))
    print(f"{passed} of {args.trials} overlap trials passed; A/B exits: {seen}")
    if args.trials >= 30:
        text = (
            "# overlap test\n\n"
            f"`python scripts/bench/crash.py --overlap`, {time.strftime('%Y-%m-%d')}: two runs "
            f"of one stage on one OUTPUT folder ({args.rows:,} rows; the stages of the crash "
            "test, each run alone first as the reference). Trial i takes stage i mod 4 and, in "
            "turn, B = the same command, the same with `--wait 600`, or other settings "
            "(another seed), started after a delay uniform in [0, the stage's solo duration]."
            f"\n\n**{passed} of {args.trials} trials passed**: every run exited 0 or was "
            "refused (exit 2, one line), other settings were always refused, OUTPUT is "
            "byte-identical to the solo run (manifests without timings), no temporary file "
            f"left.\n\nExit codes of A/B: {seen}.\n"
        )
        if failures:
            text += "\nFailures:\n\n" + "\n".join(
                f"- trial {t}: {'; '.join(p)}" for t, p in failures
            )
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "crash-overlap.md").write_text(text + "\n")
    raise SystemExit(0 if passed == args.trials else 1)


if __name__ == "__main__":
    main()
