"""Every stage as a Ray job: `ray job submit -- dataselect STAGE ... --engine ray`.

A small corpus (8,000 rows of T0 instructions from ../shared/datasets cut into 4 files, else
AG News, else synthetic text) goes through the four stages chained (hashing embed, k-means
with k = 8, heuristic score, kmq sample of 10%), first with the local engine, then each
stage submitted as a job to a one-node Ray head (`ray start --head --num-cpus 2` with its
dashboard on free ports, its temporary folder under the work folder when that path is short
enough for Unix sockets). Inside a job RAY_ADDRESS is set, so `--engine ray` joins that
cluster; then the four again as one job, `dataselect run CONFIG --engine ray`. Each output
file is compared with the local run's: shards and artifacts byte for byte, _manifest.json
without its timings and with the run folder's path replaced. One job
with a missing input folder checks that `ray job submit` fails and says the entrypoint's
exit code. At the end, whatever happened, the head's processes (found by its temporary
folder, and their descendants) are stopped by pid, and none may be left.

    python scripts/bench/ray_job.py                   # in a temporary folder
    python scripts/bench/ray_job.py --workdir /tmp/rj  # keeps the outputs and job logs there

Needs Ray with its dashboard (`pip install "ray[default]"`). Not `ray stop`, which would stop
every Ray process of this user here, other clusters and test runs included. Exits 0 only if
every stage's outputs are identical, the failing job failed as it should and nothing is left.

Writes scripts/bench/results/ray_job.md and .json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import folder_files, write_results

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
ROWS = 8_000
FILES = 4
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
DATASELECT = str(BIN / "dataselect")
# stage, the stage folder it reads, its options (the same for both engines)
STAGES = [
    ("embed", "corpus", ["--embedder", "hashing"]),
    ("cluster", "embed", ["--k", "8"]),
    ("score", "cluster", ["--scorer", "heuristic"]),
    ("sample", "score", ["--strategy", "kmq", "--score-column", "score_heuristic",
                         "--budget", "10%"]),
]  # fmt: skip
# Ray 2.60 turns token authentication on where ~/.ray/auth_token exists; this local test
# cluster runs without it, for `ray start` and for its clients alike
ENV = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
ENV["RAY_AUTH_MODE"] = "disabled"
WORDS = "bank card money weather rain storm python code error music song film".split()


def ray_job_missing() -> str | None:
    """Why `ray job` cannot work here (what `ray start` and the job client import), or None."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401
        import requests  # noqa: F401
    except ImportError as error:
        return str(error)
    return None


def own_processes(temp: Path, gcs: int) -> dict[int, str]:
    """pid -> args of the live processes of the head with temporary folder TEMP, port GCS.

    Those that name TEMP (gcs_server, raylet, dashboard, agents, monitor) or the GCS address
    (the Ray client server) on their command line, and all their descendants (the workers,
    which retitle themselves `ray::...`, and the jobs' drivers).
    """
    ps = subprocess.run(["ps", "-eo", "pid=,ppid=,stat=,args="], capture_output=True,
                        text=True, check=True)  # fmt: skip
    table = {}
    for line in ps.stdout.splitlines():
        pid, ppid, stat, *args = line.split(maxsplit=3)
        if not stat.startswith("Z"):  # a zombie holds nothing
            table[int(pid)] = (int(ppid), args[0] if args else "")
    gcs_address = re.compile(rf"address=\S*:{gcs}\b")
    ours = {
        pid for pid, (_, args) in table.items() if str(temp) in args or gcs_address.search(args)
    } - {os.getpid()}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _) in table.items() if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    return {pid: table[pid][1] for pid in sorted(ours)}


def free_ports(count: int) -> list[int]:
    """Ports free right now, all different (the sockets stay open until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_corpus(folder: Path) -> str:
    """ROWS rows in FILES Parquet files; returns what they are."""
    folder.mkdir(parents=True)
    real = [
        (DATASETS / name, what)
        for name, what in [
            ("t0_instructions.all.parquet", "T0 instructions"),
            ("agnews.test.parquet", "AG News"),
        ]
        if (DATASETS / name).exists()
    ]
    if real:
        path, what = real[0]
        table = pq.read_table(path).slice(0, ROWS)
    else:
        rng = np.random.default_rng(0)
        topics = rng.integers(0, 4, ROWS)
        texts = [
            " ".join(rng.choice(WORDS[3 * t : 3 * t + 3], size=int(rng.integers(4, 12))))
            for t in topics
        ]
        ids = [f"doc-{i:05d}" for i in range(ROWS)]
        table = pa.table({"id": ids, "text": texts, "label": [f"topic{t}" for t in topics]})
        what = "synthetic text"
    step = -(-table.num_rows // FILES)
    for i in range(FILES):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return f"{table.num_rows:,} rows of {what} cut into {FILES} files"


def command(stage: str, source: Path, out: Path, options: list[str], engine: str) -> list[str]:
    return [DATASELECT, stage, str(source), str(out), *options, "--engine", engine, "-q"]


def differences(local: dict[str, bytes], ray: dict[str, bytes]) -> list[str]:
    problems = [f"only in the local run: {name}" for name in sorted(local.keys() - ray.keys())]
    problems += [f"only in the ray job: {name}" for name in sorted(ray.keys() - local.keys())]
    problems += [f"differs: {n}" for n in sorted(local.keys() & ray.keys()) if local[n] != ray[n]]
    return problems


def start_head(temp: Path, gcs: int) -> tuple[str, float]:
    """A head with its dashboard (the job server) on free ports; returns its address, seconds."""
    dashboard, client, agent = free_ports(3)
    started = time.perf_counter()
    subprocess.run(
        [RAY, "start", "--head", "--num-cpus", "2", "--port", str(gcs),
         "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--temp-dir", str(temp), "--disable-usage-stats"],
        check=True, capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dashboard}"
    for _ in range(120):  # the job server answers once the dashboard is up
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2) as reply:
                if reply.status == 200:
                    return address, time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the dashboard at {address} did not answer within a minute")


def submit(address: str, entrypoint: list[str], log: Path) -> tuple[int, str, float]:
    """`ray job submit` and wait: its exit code, its output (kept in log), seconds."""
    started = time.perf_counter()
    done = subprocess.run(
        [RAY, "job", "submit", "--address", address, "--", *entrypoint],
        capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    log.write_text(output)
    return done.returncode, output, seconds


def described(processes: dict[int, str]) -> list[str]:
    return [f"{pid} {args[:160]}" for pid, args in processes.items()]


def stop_head(temp: Path, gcs: int) -> tuple[list[str], list[str]]:
    """Stop this head's processes by pid: SIGTERM, then SIGKILL for those still there after
    15 s; returns those SIGKILLed and those left even after that.

    Not `ray stop`: that stops every Ray process of this user on the machine, other people's
    clusters and test runs included.
    """
    processes = own_processes(temp, gcs)
    print(f"stopping the head's {len(processes)} processes", flush=True)
    for pid in processes:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for _ in range(30):
        stubborn = own_processes(temp, gcs)
        if not stubborn:
            return [], []
        time.sleep(0.5)
    for pid in stubborn:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(2)
    left = own_processes(temp, gcs)
    return described(stubborn), described(left)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, help="work folder, new or empty [a temp dir]")
    args = parser.parse_args()
    missing = ray_job_missing()
    if missing:
        print(f'`ray job` needs Ray with its dashboard ({missing}): pip install "ray[default]"')
        sys.exit(2)
    if not Path(DATASELECT).exists():
        print(f"no dataselect next to this Python ({DATASELECT}): pip install -e . here")
        sys.exit(2)
    if args.workdir:
        if args.workdir.exists() and any(args.workdir.iterdir()):
            print(f"--workdir {args.workdir} is not empty (finished shards would be skipped)")
            sys.exit(2)
        args.workdir.mkdir(parents=True, exist_ok=True)
        ok = bench(args.workdir.resolve())
    else:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            ok = bench(Path(tmp).resolve())
    sys.exit(0 if ok else 1)


def folder(work: Path, engine: str, stage: str) -> Path:
    """A stage's folder in one engine's run; both read the same corpus."""
    return work / "corpus" if stage == "corpus" else work / engine / stage


def bench(work: Path) -> bool:
    corpus = write_corpus(work / "corpus")
    for name in ("local", "ray", "logs"):
        (work / name).mkdir()
    rows = []
    for stage, source, options in STAGES:
        argv = command(
            stage, folder(work, "local", source), work / "local" / stage, options, "local"
        )
        started = time.perf_counter()
        subprocess.run(argv, check=True, env=ENV)
        rows.append({"stage": stage, "local_seconds": round(time.perf_counter() - started, 2)})
    failure: dict = {}
    head_seconds = 0.0
    left: list[str] = []
    killed: list[str] = []
    (gcs,) = free_ports(1)
    # Ray's sockets live in TEMP/session_*/sockets/, and a Unix socket's path has at most
    # 104-108 bytes: a long work folder gets a short one of its own
    temp = work / "ray-tmp"
    if len(str(temp)) > 38:
        temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    try:
        address, head_seconds = start_head(temp, gcs)
        print(f"Ray head up in {head_seconds:.1f} s, job server at {address}", flush=True)
        for row, (stage, source, options) in zip(rows, STAGES, strict=True):
            argv = command(stage, folder(work, "ray", source), work / "ray" / stage, options, "ray")
            code, output, seconds = submit(address, argv, work / "logs" / f"{stage}.log")
            if code != 0:
                print(output[-3000:], file=sys.stderr)
            problems = [f"ray job submit exited {code}"] if code else []
            local = folder_files(work / "local" / stage, work / "local")
            ray = folder_files(work / "ray" / stage, work / "ray")
            problems += differences(local, ray)
            row.update(
                command=" ".join(["dataselect", stage, source.upper(), "OUT", *options]),
                ray_job_seconds=round(seconds, 2),
                files=len(local),
                identical=not problems,
                problems=problems,
            )
            print(json.dumps(row), flush=True)
        run = submit_run(address, work, corpus_folder=work / "corpus")
        run["local_seconds"] = round(sum(r["local_seconds"] for r in rows), 2)  # the four
        rows.append(run)
        missing = work / "no-such-folder"
        argv = command("embed", missing, work / "ray" / "never", ["--embedder", "hashing"], "ray")
        code, output, seconds = submit(address, argv, work / "logs" / "failing.log")
        lines = [line for line in output.splitlines() if line.strip()]
        failure = {
            "command": "dataselect embed MISSING_FOLDER OUT --embedder hashing --engine ray",
            "submit_exit_code": code,
            "says_exit_code_1": re.search(r"exit code 1\b", output) is not None,
            "error_lines": [line for line in lines if "rror" in line][:3],
            "last_line": lines[-1] if lines else "",
            "seconds": round(seconds, 2),
        }
        print(json.dumps(failure), flush=True)
    finally:
        killed, left = stop_head(temp, gcs)
        if temp.parent != work:
            shutil.rmtree(temp, ignore_errors=True)
    failure_ok = failure.get("submit_exit_code") == 1 and failure.get("says_exit_code_1", False)
    ok = len(rows) == len(STAGES) + 1 and all(r.get("identical") for r in rows) and failure_ok
    ok = ok and not left
    write(corpus, head_seconds, rows, failure, {"sigkilled": killed, "left": left}, ok)
    return ok


def submit_run(address: str, work: Path, corpus_folder: Path) -> dict:
    """The same four stages as one job, `dataselect run CONFIG --engine ray`; each stage
    folder compared with the local run's."""
    options = {stage: dict(zip(o[::2], o[1::2], strict=True)) for stage, _, o in STAGES}
    config = {"input": str(corpus_folder), "run_dir": str(work / "ray-run")}
    for stage, values in options.items():
        section = {key.lstrip("-").replace("-", "_"): typed(value) for key, value in values.items()}
        if stage == "score":  # the config names a list of scorers
            section = {"scorers": [section.pop("scorer")], **section}
        config[stage] = section
    path = work / "ray-run.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    argv = [DATASELECT, "run", str(path), "--engine", "ray", "-q"]
    code, output, seconds = submit(address, argv, work / "logs" / "run.log")
    if code != 0:
        print(output[-3000:], file=sys.stderr)
    problems = [f"ray job submit exited {code}"] if code else []
    files = 0
    for stage, _, _ in STAGES:
        local = folder_files(work / "local" / stage, work / "local")
        problems += [
            f"{stage}: {p}" for p in differences(local, folder_files(work / "ray-run" / stage,
                                                                 work / "ray-run"))
        ]  # fmt: skip
        files += len(local)
    row = {
        "stage": "run (the four as one job)",
        "command": "dataselect run CONFIG --engine ray",
        "ray_job_seconds": round(seconds, 2),
        "files": files,
        "identical": not problems,
        "problems": problems,
    }
    print(json.dumps(row), flush=True)
    return row


def typed(value: str) -> object:
    """A command-line value as the config's YAML would read it: "8" is 8, "10%" a string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def write(corpus: str, head: float, rows: list[dict], failure: dict, stop: dict, ok: bool) -> None:
    lines = [
        "# stages as Ray jobs",
        "",
        f"`python scripts/bench/ray_job.py`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} "
        f"cores: {corpus}, through embed (hashing), cluster (k = 8), score (heuristic) and "
        "sample (kmq, 10%), chained. Each stage once with the local engine, then submitted "
        "to a one-node Ray head (`ray start --head --num-cpus 2`, dashboard on 127.0.0.1) as "
        "`ray job submit --address http://127.0.0.1:PORT -- dataselect STAGE ... --engine "
        "ray`, and the four as one job, `dataselect run CONFIG --engine ray` (local s: "
        "the four local runs' sum). Wall time of the command: for the job, the submit "
        f"client, the job's start-up and Ray's included; starting the head ({head:.1f} s) "
        "not included. Identical: every output file has the local run's bytes "
        "(_manifest.json without started, finished and seconds, and with the run folder's "
        "path replaced).",
        "",
        "| stage | local s | ray job s | identical |",
        "|---|---|---|---|",
    ]
    for r in rows:
        same = "yes" if r.get("identical") else "NO"
        lines.append(
            f"| {r['stage']} | {r['local_seconds']} | {r.get('ray_job_seconds')} | {same} |"
        )
    lines.append("")
    if failure:
        says = "yes" if failure["says_exit_code_1"] else "NO"
        lines.append(
            f"A failing job (input folder missing): `ray job submit` exited "
            f"{failure['submit_exit_code']}; its output says `exit code 1`: {says}."
        )
    lines.append(
        f"Stopping the head (by pid, SIGTERM): {len(stop['sigkilled'])} processes needed "
        f"SIGKILL after 15 s, {len(stop['left'])} left. **{'PASS' if ok else 'FAIL'}**"
    )
    for r in rows:
        lines += [f"- {r['stage']}: {p}" for p in r.get("problems", [])]
    write_results("ray_job", lines, {"stages": rows, "failing_job": failure, **stop,
                                     "head_seconds": round(head, 2), "ok": ok})  # fmt: skip


if __name__ == "__main__":
    main()
