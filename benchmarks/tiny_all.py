"""Benchmark of the whole DAG (issue 8): `snakemake --profile local all` at tiny scale on this machine,
timed, then every paper table's rows read back, with what defines them: every training stage's iteration
count (done and configured), seed and whether its time guard fired, from the summaries under results/, so
two reports can be compared. Writes benchmarks/reports/tiny_all.json.

    .venv/bin/python benchmarks/tiny_all.py            # runs the DAG (about an hour on 2 cores)
    .venv/bin/python benchmarks/tiny_all.py --from-log [LOG]  # reads a finished run (e.g. `make demo`)

`--from-log` takes the wall time and job count from a Snakemake log (default: the newest under
.snakemake/log; its name holds the start time, its last timestamp is the end), so a run made outside this
script counts too. `--rerun-log` (repeatable) records later partial runs (e.g. `--forcerun` after a fix)
whose outputs the tables include.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import yaml
from host import machine

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "reports" / "tiny_all.json"
KEYS = ("total", "quality", "semantic", "dyn_deg")
# What a training summary says about its run (raven.training.loop); `stopped.json`: a run its guard stopped
STAGE_KEYS = ("stage", "iterations", "iterations_target", "stopped_by_budget", "seed", "threads", "train_s")
STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
DONE = re.compile(r"^(\d+) of (\d+) steps \(100%\) done$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
BENCHMARK = re.compile(r"^\s+benchmark: (\S+)$")


def newest_log() -> Path:
    logs = sorted((ROOT / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"no Snakemake log under {ROOT / '.snakemake' / 'log'}: run the DAG first")
    return logs[-1]


def read_log(log: Path) -> dict:
    """wall_s (log name's start time to its last timestamp) and the job count of a finished run."""
    lines = log.read_text().splitlines()
    done = [m for m in map(DONE.match, lines) if m]
    if not done:
        raise SystemExit(f"{log}: the run did not finish (no '100% done' line); rerun the DAG")
    started = datetime.strptime(log.name.split(".")[0], "%Y-%m-%dT%H%M%S")
    stamps = [datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y") for m in map(STAMP.match, lines) if m]
    return {"wall_s": round((stamps[-1] - started).total_seconds(), 1), "jobs": int(done[-1].group(2)),
            "log": str(log.relative_to(ROOT)), "rules": rule_seconds(log)}


def rule_seconds(log: Path) -> dict:
    """{rule: {jobs, s, cpu_s}}: where the run's time went, summed from each job's Snakemake benchmark file
    (the log names each job's rule and file). `s` is the job's wall time; `cpu_s` counts the job's own
    processes, which for a job run through `raven launch` (submitit) can leave out the launched child."""
    rules, rule = {}, None
    for line in log.read_text().splitlines():
        if match := RULE.match(line):
            rule = match.group(1)
        elif (match := BENCHMARK.match(line)) and rule and (ROOT / match.group(1)).is_file():
            rows = (ROOT / match.group(1)).read_text().splitlines()
            fields = dict(zip(rows[0].split("\t"), rows[-1].split("\t")))
            total = rules.setdefault(rule, {"jobs": 0, "s": 0.0, "cpu_s": 0.0})
            total["jobs"] += 1
            total["s"] = round(total["s"] + float(fields["s"]), 1)
            total["cpu_s"] = round(total["cpu_s"] + float(fields.get("cpu_time") or 0), 1)
    return dict(sorted(rules.items(), key=lambda item: -item[1]["s"]))


def run_dag(scale: str) -> dict:
    started = time.perf_counter()
    # the target goes before --config, which takes every following word as a key=value pair
    subprocess.run([sys.executable, "-m", "snakemake", "--profile", "local", "all", "--config", f"scale={scale}"],
                   cwd=ROOT, check=True)
    wall = round(time.perf_counter() - started, 1)
    return {**read_log(newest_log()), "wall_s": wall}


def score_tables(results: Path) -> tuple[dict, list]:
    """({table: {label: {total, quality, semantic, dyn_deg, their ci_*, recipe[, by_objects]}}}, comparisons)
    from every score table's JSON (`raven tables`): values on the table's scale (Total/Quality/Semantic in %),
    each with its 95% interval over seeds and prompts, and the tested comparisons of config/experiments.yaml."""
    tables = yaml.safe_load((ROOT / "config" / "experiments.yaml").read_text())["tables"]
    out, comparisons = {}, []
    for table in tables:
        if table in ("user_study", "drift"):
            continue
        written = json.loads((results / "tables" / f"{table}.json").read_text())
        out[table] = {record["row"]: {key: record[key] for key in KEYS}
                      | {f"ci_{key}": record.get(f"ci_{key}") for key in KEYS} | {"recipe": record.get("recipe")}
                      | {"stopped_by_budget": record.get("stopped_by_budget")}
                      | ({"by_objects": record["by_objects"]} if "by_objects" in record else {})
                      for record in written["rows"]}
        comparisons += written.get("comparisons", [])
    return out, comparisons


def training_stages(results: Path) -> dict:
    """{summary path under results/<scale>: STAGE_KEYS} of every training stage (base, inits, rows); a run
    that its guard stopped (stopped.json, no summary) is listed with stopped_by_budget true."""
    stages = {}
    for name in ("summary.json", "stopped.json"):
        for path in results.glob(f"*/**/{name}"):
            summary = json.loads(path.read_text())
            if "iterations_target" in summary or "stopped_by_budget" in summary:
                stages[str(path.relative_to(results))] = {key: summary.get(key) for key in STAGE_KEYS}
    return dict(sorted(stages.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--from-log", nargs="?", const="newest", help="read a finished run's log instead of running")
    parser.add_argument("--rerun-log", action="append", default=[], help="a later partial run's log")
    parser.add_argument("--out", default=str(REPORT))
    args = parser.parse_args()
    from raven.runtime import apply_thread_policy

    threads = apply_thread_policy()  # RAVEN_THREADS (default 1), handed on to every job of the DAG
    if args.from_log:
        run = read_log(newest_log() if args.from_log == "newest" else Path(args.from_log).resolve())
    else:
        run = run_dag(args.scale)
    from raven.config import resolve_spec

    results = ROOT / "results" / args.scale
    tables, comparisons = score_tables(results)
    stages = training_stages(results)
    report = {
        "scale": args.scale,
        "command": f"snakemake --profile local all --config scale={args.scale}",
        **run,
        "target_s": 3600,
        "partial_reruns": [read_log(Path(log).resolve()) for log in args.rerun_log],
        "machine": machine(),
        "threads_per_process": threads,
        "stages": stages,
        "guard_fired": sorted(path for path, stage in stages.items() if stage["stopped_by_budget"]),
        "seeds": resolve_spec(ROOT / "config", args.scale).seeds,
        "tables": tables,
        "comparisons": comparisons,
        "user_study": json.loads((results / "tables" / "user_study.json").read_text()),
        "drift": json.loads((results / "tables" / "drift.json").read_text()),
    }
    from raven.io import atomic_write_json

    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
