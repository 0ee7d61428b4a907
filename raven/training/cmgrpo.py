"""CM-GRPO (docs/method.md §8): group-relative policy optimisation on the consistency sampler's Gaussian kernel.

One step (strictly on-policy: one optimiser step per rollout batch, no ratio or clipping of ratios):
1. Rollouts: `calls_per_step` batched streaming calls, each of `groups_per_call` prompts × `group_size`
   samples from one policy snapshot with the trajectory recorded; ranks of one `sync_group_size` group draw
   the same prompts (their seeds differ), so a prompt's group spans the sync group.
2. Rewards on the decoded videos (`raven.rewards`), aggregated per call (`normalize_then_sum` /
   `sum_then_normalize`), then per-prompt advantages pooled over ranks and calls, clipped to ±adv_clip_max.
   A sample whose reward failed (NaN) is excluded from its group's statistics, with a warning, and gets
   advantage 0 (no gradient).
3. Per rollout one transition k ∈ {0 … steps − 1 − skip_timesteps} (the deterministic last step is never
   trained): x_t = xt[k], the realised x_s = xt[k+1]. The policy forward of the history mode (RAVEN's
   interleaved forward, or SF-style) gives x̂0_θ; the kernel (consistency, or Euler–Maruyama for the
   Flow-GRPO comparison) gives μ(x̂0_θ), σ ≥ 1e-6. Per element `(x̂0_θ − sg(x̂0_θ + Â·g/2))²` with
   g = ∇_x̂0 log N(x_s; μ, σ²), so the gradient is −Â·∇ log N (for the consistency kernel
   g/2 = A(s)/(2σ²)·(x_s − μ): docs/method.md §8's target). Optional KL: ‖μ − μ_ref‖²/(2σ²) per element, μ_ref from
   the frozen reference at CFG `kl_guidance` against "" (`kl_reference`: the bidirectional base, as the
   release; or the policy with its LoRA disabled). Both terms chunk-weighted; the loss is
   policy_loss_scaling·L_policy + β·L_KL (`cmgrpo_loss`); micro-batches with gradient accumulation.
The policy is the causal student + LoRA (peft, `raven.models.lora`) on docs/method.md §8's modules; only the LoRA
weights train (EMA on them); the adapter and the merged model are exported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator

from raven.config import ConfigError, RunSpec
from raven.config.spec import HistoryMode, OptimSpec, WeightingSpec
from raven.diffusion.consistency import EmConvention, em_sigma_max, gaussian_log_prob, kernel_mean_std
from raven.diffusion.schedule import cfg_combine, student_timesteps, x0_from_velocity
from raven.diffusion.trajectory import Rollout, trajectory_states
from raven.rewards import (
    REWARD_NAMES,
    AdvantageTracker,
    RewardSources,
    aggregate_rewards,
    score_videos,
)
from raven.rewards.aggregate import Aggregation, nonzero_weights, valid_samples
from raven.training.history import frame_times, generator_x0
from raven.training.loop import StageLength, StepContext

log = logging.getLogger(__name__)

SIGMA_FLOOR = 1e-6
POLICY_HISTORY_MODES = ("raven", "sf")
PAPER_REWARD_WEIGHTS = {"videoalign_TA": 2.0, "raft_RAFT": 0.35, "ms_MS": 0.75, "aq_AES": 1.0, "iq_IMG": 1.0}


class CMGRPOOptions(StageLength):
    """`stages.cmgrpo` of a run spec (docs/method.md §8); defaults are the paper's main run."""

    iterations: int = Field(default=160, gt=0)
    group_size: int = Field(default=4, gt=1)
    groups_per_call: int = Field(default=1, gt=0)
    calls_per_step: int = Field(default=1, gt=0)
    rollout_batch_size: int | None = Field(
        default=None, gt=0, description="videos generated together within a call (the release: 4); the call's "
        "groups are still scored and normalised together. None: the whole call at once")
    sync_group_size: int = Field(default=8, gt=0)
    reward_weights: dict[str, float] = Field(default_factory=lambda: dict(PAPER_REWARD_WEIGHTS))
    aggregation: Aggregation = "normalize_then_sum"
    rewards: RewardSources = RewardSources()
    adv_clip_max: float = Field(default=5.0, gt=0)
    skip_timesteps: int = Field(default=1, ge=1)
    micro_batch_size: int = Field(default=2, gt=0)
    policy_loss_scaling: float = Field(default=100.0, gt=0)
    kl_beta: float = Field(default=0.0, ge=0, description="β of the KL term, added as β·L_KL beside "
                           "policy_loss_scaling·L_policy (not multiplied by the scaling, docs/method.md §8)")
    kl_reference: Literal["base", "policy"] = Field(
        default="base", description="the KL's frozen reference: `base`, the bidirectional base model "
        "(weights.base, Wan2.1-T2V-1.3B at paper scale) as the release; `policy`, the policy with its LoRA off")
    kl_guidance: float = Field(default=3.0, ge=0, description="CFG of the KL reference against the empty prompt")
    rollout_guidance: float = Field(
        default=1.0, ge=0, description="CFG of the rollouts against the empty prompt: 3 in the paper-era code "
        "(config/scales/paper.yaml), 1 keeps the kernel exactly on-policy (toy scales)")
    history_mode: HistoryMode = "raven"
    weighting: WeightingSpec = -1
    lora_rank: int = Field(default=256, gt=0)
    lora_alpha: float = Field(default=256, gt=0)
    optim: OptimSpec = OptimSpec(lr=5e-6, betas=(0.0, 0.999), eps=1e-10)
    ema_decay: float = Field(default=0.9675, ge=0, lt=1)
    checkpoint_every: int = Field(default=20, gt=0)

    @field_validator("reward_weights")
    @classmethod
    def _known_rewards(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(REWARD_NAMES))
        if unknown:
            raise ValueError(f"unknown rewards {unknown}; the registry has {list(REWARD_NAMES)}")
        if not any(w != 0 for w in weights.values()):
            raise ValueError("every reward weight is zero: give at least one reward a weight")
        return weights

    @field_validator("history_mode")
    @classmethod
    def _policy_mode(cls, mode: str) -> str:
        if mode not in POLICY_HISTORY_MODES:
            raise ValueError(f"history_mode {mode!r}: CM-GRPO trains on its own rollouts, use one of {POLICY_HISTORY_MODES}")
        return mode


# ---- the formulas --------------------------------------------------------------------------------------


def step_advantages(prompts: Sequence[str], aggregate: torch.Tensor, rewards: dict[str, torch.Tensor],
                    weights: dict[str, float], clip_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step's advantages (per-prompt z-scores of the aggregate R pooled over the step's calls and ranks,
    clipped) and which samples count. A sample whose weighted reward failed, or whose R is not finite, keeps
    its place with advantage 0 (no gradient), so that every rank runs the same micro-batches and the loss
    denominators' all-reduce stays matched."""
    tracker = AdvantageTracker(clip_max)
    tracker.add(prompts, aggregate)
    advantages = tracker.advantages()
    valid = valid_samples(rewards, weights) & torch.isfinite(aggregate)
    return torch.where(valid, advantages, torch.zeros_like(advantages)), valid


def transition_choice(batch: int, num_steps: int, skip_timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """k ~ U{0, …, num_steps − 1 − skip_timesteps} per rollout: the last step(s) are never trained (docs/method.md §8)."""
    trainable = num_steps - skip_timesteps
    if trainable < 1:
        raise ValueError(f"skip_timesteps {skip_timesteps} leaves no trainable step of {num_steps}")
    return torch.randint(0, trainable, (batch,), generator=generator)


def log_prob_gradient(x0_hat: torch.Tensor, x_t: torch.Tensor, x_s: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                      kernel: str, eta: float, sigma_max: float, convention: EmConvention = "release",
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """g = ∇_x̂0 log N(x_s; μ(x̂0), σ²) at the detached x̂0, with μ (detached) and σ (≥ 1e-6) of the kernel."""
    x0 = x0_hat.detach().double().requires_grad_(True)
    with torch.enable_grad():
        mean, std = kernel_mean_std(kernel, x_t.double(), x0, t, s, eta, sigma_max, convention)
        std = std.clamp_min(SIGMA_FLOOR)
        (gradient,) = torch.autograd.grad(gaussian_log_prob(x_s.double(), mean, std).sum(), x0)
    return gradient, mean.detach(), std.detach().expand_as(mean)


def policy_elementwise_loss(x0_hat: torch.Tensor, advantages: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Per element `(x̂0 − sg(x̂0 + Â·g/2))²`: its gradient w.r.t. x̂0 is −Â·g = −Â·∇ log N (docs/method.md §8). float64."""
    x0 = x0_hat.double()
    advantage = advantages.to(x0).view(-1, *([1] * (x0.ndim - 1)))
    target = (x0 + advantage * gradient / 2).detach()
    return (x0 - target).pow(2)


def kl_elementwise_loss(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(μ − μ_ref)²/(2σ²) per element: docs/method.md §8's optional KL to the reference (β is applied by `cmgrpo_loss`)."""
    return (mean - mean_ref.detach()).pow(2) / (2 * std.detach().pow(2))


def cmgrpo_loss(policy: torch.Tensor, kl: torch.Tensor | float, policy_loss_scaling: float, beta: float) -> torch.Tensor:
    """The step's loss `policy_loss_scaling·L_policy + β·L_KL` (docs/method.md §8): β is NOT multiplied by the scaling."""
    return policy_loss_scaling * policy + beta * kl


@contextmanager
def adapters_disabled(model: torch.nn.Module):
    """The frozen reference: the policy with its LoRA switched off."""
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()


# ---- the step ------------------------------------------------------------------------------------------


@dataclass
class RolloutBatch:
    """All rollouts of one step, concatenated over calls: trajectory, prompts, per-call groups, scores."""

    rollout: Rollout
    text: torch.Tensor
    prompts: list[str]
    rewards: dict[str, torch.Tensor]
    aggregate: torch.Tensor


def concat_rollouts(rollouts: Sequence[Rollout]) -> Rollout:
    return Rollout(
        x0=torch.cat([r.x0 for r in rollouts]),
        states=[torch.cat(states) for states in zip(*(r.states for r in rollouts))],
        times=rollouts[0].times,
    )


def select(rollout: Rollout, index: torch.Tensor) -> Rollout:
    return Rollout(rollout.x0[index], [s[index] for s in rollout.states], rollout.times)


def group_gaps(values: torch.Tensor, prompts: Sequence[str]) -> float:
    """Mean over prompts of (max − min) of finite values within the prompt's samples."""
    gaps = []
    for prompt in dict.fromkeys(prompts):
        chosen = values[[p == prompt for p in prompts]]
        chosen = chosen[torch.isfinite(chosen)]
        if len(chosen):
            gaps.append(float(chosen.max() - chosen.min()))
    return sum(gaps) / len(gaps) if gaps else float("nan")


@dataclass
class CMGRPOStep:
    """One CM-GRPO iteration (docs/method.md §8); the loop owns optimiser, EMA, checkpoints and logging."""

    options: CMGRPOOptions
    spec: RunSpec
    model: torch.nn.Module
    policy: object  # CausalForwards of `model`
    text_table: object  # raven.training.base.TextTable of the training prompts
    decode: object  # latents -> pixels in [-1, 1]
    rewards: dict
    timesteps: list[int]
    kernel: Literal["consistency", "euler_maruyama"] = "consistency"
    eta: float = 0.0
    em_convention: EmConvention = "release"
    reference: torch.nn.Module | None = None  # the bidirectional base (kl_reference 'base')

    def draw_prompts(self, ctx: StepContext, call: int) -> list[str]:
        """The call's prompts, equal on every rank of a sync group (seeded by the group's first rank)."""
        world, sync = ctx.world, self.options.sync_group_size
        leader = world.rank - world.rank % sync
        seed = world.seed(self.spec.seed, ctx.iteration * self.options.calls_per_step + call, rank=leader)
        index = torch.randint(0, len(self.text_table.prompts), (self.options.groups_per_call,),
                              generator=torch.Generator().manual_seed(seed))
        return [self.text_table.prompts[i] for i in index.tolist()]

    def text_of(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.text_table.embeddings[self.text_table.rows(prompts)]

    @torch.no_grad()
    def roll_out(self, ctx: StepContext) -> RolloutBatch:
        from raven.diffusion.streaming import generate

        rollouts, prompts, scores, aggregates = [], [], [], []
        for call in range(self.options.calls_per_step):
            call_prompts = [p for p in self.draw_prompts(ctx, call) for _ in range(self.options.group_size)]
            seeds = torch.randint(0, 2**31 - 1, (len(call_prompts),), generator=ctx.generator).tolist()
            size = self.options.rollout_batch_size or len(call_prompts)
            parts = []
            for start in range(0, len(call_prompts), size):  # each video has its own seed: the split changes nothing
                part = slice(start, start + size)
                generation = generate(self.policy, self.text_of(call_prompts[part]), seeds[part], timesteps=self.timesteps,
                                      record=True, guidance=self.options.rollout_guidance,
                                      negative_text=self.text_table.embeddings[:1], kernel=self.kernel, eta=self.eta,
                                      em_convention=self.em_convention)
                parts.append((generation.rollout(), score_videos(self.rewards, self.decode(generation.latents),
                                                                 call_prompts[part], self.spec.video.fps)))
            call_scores = {name: torch.cat([s[name] for _, s in parts]) for name in self.rewards}
            aggregates.append(aggregate_rewards(self.options.aggregation, call_scores, self.options.reward_weights,
                                                call_prompts))
            rollouts += [rollout for rollout, _ in parts]
            prompts += call_prompts
            scores.append(call_scores)
        rewards = {name: torch.cat([s[name] for s in scores]) for name in self.rewards}
        return RolloutBatch(concat_rollouts(rollouts), self.text_of(prompts), prompts, rewards, torch.cat(aggregates))

    def x0_with_grad(self, rollout: Rollout, k: torch.Tensor, text: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return generator_x0(self.options.history_mode, self.policy, rollout, k, text, self.spec.chunk_frames, generator)

    def reference_x0(self, rollout: Rollout, k: torch.Tensor, text: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
        """x̂0 of the frozen KL reference at CFG `kl_guidance` against the empty prompt (docs/method.md §8): the
        bidirectional base on the whole state x_t, or the policy's own forward with its LoRA off."""
        empty = self.text_table.embeddings[:1].expand_as(text)
        with torch.no_grad():
            if self.options.kl_reference == "base":
                def predict(prompt_text):
                    dtype = next(self.reference.parameters()).dtype
                    velocity = self.reference(x_t.to(dtype), t[:, 0], prompt_text.to(dtype), return_dict=False)[0]
                    return x0_from_velocity(x_t, velocity.to(x_t.dtype), t)
            else:
                def predict(prompt_text):
                    with adapters_disabled(self.model):
                        return self.x0_with_grad(rollout, k, prompt_text, generator)
            cond = predict(text)
            return cond if self.options.kl_guidance == 1.0 else cfg_combine(cond, predict(empty), self.options.kl_guidance)

    @property
    def sigma_max(self) -> float:
        return em_sigma_max(self.timesteps, self.em_convention)

    def kernel_mean(self, x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return kernel_mean_std(self.kernel, x_t.double(), x0_hat.double(), t, s, self.eta, self.sigma_max,
                               self.em_convention)[0]

    def transition(self, rollout: Rollout, k: torch.Tensor):
        """x_t = xt[k], x_s = xt[k+1] (the realised next state) and their per-frame times [B, F]."""
        frames = rollout.x0.shape[2]
        x_t, t = trajectory_states(rollout, k)
        x_s, s = trajectory_states(rollout, k + 1)
        return x_t, x_s, frame_times(t, frames), frame_times(s, frames)

    def micro_batch_loss(self, rollout: Rollout, k: torch.Tensor, text: torch.Tensor, advantages: torch.Tensor,
                         ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        from raven.training.weighting import chunk_weighted_loss

        x_t, x_s, t, s = self.transition(rollout, k)
        x0_hat = self.x0_with_grad(rollout, k, text, ctx.generator)
        gradient, mean, std = log_prob_gradient(x0_hat, x_t, x_s, t, s, self.kernel, self.eta, self.sigma_max,
                                                self.em_convention)
        policy = chunk_weighted_loss(policy_elementwise_loss(x0_hat, advantages, gradient), self.spec.chunk_frames,
                                     self.options.weighting, world=ctx.world)
        metrics = {"log_prob": float(gaussian_log_prob(x_s.double(), mean, std).mean())}
        kl = 0.0
        if self.options.kl_beta > 0:
            mean_ref = self.kernel_mean(x_t, self.reference_x0(rollout, k, text, x_t, t, ctx.generator), t, s)
            per_element = kl_elementwise_loss(self.kernel_mean(x_t, x0_hat, t, s), mean_ref, std)
            metrics["kl"] = float(per_element.detach().flatten(1).sum(1).mean())
            kl = chunk_weighted_loss(per_element, self.spec.chunk_frames, self.options.weighting, world=ctx.world)
        return cmgrpo_loss(policy, kl, self.options.policy_loss_scaling, self.options.kl_beta), metrics

    def __call__(self, ctx: StepContext) -> dict[str, float]:
        batch = self.roll_out(ctx)
        advantages, valid = step_advantages(batch.prompts, batch.aggregate, batch.rewards, self.options.reward_weights,
                                            self.options.adv_clip_max)
        k_all = transition_choice(len(batch.prompts), len(self.timesteps), self.options.skip_timesteps, ctx.generator)
        size = self.options.micro_batch_size
        micro = [torch.arange(i, min(i + size, len(batch.prompts))) for i in range(0, len(batch.prompts), size)]
        losses, extra = [], []
        for index in micro:
            loss, metrics = self.micro_batch_loss(select(batch.rollout, index), k_all[index], batch.text[index],
                                                  advantages[index], ctx)
            (loss / len(micro)).backward()
            losses.append(float(loss.detach()))
            extra.append(metrics)
        metrics = ctx.optimisers.step("policy")
        return {**metrics, **self.step_metrics(batch, advantages, valid, losses, extra)}

    def step_metrics(self, batch: RolloutBatch, advantages: torch.Tensor, valid: torch.Tensor, losses: list[float],
                     extra: list[dict[str, float]]) -> dict[str, float]:
        metrics: dict[str, float] = {}
        for name, values in batch.rewards.items():
            finite = values[torch.isfinite(values)]
            metrics[f"reward/{name}"] = float(finite.mean()) if len(finite) else float("nan")
            metrics[f"reward_gap/{name}"] = group_gaps(values, batch.prompts)
        metrics["reward/aggregate"] = float(batch.aggregate[valid].mean()) if valid.any() else float("nan")
        metrics["reward_gap/aggregate"] = group_gaps(batch.aggregate, batch.prompts)
        used = advantages[valid]
        metrics.update({
            "advantage/mean": float(used.mean()) if len(used) else 0.0,
            "advantage/std": float(used.std(correction=0)) if len(used) else 0.0,
            "advantage/abs_mean": float(used.abs().mean()) if len(used) else 0.0,
            "advantage/clipped_fraction": float((used.abs() >= self.options.adv_clip_max).double().mean()) if len(used) else 0.0,
            "samples/excluded": float((~valid).sum()),
            "loss/policy": sum(losses) / len(losses) if losses else 0.0,
        })
        for key in {k for m in extra for k in m}:
            metrics[f"policy/{key}"] = sum(m[key] for m in extra) / len(extra)
        return metrics


# ---- the trainer ---------------------------------------------------------------------------------------


def sampler_kernel(spec: RunSpec) -> tuple[str, float]:
    """The rollout sampler and kernel: `consistency` (CM-GRPO) or `euler_maruyama` with η (Flow-GRPO)."""
    if spec.sampler.kind not in ("consistency", "euler_maruyama"):
        raise ConfigError(f"sampler.kind {spec.sampler.kind!r}: CM-GRPO rolls out with 'consistency' or "
                          "'euler_maruyama' (the Flow-GRPO comparison)")
    if spec.sampler.kind == "euler_maruyama" and spec.sampler.eta <= 0:
        raise ConfigError("sampler.kind 'euler_maruyama' needs sampler.eta > 0: with η = 0 the step is deterministic "
                          "and has no log-probability")
    return spec.sampler.kind, spec.sampler.eta


def export_policy(out: Path, build: Callable[[], torch.nn.Module]) -> dict[str, str]:
    """From the final checkpoint: the LoRA adapters (`adapter`, `adapter_ema`, peft's folder format) and the
    transformers with them merged (`model`, `model_ema`). `build()` gives a fresh policy (base + adapter)."""
    from raven.models.lora import merge_lora, save_lora
    from raven.training.checkpoint import latest_checkpoint, load_part
    from raven.training.loop import export_pretrained

    folder = latest_checkpoint(out / "checkpoints")
    online, ema = load_part(folder, "model-policy"), load_part(folder, "ema-policy")
    for suffix, lora in (("", None), ("_ema", ema)):
        model = build()
        model.load_state_dict(online)
        if lora is not None:
            with torch.no_grad():
                params = dict(model.named_parameters())
                for name, tensor in lora.items():
                    params[name].copy_(tensor)
        save_lora(model, out / f"adapter{suffix}")
        merged = merge_lora(model)
        export_pretrained(merged, merged.state_dict(), out / f"model{suffix}")
    return {"policy": "model", "policy_ema": "model_ema", "adapter": "adapter", "adapter_ema": "adapter_ema"}


def build_policy(parts, init: Path, options: CMGRPOOptions, seed: int) -> torch.nn.Module:
    """The student at `init` with a fresh adapter drawn from the run's seed (replicas differ, reruns do not)."""
    from raven.models.lora import add_lora

    return add_lora(parts.load(init), options.lora_rank, options.lora_alpha, seed=seed)


def build_reference(spec: RunSpec, parts, options: CMGRPOOptions, world) -> torch.nn.Module | None:
    """The frozen bidirectional base of the KL (`kl_reference: base`, docs/method.md §8), loaded from `weights.base`."""
    if options.kl_beta == 0 or options.kl_reference != "base":
        return None
    if spec.weights.base is None:
        raise ConfigError("stages.cmgrpo.kl_reference 'base' takes the KL reference from weights.base (the "
                          "bidirectional Wan2.1-T2V-1.3B transformer folder), which is not set: set it, or use "
                          "kl_reference: policy (the policy with its LoRA off)")
    return world.place(parts.load(spec.weights.base))


def train_cmgrpo(spec_path, init, prompts, out, text_cache=None) -> dict:
    """`raven train cmgrpo`: CM-GRPO (or Flow-GRPO with sampler.kind euler_maruyama) from the student at `init`
    on the prompts of the file `prompts`; writes checkpoints, the merged models, adapters, summary.json last."""
    from raven.config import read_spec, stage_options
    from raven.data.prompts import read_prompt_file
    from raven.io import atomic_write_json
    from raven.models import causal_forwards
    from raven.rewards import build_rewards
    from raven.training.base import ModelParts, TextTable
    from raven.training.distributed import close_world, init_world
    from raven.training.dmd import require_matching_architecture
    from raven.training.loop import TrainedModel, train

    spec = read_spec(spec_path)
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    kernel, eta = sampler_kernel(spec)
    init = require_matching_architecture(init, spec, "--init")
    prompt_list = read_prompt_file(prompts)
    rewards = build_rewards(list(nonzero_weights(options.reward_weights)), options.rewards,
                            "stages.cmgrpo.rewards")
    out = Path(out)
    world = init_world(spec.precision)
    try:
        parts = ModelParts.build(spec, text_cache).place(world)
        model = build_policy(parts, init, options, spec.seed)
        step = CMGRPOStep(options, spec, model, causal_forwards(model, spec), TextTable.build(parts.encode_text, prompt_list),
                          parts.codec.decode, rewards, student_timesteps(spec), kernel, eta, spec.sampler.em_convention,
                          build_reference(spec, parts, options, world))
        summary = train(
            [TrainedModel("policy", model, options.optim, options.ema_decay, export=None)], step, out,
            options.loop_options(spec.seed),
            world=world, spec=spec, stage="cmgrpo", inputs={"init": init, "prompts": prompts},
            summary_extra={"init": str(init), "prompts": len(prompt_list), "kernel": kernel, "eta": eta,
                           "em_convention": spec.sampler.em_convention, "kl_reference": options.kl_reference,
                           "history_mode": options.history_mode, "reward_weights": options.reward_weights,
                           "reward_kind": options.rewards.kind},
        )
        if world.is_main:
            summary["models"] = export_policy(out, lambda: build_policy(parts, init, options, spec.seed))
            atomic_write_json(out / "summary.json", summary)
        world.barrier()
        return summary
    finally:
        close_world(world)
