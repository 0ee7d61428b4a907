"""Benchmark of Snakemake's own CPU (issue 19, the hour): one synthetic DAG run twice in the same session,
with Snakemake's default `--max-jobs-per-timespan 100/1s` and with the value of profiles/local/config.yaml.

Why: with any rate limit, every pass of Snakemake's scheduling loop that leaves jobs waiting arms a new
re-evaluation timer of one timespan, and every finished job adds a pass. The timers never merge, so
after n finished jobs the loop wakes about n times per timespan, and each wake re-reads the size of
every waiting job's inputs. At 1 s, a 392-job tiny `all` ended with hundreds of wakes a second:
Snakemake's own process used 23.5 CPU-minutes of the 62-minute run, taken from the two job slots.
A longer timespan keeps the limit far from binding and wakes the loop rarely; jobs still start the
moment another finishes (a finished job wakes the loop itself). The cost: Snakemake's process waits
for its last timer before it exits, up to one timespan after the DAG is done.

    .venv/bin/python benchmarks/scheduler.py   # about 2 minutes; writes benchmarks/reports/scheduler.json

Each job sleeps, so the CPU counted (user + system of Snakemake and its children) is Snakemake's own plus
its job shells' start-up (`sleep`, `touch`: a few ms each, the same in both runs).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml
from host import machine

from raven.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "reports" / "scheduler.json"
DEFAULT = "100/1s"  # Snakemake's own default (snakemake --help)

SNAKEFILE = """
N, INPUTS, SLEEP = {jobs}, {inputs}, {sleep}
rule all:
    input: expand("out/{{i}}.txt", i=range(N))
rule source:
    output: "in/{{k}}.txt"
    shell: "touch {{output}}"
rule one:
    input: expand("in/{{k}}.txt", k=range(INPUTS))
    output: "out/{{i}}.txt"
    benchmark: "bench/{{i}}.tsv"
    shell: "sleep {{SLEEP}}; touch {{output}}"
"""


def run_dag(folder: Path, timespan: str, jobs: int, inputs: int, sleep: float) -> dict:
    """Snakemake on a fresh copy of the DAG: wall, the DAG's own end (its log's '100% done'), CPU."""
    folder.mkdir(parents=True)
    (folder / "Snakefile").write_text(textwrap.dedent(SNAKEFILE.format(jobs=jobs, inputs=inputs, sleep=sleep)))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done_s, lines = None, []
    with subprocess.Popen([sys.executable, "-m", "snakemake", "--cores", "2", "--max-jobs-per-timespan", timespan,
                           "--verbose", "all"], cwd=folder, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          text=True) as process:
        for line in process.stderr:
            lines.append(line)
            if line.rstrip().endswith("(100%) done"):
                done_s = time.perf_counter() - started
    wall = time.perf_counter() - started
    if process.returncode or done_s is None:
        raise SystemExit(f"snakemake failed in {folder} (status {process.returncode}):\n{''.join(lines[-20:])}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    log = "".join(lines)
    return {"max_jobs_per_timespan": timespan, "dag_done_s": round(done_s, 1), "wall_s": round(wall, 1),
            "snakemake_cpu_s": round(cpu, 2), "scheduler_passes": log.count("Ready jobs:"),
            "jobs_done": log.count("Finished jobid:")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--inputs", type=int, default=5, help="input files of each job (their sizes are re-read)")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds each job sleeps")
    args = parser.parse_args()
    profile = yaml.safe_load((ROOT / "profiles" / "local" / "config.yaml").read_text())
    chosen = profile.get("max-jobs-per-timespan")
    if not chosen:
        raise SystemExit("profiles/local/config.yaml sets no max-jobs-per-timespan: nothing to compare")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, timespan in (("default", DEFAULT), ("profile", chosen)):
            runs.append({"name": name, **run_dag(Path(tmp) / name, timespan, args.jobs, args.inputs, args.sleep)})
    default, profile_run = runs
    report = {
        "command": ".venv/bin/python benchmarks/scheduler.py",
        "dag": {"jobs": args.jobs, "inputs_per_job": args.inputs, "job_sleep_s": args.sleep, "cores": 2},
        "runs": runs,
        "cpu_ratio_default_over_profile": round(default["snakemake_cpu_s"] / profile_run["snakemake_cpu_s"], 2),
        "passes_ratio_default_over_profile": round(default["scheduler_passes"] / profile_run["scheduler_passes"], 1),
        "machine": machine(),
    }
    atomic_write_json(REPORT, report)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
