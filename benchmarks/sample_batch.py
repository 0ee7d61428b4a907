"""Benchmark: the sampling job's batch size (`stages.sample.batch_size`, issue 19: job-seconds of the tiny hour).

Runs the DAG's `raven sample` job for one row (its spec, student and the protocol's prompts, one process, one
torch thread, as `snakemake --profile local` runs it) once per batch size and repeat, the batch sizes
interleaved so that every ratio compares the same machine state. Reports per batch size the job's wall
seconds (imports and writing included: what the hour pays) and the generation seconds of its summary, the
ratio of each to the batch of 8 (the code default), and whether every batch size wrote the same pixels as
the batch of 8 (each video has its own seed; a batch size that changed them would change every table).

    .venv/bin/python benchmarks/sample_batch.py [--row raven] [--batches 8 64 512] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from host import machine

ROOT = Path(__file__).resolve().parents[1]


def sample_job(results: Path, row: str, batch: int, out: Path) -> tuple[float, float]:
    """One `raven sample` job as the DAG's rule runs it; (wall seconds, generation seconds)."""
    student = results / "train" / row / "model_ema"
    command = [str(Path(sys.executable).parent / "raven"), "sample", "--spec", str(results / "specs" / f"{row}.yaml"),
               "--model", str(student), "--prompts", str(results / "data" / "prompts" / "protocol.txt"),
               "--mode", "consistency", "--batch-size", str(batch), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    return wall, json.loads((out / "summary.json").read_text())["generation_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "tiny", help="the DAG's results/<scale>")
    parser.add_argument("--row", default="raven", help="a row whose student the DAG trained (train/<row>/model_ema)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 64, 512])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "sample_batch.json")
    args = parser.parse_args()
    for needed in (args.results / "specs" / f"{args.row}.yaml", args.results / "train" / args.row / "model_ema"):
        if not needed.exists():
            raise SystemExit(f"{needed}: missing; make it first: snakemake --profile local "
                             f"{args.results / 'train' / args.row / 'summary.json'}")
    batches = sorted(set(args.batches) | {8})
    times: dict[int, dict[str, list[float]]] = {b: {"job_s": [], "generation_s": []} for b in batches}
    identical: dict[int, bool] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for batch in batches:
                out = Path(scratch) / f"{batch}-{repeat}"
                wall, generation = sample_job(args.results, args.row, batch, out)
                times[batch]["job_s"].append(wall)
                times[batch]["generation_s"].append(generation)
                print(f"batch {batch} repeat {repeat}: job {wall:.1f} s, generation {generation:.1f} s", flush=True)
        reference = np.load(Path(scratch) / "8-0" / "videos.npy")
        for batch in batches:
            identical[batch] = bool(np.array_equal(np.load(Path(scratch) / f"{batch}-0" / "videos.npy"), reference))
    median = {b: {key: statistics.median(values) for key, values in t.items()} for b, t in times.items()}
    report = {
        "row": args.row, "videos": int(len(reference)), "repeats": args.repeats,
        "batches": {str(b): {**times[b], "job_s_median": median[b]["job_s"],
                             "generation_s_median": median[b]["generation_s"],
                             "job_s_over_batch_8": median[b]["job_s"] / median[8]["job_s"],
                             "generation_s_over_batch_8": median[b]["generation_s"] / median[8]["generation_s"],
                             "same_pixels_as_batch_8": identical[b]} for b in batches},
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(sample_threads=1),
    }
    args.out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(json.dumps({b: report["batches"][str(b)]["job_s_median"] for b in batches}))


if __name__ == "__main__":
    main()
