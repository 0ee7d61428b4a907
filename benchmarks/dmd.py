"""Learning benchmark of DMD with every history mode at tiny scale (issue 5, docs/method.md §4, §7).

From one ODE-init student (causal ODE distillation of the toy world's exact causal teacher, docs/method.md §6),
one DMD run per history mode (`raven`, `sf`, `df`, `tf`, `df_self_rollout`) within `--dmd-budget`
seconds of training time each. The ODE init, every run's EMA student (4-step consistency sampler) and
the exact teacher (many-step Euler, guidance 1) are sampled on held-out prompts and scored by the
toy-world benchmark (`raven eval toy`: toy-world Total / Quality / Semantic, not VBench).

Writes benchmarks/reports/dmd.json: `init`, each mode and `teacher`, each with `total`, `quality`,
`semantic`, `wall_s` (training seconds of that stage; sampling seconds for the teacher) and the parser's
accuracies; plus the budgets and the machine.

    .venv/bin/python benchmarks/dmd.py [--base DIR] [--modes raven sf ...] [--dmd-budget 120]

`--ode-init DIR` starts from a finished ODE-init folder (e.g. the DAG's `results/tiny/init/ode_causal/student`);
`--base DIR` reuses a trained base model folder (e.g. `<benchmarks/base.py --work>/base/model_ema`);
without them the chain is trained here within `--base-budget` / `--ode-init-budget` seconds. `--work DIR`
keeps every stage's output, so a rerun resumes each stage instead of redoing it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from host import machine

ROOT = Path(__file__).resolve().parents[1]
MODES = ("raven", "sf", "df", "tf", "df_self_rollout")
SCORE_KEYS = ("total", "quality", "semantic")


def stage_spec(spec, work: Path, name: str, stages: dict) -> Path:
    """The run spec with `stages` merged in, written to work/<name>.yaml."""
    from raven.config import deep_merge, write_spec

    path = work / f"{name}.yaml"
    write_spec(spec.model_copy(update={"stages": deep_merge(spec.stages, stages)}), path)
    return path


def toy_score(spec_file: Path, samples: Path) -> dict:
    """`raven eval toy` on a samples folder (videos.npy + samples.json): the toy-world benchmark JSON."""
    from raven.cli import main as raven

    out = samples / "toy_eval.json"
    if raven(["eval", "toy", "--spec", str(spec_file), "--samples", str(samples), "--out", str(out)]) != 0:
        raise RuntimeError(f"raven eval toy failed on {samples}")
    scores = json.loads(out.read_text())
    missing = [key for key in SCORE_KEYS if key not in scores]
    if missing:
        raise KeyError(f"{out}: the toy benchmark gave no {missing}; keys present: {sorted(scores)}")
    return scores


def student_samples(spec_file: Path, model: Path, prompts: Path, out: Path) -> Path:
    """`raven sample` (4-step consistency sampler, streaming KV cache) of a causal student folder."""
    from raven.cli import main as raven

    command = ["sample", "--spec", str(spec_file), "--model", str(model), "--prompts", str(prompts), "--out", str(out)]
    if not (out / "summary.json").is_file() and raven(command) != 0:
        raise RuntimeError(f"raven sample failed for {model}")
    return out


def teacher_samples(spec, prompts: list[str], out: Path, steps: int = 40, shift: float = 3.0) -> tuple[Path, float]:
    """The exact teacher's Euler samples (guidance 1) in `raven sample`'s folder format; returns the
    folder and the sampling seconds."""
    from raven.data.video import encode_mp4
    from raven.diffusion.ode import euler_sample, euler_timesteps
    from raven.io import atomic_write_json
    from raven.world.render import to_uint8
    from raven.world.teacher import ExactTeacher

    started = time.perf_counter()
    teacher = ExactTeacher.from_spec(spec)
    video = spec.video
    seeds = list(range(10_000, 10_000 + len(prompts)))
    noise = torch.stack([torch.randn(3, video.frames, video.height, video.width,
                                     generator=torch.Generator().manual_seed(s)) for s in seeds])
    videos = to_uint8(euler_sample(lambda x, t: teacher(x, t, prompts), noise, euler_timesteps(steps, shift)).numpy())
    (out / "videos").mkdir(parents=True, exist_ok=True)
    for index, frames in enumerate(videos):
        (out / "videos" / f"{index:05d}.mp4").write_bytes(encode_mp4(frames, video.fps))
    np.save(out / "videos.npy", videos)
    atomic_write_json(out / "samples.json", [{"index": i, "prompt": p, "seed": s, "file": f"videos/{i:05d}.mp4"}
                                             for i, (p, s) in enumerate(zip(prompts, seeds))])
    seconds = time.perf_counter() - started
    atomic_write_json(out / "summary.json", {"sampler": "euler", "steps": steps, "shift": shift, "wall_s": seconds})
    return out, seconds


def accuracies(samples: Path) -> dict:
    from raven.world.parser import accuracy

    records = json.loads((samples / "samples.json").read_text())
    return accuracy(np.load(samples / "videos.npy"), [r["prompt"] for r in records])


def row(spec_file: Path, samples: Path, wall_s: float) -> dict:
    scores = toy_score(spec_file, samples)
    return {**{key: scores[key] for key in SCORE_KEYS}, "wall_s": round(wall_s, 1), **accuracies(samples)}


def prompts_and_clips(spec, work: Path, heldout_count: int) -> tuple[Path, Path, Path]:
    """Training and held-out prompt files and the toy clip shards (tf/df history) of the scale."""
    from raven.config import stage_options
    from raven.data.options import DataOptions
    from raven.data.prompts import write_prompt_file
    from raven.data.stage import build_clips, build_prompts

    options = stage_options(spec, "data", DataOptions)
    train, heldout, _ = build_prompts(options)
    write_prompt_file(work / "train.txt", train)
    write_prompt_file(work / "heldout.txt", heldout[:heldout_count])
    build_clips(spec, options, work / "train.txt", work / "clips")
    return work / "train.txt", work / "heldout.txt", work / "clips"


def ode_init_chain(spec_file: Path, work: Path, train: Path, base: str | None) -> tuple[Path, dict]:
    """Base (unless given) → exact causal teacher → ODE pairs → ODE init, each resuming from `work`.
    Returns the ODE-init folder and each stage's training seconds."""
    from raven.training.base import train_base
    from raven.training.causal_teacher import train_causal_teacher
    from raven.training.ode_init import ode_pairs_stage, train_ode_init

    seconds = {}
    if base is None:
        seconds["base"] = train_base(spec_file, prompts=str(train), out=str(work / "base"))["train_s"]
    base_model = Path(base) if base else work / "base" / "model_ema"
    train_causal_teacher(spec_file, out=work / "causal_teacher")
    started = time.perf_counter()
    if not (work / "pairs" / "summary.json").is_file():
        ode_pairs_stage(spec_file, work / "causal_teacher", train, work / "pairs")
    seconds["ode_pairs"] = time.perf_counter() - started
    seconds["ode_init"] = train_ode_init(spec_file, work / "pairs", base_model, work / "ode_init")["train_s"]
    return work / "ode_init", seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: RAVEN_THREADS, else 1; raven.runtime)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--base", help="a trained base model folder (save_pretrained); default: train one")
    parser.add_argument("--ode-init", help="a finished `raven train ode-init` output folder to start from "
                        "(its summary.json names the base, which initialises the critic); default: train one")
    parser.add_argument("--pairs-per-prompt", type=int, default=8, help="ODE trajectories per training prompt")
    parser.add_argument("--base-budget", type=float, default=900.0)
    parser.add_argument("--ode-init-budget", type=float, default=300.0)
    parser.add_argument("--dmd-budget", type=float, default=120.0, help="training seconds per DMD run")
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "dmd.json"))
    args = parser.parse_args()
    from raven.runtime import apply_thread_policy

    apply_thread_policy(args.threads)

    from raven.config import resolve_spec
    from raven.data.prompts import read_prompt_file
    from raven.io import atomic_write_json, read_json
    from raven.training.dmd import train_dmd

    started, load_at_start = time.perf_counter(), os.getloadavg()
    work = Path(args.work or tempfile.mkdtemp(prefix="raven-dmd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = resolve_spec(ROOT / "config", args.scale)
    spec = spec.model_copy(update={"tracking_uri": f"sqlite:///{work}/mlflow.db"})
    keep = {"on_budget": "keep"}  # time-boxed stages: a run its budget stops keeps its (marked) model
    spec_file = stage_spec(spec, work, "spec", {"base": {"budget_s": args.base_budget, **keep},
                                                "ode_init": {"budget_s": args.ode_init_budget, **keep},
                                                "ode_pairs": {"samples_per_prompt": args.pairs_per_prompt}})
    train, heldout, clips = prompts_and_clips(spec, work, args.heldout)
    if args.ode_init:
        ode_init, init_seconds = Path(args.ode_init), {"ode_init": read_json(Path(args.ode_init) / "summary.json")["train_s"]}
    else:
        ode_init, init_seconds = ode_init_chain(spec_file, work, train, args.base)
    init_model = ode_init / "model"

    report = {
        "scale": args.scale, "prompts": args.heldout, "teacher_kind": "toy-world exact denoiser, 40 Euler steps, guidance 1",
        "scores": "toy-world benchmark (raven eval toy), not VBench",
        "budgets_s": {"dmd": args.dmd_budget, "ode_init": None if args.ode_init else args.ode_init_budget,
                      "base": None if args.base or args.ode_init else args.base_budget},
        "stage_train_s": {k: round(v, 1) for k, v in init_seconds.items()},
        "ode_init_from": args.ode_init or "trained here", "base_from": args.base or "trained here",
        "pairs_per_prompt": None if args.ode_init else args.pairs_per_prompt,
    }

    def publish(name: str, result: dict) -> None:
        """Every finished row is written at once, so an interrupted run still leaves its rows."""
        report[name] = result
        print(name, result, flush=True)
        report.update({"wall_s": round(time.perf_counter() - started, 1),
                       "machine": {**machine(), "load_average_at_start": load_at_start}})
        atomic_write_json(args.out, report)

    samples, teacher_s = teacher_samples(spec, read_prompt_file(heldout), work / "samples" / "teacher")
    publish("teacher", row(spec_file, samples, teacher_s))
    publish("init", row(spec_file, student_samples(spec_file, init_model, heldout, work / "samples" / "init"),
                        init_seconds["ode_init"]))
    for mode in args.modes:
        mode_spec = stage_spec(spec, work, f"dmd_{mode}", {"dmd": {"history_mode": mode, "budget_s": args.dmd_budget, **keep}})
        summary = train_dmd(mode_spec, init_model, train, work / f"dmd_{mode}", clips=clips)
        samples = student_samples(mode_spec, work / f"dmd_{mode}" / "model_ema", heldout, work / "samples" / mode)
        publish(mode, {**row(mode_spec, samples, summary["train_s"]), "iterations": summary["iterations"]})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
