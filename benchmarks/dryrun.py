"""Benchmark of planning the DAG: the CPU seconds `snakemake --profile slurm -n all` spends at paper scale
(every row, every job planned: an empty results folder) and `--profile local -n all` at tiny scale. A user
rehearses the cluster run with this dry run, and every `snakemake` call pays the same planning first.
Writes benchmarks/reports/dryrun.json.

    .venv/bin/python benchmarks/dryrun.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from host import machine

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "reports" / "dryrun.json"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def dry_run(profile: str, scale: str) -> dict:
    """One dry run into an empty results folder: CPU and wall seconds, and the number of jobs it planned."""
    with tempfile.TemporaryDirectory() as results:
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        done = subprocess.run(["snakemake", "--profile", profile, "-n", "--nolock", "--config",
                               f"results_dir={results}", f"scale={scale}", "--", "all"],
                              cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
    jobs = re.search(r"^total\s+(\d+)$", done.stdout, flags=re.MULTILINE)
    return {"cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "wall_s": wall, "jobs": int(jobs.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    report = {}
    for profile, scale in (("slurm", "paper"), ("local", "tiny")):
        runs = [dry_run(profile, scale) for _ in range(args.repeats)]
        cpu = [run["cpu_s"] for run in runs]
        report[scale] = {"profile": profile, "jobs": runs[0]["jobs"], "cpu_s_median": statistics.median(cpu),
                         "cpu_s_min": min(cpu), "cpu_s_max": max(cpu), "wall_s": [run["wall_s"] for run in runs],
                         "cpu_s_per_job_ms": 1000 * statistics.median(cpu) / runs[0]["jobs"]}
        print(scale, json.dumps(report[scale]))
    report["machine"] = machine(repeats=args.repeats)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
