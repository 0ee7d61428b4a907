"""Gradient noise scale of CM-GRPO (issue 19): is one step's policy gradient signal or noise, how many rollouts
a step would need before larger steps stop paying, for the released reward aggregate and for each reward
alone, and do the rewards' expected gradients point the same way.

From the student a CM-GRPO row starts from, with its fresh LoRA (the row's spec, training prompts and text
cache), `--steps` independent steps are rolled out and scored as `raven train cmgrpo` does
(CMGRPOStep.roll_out, all five toy rewards), and each rollout's policy gradient G_i on the LoRA weights is
taken with advantage 1 at the transition the trainer draws (CMGRPOStep.micro_batch_loss, one rollout per
micro-batch). The loss is linear in the advantage, so a step's gradient under any objective is
g = (1/n) Σ_i Â_i G_i with that objective's advantages (the trainer's `step_advantages`). No optimiser step is taken: all steps are drawn at the
same weights.

From the M step gradients of an objective, with mean G and covariance Σ (McCandlish et al. 2018, "An
empirical model of large-batch training"): `signal` |G|² (mean of g_j·g_l over pairs j ≠ l) and `noise` tr Σ
(sample variance) are unbiased; `step_snr` = |G|²/tr Σ; `noise_scale_steps` = tr Σ/|G|² is the critical batch
B_simple in steps of the row's size (`noise_scale_rollouts` in rollouts): far below it, a step's update is
mostly noise, a larger learning rate adds noise faster than progress, and what a run achieves is set by its
total number of rollouts; `update_snr` = iterations·|G|²/tr Σ is the signal-to-noise (norm²) of the sum of
the run's step gradients. Geometries: `sgd` (the raw gradients) and `adam` (each coordinate divided by its
RMS over the steps, as Adam's second moment does). Cosines between objectives use the unbiased cross terms.
Intervals: 95% bootstrap over steps (each draw's distinct pairs).

    .venv/bin/python benchmarks/grpo_noise.py [--results results/tiny] [--row raven_cmgrpo] [--steps 32]

Adds (or replaces) the replica's entry in benchmarks/reports/grpo_noise.json (`replicas`), with the critical
batches of every replica there side by side (`critical_batch_steps`); replicas run side by side share the file.
"""

from __future__ import annotations

import argparse
import fcntl
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from host import machine

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "reports" / "grpo_noise.json"
BOOTSTRAP = 2000


# ---- the statistics (known answers in tests/test_grpo_noise.py) ----------------------------------------


def pair_means(gram: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per draw (rows of `counts`: how often each step was drawn) the mean of gram[i, j] over the drawn pairs of
    distinct steps i ≠ j: (wᵀKw − Σ w_i² K_ii) / ((Σw)² − Σ w_i²)."""
    quadratic = ((counts @ gram) * counts).sum(1) - (counts**2) @ np.diag(gram)
    return quadratic / (counts.sum(1) ** 2 - (counts**2).sum(1))


def variance_traces(gram: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per draw tr Σ of the drawn vectors (with repeats) from their Gram matrix: Σ|g − ḡ|² / (m − 1)."""
    m = counts.sum(1)
    return (counts @ np.diag(gram) - ((counts @ gram) * counts).sum(1) / m) / (m - 1)


def interval(values: np.ndarray) -> list[float | None]:
    """95% of the finite draws; None (JSON has no NaN) where more than a tenth are undefined."""
    finite = values[np.isfinite(values)]
    if len(finite) < 0.9 * len(values):
        return [None, None]
    return [float(np.quantile(finite, 0.025)), float(np.quantile(finite, 0.975))]


def gram(a: np.ndarray, b: np.ndarray, scale: np.ndarray | None = None, columns: int = 1 << 15) -> np.ndarray:
    """a·bᵀ in float64 (rows: steps), each coordinate divided by `scale` on both sides when given; accumulated over
    blocks of columns so that the float32 gradients are never copied whole."""
    out = np.zeros((len(a), len(b)))
    for start in range(0, a.shape[1], columns):
        part = slice(start, start + columns)
        x, y = a[:, part].astype(np.float64), b[:, part].astype(np.float64)
        if scale is not None:
            x, y = x / scale[part], y / scale[part]
        out += x @ y.T
    return out


def adam_scales(rows: np.ndarray, columns: int = 1 << 15) -> np.ndarray:
    """Per coordinate the RMS of the step gradients over the steps (1 where it is 0): Adam's second moment
    (β1 = 0 here) divides every coordinate of its update by it, so `gram(…, scale)` is Adam's geometry."""
    rms = np.concatenate([np.sqrt((rows[:, s:s + columns].astype(np.float64) ** 2).mean(0))
                          for s in range(0, rows.shape[1], columns)])
    return np.where(rms > 0, rms, 1.0)


def noise_statistics(gradients: Mapping[str, np.ndarray], rollouts_per_step: int, iterations: int,
                     seed: int = 0, bootstrap: int = BOOTSTRAP, adam: bool = False) -> dict:
    """Per objective (rows of `gradients[name]`: one step's gradient each) the signal |G|², the noise tr Σ,
    the step's signal-to-noise |G|²/tr Σ, the critical batch tr Σ/|G|² in steps (and rollouts), and the
    signal-to-noise of the sum of `iterations` step gradients; the cosines of the objectives' G (None where
    a signal is ≤ 0). Point estimates, and 95% bootstrap intervals over steps (each draw's distinct pairs).
    `adam`: in Adam's geometry, each objective's coordinates divided by their RMS over its steps."""
    names = list(gradients)
    m = len(gradients[names[0]])
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, m, (bootstrap, m))
    counts = np.vstack([np.ones(m), np.stack([np.bincount(row, minlength=m) for row in drawn])])
    counts = counts[(counts > 0).sum(1) > 1]  # a draw of one step repeated has no pair
    scales = {n: adam_scales(gradients[n]) if adam else None for n in names}
    grams = {n: gram(gradients[n], gradients[n], scales[n]) for n in names}
    signal = {n: pair_means(grams[n], counts) for n in names}  # row 0: every step once
    noise = {n: variance_traces(grams[n], counts) for n in names}
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = {n: np.where(noise[n] > 0, signal[n] / noise[n], np.nan) for n in names}

    def steps_for(ratio: float | None) -> float | None:  # None: no signal measured
        return 1 / ratio if ratio is not None and ratio > 0 else None

    objectives = {}
    for n in names:
        point, ci = float(snr[n][0]), interval(snr[n][1:])
        signal_ci = interval(signal[n][1:])
        objectives[n] = {
            "signal": float(signal[n][0]), "signal_ci": signal_ci,
            "signal_significant": signal_ci[0] is not None and signal_ci[0] > 0,
            "noise": float(noise[n][0]), "step_snr": point if np.isfinite(point) else None, "step_snr_ci": ci,
            "noise_scale_steps": steps_for(point), "noise_scale_steps_ci": [steps_for(ci[1]), steps_for(ci[0])],
            "noise_scale_rollouts": None if steps_for(point) is None else steps_for(point) * rollouts_per_step,
            "update_snr": iterations * point if np.isfinite(point) else None,
            "update_snr_ci": [None if c is None else iterations * c for c in ci],
        }
    cosines = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # in Adam's geometry each side is scaled as its own objective's update; the geometric mean keeps
            # the cross term symmetric
            both = None if not adam else np.sqrt(scales[a] * scales[b])
            cross = pair_means(gram(gradients[a], gradients[b], both), counts)
            with np.errstate(invalid="ignore"):
                cosine = np.where((signal[a] > 0) & (signal[b] > 0), cross / np.sqrt(signal[a] * signal[b]), np.nan)
            cosines.append({"a": a, "b": b, "cosine": float(cosine[0]) if np.isfinite(cosine[0]) else None,
                            "ci": interval(cosine[1:])})
    return {"objectives": objectives, "cosines": cosines}


# ---- the gradients ---------------------------------------------------------------------------------------


def objectives_of(options) -> dict[str, tuple[str, dict[str, float]]]:
    """name -> (aggregation, weights): the row's own objective, the other aggregation, each reward alone."""
    from raven.rewards import REWARD_NAMES

    other = "sum_then_normalize" if options.aggregation == "normalize_then_sum" else "normalize_then_sum"
    found = {"row": (options.aggregation, dict(options.reward_weights)),
             f"row_{other}": (other, dict(options.reward_weights))}
    found.update({name: ("normalize_then_sum", {name: 1.0}) for name in REWARD_NAMES})
    return found


@dataclass
class GradientProbe:
    """The CM-GRPO step `raven train cmgrpo --spec --init --prompts [--text-cache]` would start with (all five
    toy rewards scored), and the LoRA weights its gradients are taken on."""

    step: Any  # raven.training.cmgrpo.CMGRPOStep
    trainable: list
    train_prompts: int

    @classmethod
    def build(cls, spec_path: Path, init: Path, prompts: Path, text_cache: Path | None) -> "GradientProbe":
        from raven.config import read_spec, stage_options
        from raven.data.prompts import read_prompt_file
        from raven.diffusion.schedule import student_timesteps
        from raven.models import causal_forwards
        from raven.rewards import REWARD_NAMES, build_rewards
        from raven.training.base import ModelParts, TextTable
        from raven.training.cmgrpo import CMGRPOOptions, CMGRPOStep, build_policy, sampler_kernel
        from raven.training.distributed import World

        spec = read_spec(spec_path)
        options = stage_options(spec, "cmgrpo", CMGRPOOptions)
        kernel, eta = sampler_kernel(spec)
        parts = ModelParts.build(spec, text_cache).place(World())
        model = build_policy(parts, init, options, spec.seed)
        prompt_list = read_prompt_file(prompts)
        table = TextTable.build(parts.encode_text, prompt_list)
        rewards = build_rewards(list(REWARD_NAMES), options.rewards)
        step = CMGRPOStep(options, spec, model, causal_forwards(model, spec), table, parts.codec.decode, rewards,
                          student_timesteps(spec), kernel, eta, spec.sampler.em_convention)
        return cls(step, [p for p in model.parameters() if p.requires_grad], len(prompt_list))

    def context(self, iteration: int):
        import torch

        from raven.training.distributed import World
        from raven.training.loop import StepContext

        world = World()
        seed = world.seed(self.step.spec.seed, iteration)
        return StepContext(iteration, torch.Generator().manual_seed(seed), world, None)

    def rollout_gradients(self, iteration: int):
        """Iteration `iteration`'s rollouts (as the trainer draws them), the transitions k it trains, and each
        rollout's flattened LoRA gradient G_i with advantage 1 (one rollout per micro-batch), [n, P] float64."""
        import torch

        from raven.training.cmgrpo import select, transition_choice

        ctx, options = self.context(iteration), self.step.options
        batch = self.step.roll_out(ctx)
        k = transition_choice(len(batch.prompts), len(self.step.timesteps), options.skip_timesteps, ctx.generator)
        rows = []
        for i in range(len(batch.prompts)):
            index = torch.tensor([i])
            loss, _ = self.step.micro_batch_loss(select(batch.rollout, index), k[index], batch.text[index],
                                                 torch.ones(1), ctx)
            rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, self.trainable)]).double())
        return batch, k, torch.stack(rows)


def objective_gradient(batch, per_rollout, aggregation: str, weights: Mapping[str, float], options):
    """The step's gradient under one reward objective: (1/n) Σ_i Â_i G_i, the loss being linear in Â, with the
    trainer's advantages (`aggregate_rewards` per rollout call as CMGRPOStep.roll_out, then `step_advantages`)."""
    import torch

    from raven.rewards import aggregate_rewards
    from raven.training.cmgrpo import step_advantages

    call = options.group_size * options.groups_per_call
    aggregate = torch.cat([aggregate_rewards(aggregation, {m: r[i:i + call] for m, r in batch.rewards.items()}, weights,
                                             batch.prompts[i:i + call]) for i in range(0, len(batch.prompts), call)])
    advantages, _ = step_advantages(batch.prompts, aggregate, batch.rewards, weights, options.adv_clip_max)
    return advantages.double() @ per_rollout / len(batch.prompts)


def step_gradients(probe: GradientProbe, steps: int) -> tuple[dict, dict]:
    """Per objective [steps, P] step gradients at the probe's weights, and what describes the run (sizes,
    within-group spreads of every reward)."""
    from tqdm import tqdm

    from raven.rewards import REWARD_NAMES

    options = probe.step.options
    objectives = objectives_of(options)
    size = sum(p.numel() for p in probe.trainable)
    gradients = {name: np.zeros((steps, size), dtype=np.float32) for name in objectives}  # 7 × 512 × 212k: 3 GB
    spreads = {name: [] for name in REWARD_NAMES}
    for iteration in tqdm(range(steps), desc="CM-GRPO steps", unit="step"):
        batch, _, per_rollout = probe.rollout_gradients(iteration)
        for name, (aggregation, weights) in objectives.items():
            gradients[name][iteration] = objective_gradient(batch, per_rollout, aggregation, weights, options).numpy()
        for name, values in batch.rewards.items():
            for prompt in dict.fromkeys(batch.prompts):
                spreads[name].append(float(values[[p == prompt for p in batch.prompts]].std(correction=0)))
    described = {
        "train_prompts": probe.train_prompts,
        "rollouts_per_step": options.group_size * options.groups_per_call * options.calls_per_step,
        "group_size": options.group_size, "groups_per_step": options.groups_per_call * options.calls_per_step,
        "iterations": options.iterations, "lr": options.optim.lr, "lora_parameters": size,
        "objectives": {name: {"aggregation": a, "weights": w} for name, (a, w) in objectives.items()},
        "within_group_std": {name: float(np.mean(v)) for name, v in spreads.items()},
        "zero_spread_groups": {name: float(np.mean(np.asarray(v) < 1e-4)) for name, v in spreads.items()},
    }
    return gradients, described


def init_of(results: Path, row: str) -> Path:
    """The student a CM-GRPO replica starts from: its training summary's `init`, else the `model_ema` of the
    replica of the row it continues (`raven_cmgrpo@s1` -> `raven@s1`, config/experiments.yaml's `from`)."""
    from raven.config import load_experiments
    from raven.io import read_json

    summary = results / "train" / row / "summary.json"
    if summary.is_file():
        return Path(read_json(summary)["init"])
    base, _, seed = row.partition("@")
    source = load_experiments(ROOT / "config").get(base, {}).get("from")
    if source is None:
        raise SystemExit(f"{row}: no training summary at {summary} and no `from` row in config/experiments.yaml; "
                         "give --init (the student folder the CM-GRPO row starts from)")
    return results / "train" / (f"{source}@{seed}" if seed else source) / "model_ema"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "tiny")
    parser.add_argument("--row", default="raven_cmgrpo", help="a CM-GRPO replica of the DAG (its resolved spec)")
    parser.add_argument("--init", type=Path, help="the student it starts from (default: see init_of)")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.steps < 3:
        parser.error("--steps must be at least 3 (the signal needs pairs of steps, its interval more)")
    import torch

    from raven.io import atomic_write_json, read_json

    torch.set_num_threads(1)
    start = time.perf_counter()
    inputs = {"spec": args.results / "specs" / f"{args.row}.yaml", "init": args.init or init_of(args.results, args.row),
              "prompts": args.results / "data" / "prompts" / "train.txt",
              "text_cache": args.results / "data" / "text_cache"}
    gradients, described = step_gradients(GradientProbe.build(*inputs.values()), args.steps)
    geometries = {"sgd": noise_statistics(gradients, described["rollouts_per_step"], described["iterations"]),
                  "adam": noise_statistics(gradients, described["rollouts_per_step"], described["iterations"],
                                           adam=True)}
    entry = {"steps": args.steps, **{k: str(v) for k, v in inputs.items()}, **described, "geometries": geometries,
             "intervals": "95% bootstrap over steps (distinct pairs)", "wall_s": round(time.perf_counter() - start, 1),
             "machine": machine(),
             "command": shlex.join([".venv/bin/python", "benchmarks/grpo_noise.py", *sys.argv[1:]])}
    with open(f"{args.out}.lock", "a") as lock:  # replicas measured side by side each add their entry
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = read_json(args.out) if args.out.is_file() else {"replicas": {}}
        report["replicas"][args.row] = entry
        report["critical_batch_steps"] = {  # per objective, Adam's geometry: point [interval] per replica
            name: {row: [values["geometries"]["adam"]["objectives"][name]["noise_scale_steps"],
                         values["geometries"]["adam"]["objectives"][name]["noise_scale_steps_ci"]]
                   for row, values in sorted(report["replicas"].items())}
            for name in geometries["adam"]["objectives"]}
        atomic_write_json(args.out, report)
    for name, values in geometries["adam"]["objectives"].items():
        print(f"{name:24s} step SNR {values['step_snr']} {values['step_snr_ci']}  update SNR {values['update_snr']}  "
              f"critical batch {values['noise_scale_steps']} {values['noise_scale_steps_ci']} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
