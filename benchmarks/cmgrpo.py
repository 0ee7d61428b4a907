"""Learning benchmark of CM-GRPO at tiny scale (issue 6, docs/method.md §8): do the toy rewards go up?

From a tiny RAVEN student (`--init`, e.g. `<benchmarks/dmd.py --work>/dmd_raven/model_ema`; without it the
chain base → exact causal teacher → ODE pairs → ODE init → RAVEN DMD is run here within the given budgets),
one CM-GRPO run per reward-weight row of config/experiments.yaml (`raven_cmgrpo`, the released weights, and
the `rw_*` ablations), each within `--budget` seconds of training on the toy (weight-free) rewards. Before
and after, the student (the run's EMA, merged) samples `--samples` videos of each of `--heldout` held-out
prompts with fixed seeds; they are scored by every toy reward and by the toy-world benchmark.

Writes benchmarks/reports/cmgrpo.json: for the released weights `reward_before`, `reward_after` (the weighted
mean Σ w_m r̄_m / Σ |w_m| of the per-reward means on held-out prompts: the aggregate `sum_then_normalize`;
`normalize_then_sum` is zero-mean by construction), `total_before`, `total_after` (toy-world Total, not
VBench), `wall_s` (training seconds), `rewards_before/after/change` per reward; `ablations`: the same keys
per weight row; plus budgets and the machine.

    .venv/bin/python benchmarks/cmgrpo.py [--init DIR] [--budget 180] [--iterations N] [--rows raven_cmgrpo rw_...]
        [--threads 1] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from host import machine

ROOT = Path(__file__).resolve().parents[1]
RELEASED = "raven_cmgrpo"
ABLATIONS = ("rw_ta1_dd0.35_ms0.75_aq1_iq1", "rw_ta2_dd0.3_ms0.75_aq1_iq1", "rw_ta2_dd0.35_ms1_aq1_iq1",
             "rw_ta2_dd0.35_ms0.75_aq2_iq2")
EVAL_SEED = 50_000


# Time-boxed stages: a run its budget stops keeps its model, marked stopped_by_budget (raven.training.loop).
KEEP = {"on_budget": "keep"}


def row_spec(row: str, scale: str, work: Path, budget: float, iterations: int | None) -> tuple[Path, object]:
    from raven.config import deep_merge, resolve_spec, write_spec

    spec = resolve_spec(ROOT / "config", scale, row=row)
    override = {"budget_s": budget, **KEEP} | ({"iterations": iterations} if iterations else {})
    stages = deep_merge(spec.stages, {"cmgrpo": override})
    spec = spec.model_copy(update={"stages": stages, "tracking_uri": f"sqlite:///{work}/mlflow.db"})
    path = work / f"{row}.yaml"
    write_spec(spec, path)
    return path, spec


def raven_student(spec, work: Path, args) -> Path:
    """The tiny RAVEN student: base → exact causal teacher → ODE pairs → ODE init → DMD (history mode
    raven); every stage resumes from `work`."""
    from raven.config import deep_merge, stage_options, write_spec
    from raven.data.options import DataOptions
    from raven.data.prompts import write_prompt_file
    from raven.data.stage import build_clips, build_prompts
    from raven.training.base import train_base
    from raven.training.causal_teacher import train_causal_teacher
    from raven.training.dmd import train_dmd
    from raven.training.ode_init import ode_pairs_stage, train_ode_init

    stages = deep_merge(spec.stages, {"base": {"budget_s": args.base_budget, **KEEP},
                                      "ode_init": {"budget_s": args.ode_init_budget, **KEEP},
                                      "dmd": {"budget_s": args.dmd_budget, "history_mode": "raven", **KEEP}})
    spec_file = work / "chain.yaml"
    write_spec(spec.model_copy(update={"stages": stages}), spec_file)
    options = stage_options(spec, "data", DataOptions)
    train, _, _ = build_prompts(options)
    write_prompt_file(work / "train.txt", train)
    build_clips(spec, options, work / "train.txt", work / "clips")
    train_base(spec_file, prompts=str(work / "train.txt"), out=str(work / "base"))
    train_causal_teacher(spec_file, out=work / "causal_teacher")
    if not (work / "pairs" / "summary.json").is_file():
        ode_pairs_stage(spec_file, work / "causal_teacher", work / "train.txt", work / "pairs")
    train_ode_init(spec_file, work / "pairs", work / "base" / "model_ema", work / "ode_init")
    train_dmd(spec_file, work / "ode_init" / "model", work / "train.txt", work / "dmd_raven", clips=work / "clips")
    return work / "dmd_raven" / "model_ema"


@torch.no_grad()
def evaluate(spec, model_folder: Path, prompts: list[str], samples: int) -> dict:
    """Per-reward means and the toy-world benchmark of `samples` videos per held-out prompt (fixed seeds)."""
    from raven.diffusion.schedule import student_timesteps
    from raven.diffusion.streaming import generate
    from raven.evaluation.toy import benchmark
    from raven.models import causal_forwards, load_transformer
    from raven.rewards import REWARD_NAMES, RewardSources, build_rewards, score_videos
    from raven.training.base import ModelParts, TextTable
    from raven.world.render import to_uint8

    parts = ModelParts.build(spec)
    forwards = causal_forwards(load_transformer(model_folder, spec).eval(), spec)
    table = TextTable.build(parts.encode_text, prompts)
    rewards = build_rewards(list(REWARD_NAMES), RewardSources())
    scores, videos, names = {name: [] for name in REWARD_NAMES}, [], []
    for index, prompt in enumerate(prompts):
        batch = [prompt] * samples
        seeds = [EVAL_SEED + index * samples + i for i in range(samples)]
        latents = generate(forwards, table.embeddings[table.rows(batch)], seeds, timesteps=student_timesteps(spec)).latents
        pixels = parts.codec.decode(latents)
        for name, values in score_videos(rewards, pixels, batch, spec.video.fps).items():
            scores[name].append(values)
        videos.append(to_uint8(pixels.numpy()))
        names += batch
    means = {name: float(np.nanmean(torch.cat(values).numpy())) for name, values in scores.items()}
    toy = benchmark(np.concatenate(videos), names, spec.video.fps)
    return {"rewards": means, "total": toy["total"], "quality": toy["quality"], "semantic": toy["semantic"]}


def weighted(rewards: dict[str, float], weights: dict[str, float]) -> float:
    """Σ w_m r̄_m / Σ |w_m| (sum_then_normalize of the per-reward means)."""
    return sum(w * rewards[m] for m, w in weights.items()) / sum(abs(w) for w in weights.values())


def run_row(row: str, args, work: Path, init: Path, heldout: list[str], before: dict) -> dict:
    from raven.config import stage_options
    from raven.training.cmgrpo import CMGRPOOptions, train_cmgrpo

    spec_file, spec = row_spec(row, args.scale, work, args.budget, args.iterations)
    weights = stage_options(spec, "cmgrpo", CMGRPOOptions).reward_weights
    summary = train_cmgrpo(spec_file, init, work / "train.txt", work / row)
    after = evaluate(spec, work / row / "model_ema", heldout, args.samples)
    result = {
        "row": row, "reward_weights": weights,
        "reward_before": weighted(before["rewards"], weights), "reward_after": weighted(after["rewards"], weights),
        "total_before": before["total"], "total_after": after["total"],
        "wall_s": round(summary["train_s"], 1), "iterations": summary["iterations"],
        "rewards_before": before["rewards"], "rewards_after": after["rewards"],
        "rewards_change": {m: after["rewards"][m] - before["rewards"][m] for m in after["rewards"]},
    }
    print(row, {k: result[k] for k in ("reward_before", "reward_after", "total_before", "total_after", "wall_s")}, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: RAVEN_THREADS, else 1; raven.runtime)")
    parser.add_argument("--init", help="tiny RAVEN student folder; default: train the chain here")
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per CM-GRPO run")
    parser.add_argument("--iterations", type=int,
                        help="CM-GRPO iterations (default: the scale's); the budget still stops a run")
    parser.add_argument("--rows", nargs="+", default=[RELEASED, *ABLATIONS])
    parser.add_argument("--heldout", type=int, default=16)
    parser.add_argument("--samples", type=int, default=4, help="videos per held-out prompt")
    parser.add_argument("--base-budget", type=float, default=900.0)
    parser.add_argument("--ode-init-budget", type=float, default=300.0)
    parser.add_argument("--dmd-budget", type=float, default=120.0)
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "cmgrpo.json"))
    args = parser.parse_args()
    from raven.runtime import apply_thread_policy

    apply_thread_policy(args.threads)

    from raven.config import resolve_spec, stage_options
    from raven.data.options import DataOptions
    from raven.data.prompts import write_prompt_file
    from raven.data.stage import build_prompts
    from raven.io import atomic_write_json

    started = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="raven-cmgrpo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = resolve_spec(ROOT / "config", args.scale)
    spec = spec.model_copy(update={"tracking_uri": f"sqlite:///{work}/mlflow.db"})
    train, heldout, _ = build_prompts(stage_options(spec, "data", DataOptions))
    write_prompt_file(work / "train.txt", train)
    heldout = heldout[: args.heldout]
    init = Path(args.init) if args.init else raven_student(spec, work, args)
    before = evaluate(spec, init, heldout, args.samples)
    print("before", before, flush=True)
    runs = [run_row(row, args, work, init, heldout, before) for row in args.rows]
    released = next((r for r in runs if r["row"] == RELEASED), runs[0])
    report = {
        **{k: released[k] for k in ("reward_before", "reward_after", "total_before", "total_after", "wall_s",
                                    "iterations", "rewards_before", "rewards_after", "rewards_change", "reward_weights")},
        "ablations": [r for r in runs if r is not released],
        "scale": args.scale, "heldout_prompts": len(heldout), "samples_per_prompt": args.samples,
        "rewards": "toy (weight-free) rewards of raven.rewards.toy; total: toy-world benchmark, not VBench",
        "budget_s": args.budget, "iterations_limit": args.iterations,
        "init": args.init or "trained here (base → ODE init → RAVEN DMD)",
        "bench_wall_s": round(time.perf_counter() - started, 1), "machine": machine(),
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
