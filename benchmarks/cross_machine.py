"""Benchmark of determinism across machines: the released tiny base's last training segment, replayed here.

The released base's run (data/weights/tiny/train/base) keeps its checkpoints of iterations 59,500 and
60,000. This resumes a copy from 59,500 with the run's own spec and prompts, trains the same 500 iterations
on one thread, and compares the result with the committed iteration-60,000 checkpoint and exported weights,
tensor by tensor. On one machine a resumed run continues exactly (tests/test_run_length.py), so two
replays there agree bit for bit. On a machine whose CPU differs from the released run's, torch's kernels
may round differently (`cpu_capability`: the vector instructions they were dispatched for), and the report
says by how much. The step time of the same 500 iterations compares the machines' speed too.

    .venv/bin/python benchmarks/cross_machine.py   # about 3 minutes; writes benchmarks/reports/cross_machine.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

import torch
from host import machine

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "data" / "weights" / "tiny" / "train" / "base"
START, END = "iter-00059500", "iter-00060000"
# environment variables that choose which CPU kernels torch, MKL and oneDNN dispatch to
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def compare(mine: Path, reference: Path) -> dict:
    """Tensors of two safetensors files: how many are bit-identical, and the largest absolute difference."""
    from safetensors.torch import load_file

    a, b = load_file(mine), load_file(reference)
    if sorted(a) != sorted(b):
        raise SystemExit(f"{mine} and {reference} hold different tensors: {sorted(set(a) ^ set(b))}")
    diffs = [(a[k].double() - b[k].double()).abs().max().item() if a[k].numel() else 0.0 for k in a]
    return {"tensors": len(a), "identical": sum(torch.equal(a[k], b[k]) for k in a), "max_abs_diff": max(diffs)}


def replay(work: Path) -> dict:
    """Copy the run up to iteration 59,500 into `work` and train it to 60,000 with the run's spec."""
    from raven.config import read_spec, write_spec
    from raven.training.base import train_base

    shutil.copy(RUN / "train.txt", work / "train.txt")
    spec = read_spec(RUN / "spec.yaml")
    write_spec(spec.model_copy(update={"tracking_uri": f"sqlite:///{work}/mlflow.db"}), work / "spec.yaml")
    (work / "base" / "checkpoints").mkdir(parents=True)
    shutil.copy(RUN / "base" / "checkpoints" / "run.json", work / "base" / "checkpoints" / "run.json")
    shutil.copytree(RUN / "base" / "checkpoints" / START, work / "base" / "checkpoints" / START)
    return train_base(work / "spec.yaml", prompts=str(work / "train.txt"), out=str(work / "base"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "reports" / "cross_machine.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the released run's setting (benchmarks/base.py --threads 1)
    from raven.io import atomic_write_json, read_json

    reference = read_json(RUN / "base" / "summary.json")
    with tempfile.TemporaryDirectory(prefix="raven-cross-machine-") as tmp:
        summary = replay(Path(tmp))
        if summary["resumed_from"] != 59_500 or summary["iterations"] != 60_000:
            raise SystemExit(f"the replay ran {summary['resumed_from']} -> {summary['iterations']}, not 59,500 -> 60,000")
        here = Path(tmp) / "base"
        checkpoint = here / "checkpoints" / END
        files = {name: compare(checkpoint / f"{name}.safetensors", RUN / "base" / "checkpoints" / END / f"{name}.safetensors")
                 for name in ("model-base", "ema-base", "optim-base")}
        files["model_ema (exported, = data/weights/tiny/base)"] = compare(
            here / "model_ema" / "diffusion_pytorch_model.safetensors",
            ROOT / "data" / "weights" / "tiny" / "base" / "diffusion_pytorch_model.safetensors")
    last, ref_last = summary["last_metrics"], reference["last_metrics"]
    report = {
        "command": ".venv/bin/python benchmarks/cross_machine.py",
        "replayed": f"{RUN.relative_to(ROOT)}: {START} -> {END}, 1 thread",
        "bit_identical": all(f["identical"] == f["tensors"] for f in files.values()),
        "files": files,
        "loss_at_60000": {"here": last["loss/base"], "released": ref_last["loss/base"]},
        "mean_step_s": {"here": summary["mean_step_s"], "released_last_segment": reference["mean_step_s"]},
        "step_time_ratio_here_over_released": round(summary["mean_step_s"] / reference["mean_step_s"], 2),
        "released_machine": "not recorded (its summary keeps only its step times)",
        "kernel_env": {name: os.environ.get(name) for name in KERNEL_ENV},
        "machine": machine(),
    }
    atomic_write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
