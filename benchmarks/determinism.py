"""Benchmark of determinism (issue 18): two complete runs of the same DAG (e.g. two `snakemake --profile local
all` at tiny scale, under different load) must give the same tables to the last digit and the same weights
bit for bit. Compares two results folders (`results/<scale>` of each run):

- every number of every `tables/*.json` and `rows/*.json`, exactly (a row's paths name its own results
  folder, so each run's folder is replaced by `<results>` before comparing);
- the bytes of every model the runs exported (`*.safetensors` under `train/` and `init/`, not their
  checkpoints or ODE pairs, which a resumed or from-scratch run keeps more of);
- how long the same jobs took in each run (Snakemake's benchmark files), which shows how different the
  load was.

Writes benchmarks/reports/determinism.json and exits 1 when anything differs.

    .venv/bin/python benchmarks/determinism.py results/tiny /work/runB/tiny
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
from pathlib import Path

from host import machine

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "reports" / "determinism.json"
JSON_FILES = ("tables/*.json", "rows/*.json")


def anonymous(text: str, run: Path) -> str:
    """`text` with the run's folder as <results>: absolute, relative to the repository, or as the DAG wrote it
    with the default results_dir (`results/<scale>`: a run moved aside to make room for the next)."""
    for name in (str(run), os.path.relpath(run, ROOT), f"results/{run.name}"):
        text = text.replace(name, "<results>")
    return text


def leaves(value, prefix: str, run: Path):
    """(path, leaf) of every number and string in a JSON value, the run's folder written <results>."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{prefix}/{anonymous(key, run)}", run)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, f"{prefix}[{index}]", run)
    else:
        yield prefix, anonymous(value, run) if isinstance(value, str) else value


def json_leaves(run: Path, pattern: str) -> dict:
    """Every leaf of the run's JSON files matching `pattern`, keyed by file and path inside it."""
    found = {}
    for path in sorted(run.glob(pattern)):
        found.update(leaves(json.loads(path.read_text()), str(path.relative_to(run)), run))
    return found


def weight_hashes(run: Path) -> dict[str, str]:
    """{path: sha256} of every exported model (checkpoints and ODE pairs left out)."""
    return {str(path.relative_to(run)): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in ("train", "init") for path in sorted((run / folder).glob("**/*.safetensors"))
            if not {"checkpoints", "pairs"} & set(path.relative_to(run).parts)}


def job_seconds(run: Path) -> dict[str, float]:
    """{benchmark file: wall seconds} of every job the run timed."""
    return {str(path.relative_to(run / "benchmarks")): float(path.read_text().splitlines()[1].split("\t")[0])
            for path in sorted((run / "benchmarks").glob("**/*.tsv"))}


def run_values(run: Path) -> dict:
    """Every leaf of the run's table and row JSONs, by file and key path."""
    return {key: value for pattern in JSON_FILES for key, value in json_leaves(run, pattern).items()}


def compare(a: Path, b: Path) -> dict:
    values_a, values_b = (run_values(run) for run in (a, b))
    numbers = [key for key in values_a if isinstance(values_a[key], (int, float)) and key in values_b]
    mismatches = [{"key": key, "a": values_a.get(key), "b": values_b.get(key)}
                  for key in sorted(set(values_a) | set(values_b)) if values_a.get(key) != values_b.get(key)]
    weights_a, weights_b = weight_hashes(a), weight_hashes(b)
    seconds_a, seconds_b = job_seconds(a), job_seconds(b)
    shared = sorted(set(seconds_a) & set(seconds_b))
    ratios = [seconds_a[job] / seconds_b[job] for job in shared if seconds_b[job] > 1]
    return {
        "runs": [str(a), str(b)],
        "identical": not mismatches and weights_a == weights_b,
        "files_compared": sum(1 for pattern in JSON_FILES for _ in a.glob(pattern)),
        "numbers_compared": len(numbers),
        "mismatches": mismatches[:50], "mismatch_count": len(mismatches),
        "weights_compared": len(set(weights_a) & set(weights_b)),
        "weights_differing": sorted(k for k in set(weights_a) | set(weights_b) if weights_a.get(k) != weights_b.get(k)),
        "weights_identical": sum(weights_a[k] == weights_b[k] for k in set(weights_a) & set(weights_b)),
        "load": {"jobs_timed_in_both": len(shared),
                 "job_seconds": [sum(seconds_a[j] for j in shared), sum(seconds_b[j] for j in shared)],
                 "same_job_time_ratio_a_over_b": {"median": statistics.median(ratios), "min": min(ratios),
                                                  "max": max(ratios)} if ratios else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="the first run's results/<scale> folder")
    parser.add_argument("b", type=Path, help="the second run's results/<scale> folder")
    parser.add_argument("--note", default="", help="how the runs were made (load, machines), for the report")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    report = {**compare(args.a.resolve(), args.b.resolve()), "note": args.note, "machine": machine()}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({key: report[key] for key in ("identical", "files_compared", "numbers_compared",
                                                   "mismatch_count", "weights_compared", "load")}, indent=2))
    sys.exit(0 if report["identical"] else 1)


if __name__ == "__main__":
    main()
