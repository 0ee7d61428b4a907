"""RAVEN DMD (SPEC §4): the formulas, the stage options and the training step plugged into the loop.

The formulas are pure functions of tensors. The step (`DMDStep`) wires them to the student, the
critic, the teacher and a history mode (SPEC §7, `raven.training.history`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from raven.config import ConfigError, RunSpec, Section, read_spec, stage_options
from raven.config.spec import HistoryMode, OptimSpec, WeightingSpec
from raven.diffusion.schedule import add_noise, uniform_shift_timesteps, x0_from_velocity
from raven.training.history import REAL_LATENT_MODES, CausalForwards, Rollout, generator_x0
from raven.training.teachers import Teacher, require_teacher_path

NORMALISER_FLOOR = 1e-5
ARCHITECTURE_KEYS = ("num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "freq_dim", "patch_size")


class RewardWeighting(Section):
    """Reward Forcing's Re-DMD: each sample's DMD loss is scaled by exp(beta·reward)."""

    reward: str = Field(description="a reward of the raven.rewards registry, computed on the decoded rollout")
    beta: float = 1.0


class DMDOptions(Section):
    """`stages.dmd` of a run spec (SPEC §4, §5, §7); defaults are the paper's main run."""

    iterations: int = Field(default=220, gt=0)
    batch_size: int = Field(default=1, gt=0)
    history_mode: HistoryMode = "raven"
    weighting: WeightingSpec = -1
    ttur: int = Field(default=2, gt=0)
    student_optim: OptimSpec = OptimSpec(lr=2e-6)
    critic_optim: OptimSpec = OptimSpec(lr=4e-7)
    ema_decay: float = Field(default=0.9675, ge=0, lt=1)
    teacher: Literal["toy", "wan"] = "toy"
    teacher_guidance: float = Field(default=3.0, ge=0)
    student_guidance: float = Field(default=1.0, ge=0)
    gen_use_trajectory: bool = True
    score_shift: float = Field(default=5.0, gt=0)
    score_range: tuple[float, float] = (0.02, 0.98)
    reward_weighting: RewardWeighting | None = None
    checkpoint_every: int = Field(default=50, gt=0)
    log_every: int = Field(default=1, gt=0)


def critic_flow_loss(v_fake: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The critic's flow-matching loss on a rollout, mean of ‖v̂_fake − (ε − x0)‖² (SPEC §4 step 2)."""
    return (v_fake.float() - (noise - x0).float()).pow(2).mean()


def dmd_normaliser(x0_hat: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """Per-sample n = max(mean|x̂0 − x̂0_real|, 1e−5), float64 and detached (SPEC §4 step 3)."""
    diff = (x0_hat.detach().double() - x0_real.detach().double()).abs()
    return diff.flatten(1).mean(dim=1).clamp_min(NORMALISER_FLOOR)


def dmd_gradient(x0_hat: torch.Tensor, x0_fake: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """The DMD gradient w.r.t. x̂0 per element, (x̂0_fake − x̂0_real)/n, float64 (SPEC §4 step 3)."""
    n = dmd_normaliser(x0_hat, x0_real).view(-1, *([1] * (x0_hat.ndim - 1)))
    return (x0_fake.detach().double() - x0_real.detach().double()) / n


def dmd_elementwise_loss(x0_hat: torch.Tensor, x0_fake: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """Per-element DMD loss 0.5·(x̂0 − sg(x̂0 − g))², g = dmd_gradient, so ∂/∂x̂0 = g (SPEC §4 step 3).

    Returned in float64 with the shape of x̂0; the chunk-weighted reduction (SPEC §5) follows.
    """
    x0 = x0_hat.double()
    target = (x0 - dmd_gradient(x0_hat, x0_fake, x0_real)).detach()
    return 0.5 * (x0 - target).pow(2)


def reward_sample_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Reward Forcing's Re-DMD per-sample weight exp(β·r) on a (normalised) reward r (SPEC §9)."""
    return torch.exp(beta * rewards.detach().double())


def score_times(batch: int, options: DMDOptions, generator: torch.Generator) -> torch.Tensor:
    """Times of the critic's noising and of the DMD score noising: uniform+shift(5) on [20, 980] (SPEC §1, §4)."""
    low, high = options.score_range
    return uniform_shift_timesteps(batch, options.score_shift, low, high, generator)


def trajectory_step_choice(batch: int, num_steps: int, generator: torch.Generator) -> torch.Tensor:
    """k ~ U{0, …, num_steps − 1} per sample: which trajectory state the generator step trains (SPEC §4 step 3)."""
    return torch.randint(0, num_steps, (batch,), generator=generator)


def chunk_numels(latent_shape: Sequence[int], chunk_frames: Sequence[int]) -> list[int]:
    """Elements per chunk n_k of one sample's latent [C, F, h, w] (SPEC §5)."""
    channels, _, height, width = latent_shape
    return [channels * frames * height * width for frames in chunk_frames]


def weighted_dmd_loss(
    per_element: torch.Tensor,
    chunk_frames: Sequence[int],
    weighting: WeightingSpec,
    sample_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """L = Σ_b s_b Σ_k w_k·ℓ_bk / Σ_b Σ_k w_k·n_k: chunk weights w_k of SPEC §5 (α = −1 for RAVEN),
    ℓ_bk the chunk's summed per-element loss, s_b Reward Forcing's sample weight (1 without it)."""
    from raven.training.weighting import chunk_weights

    numels = chunk_numels(per_element.shape[1:], chunk_frames)
    weights = chunk_weights(numels, weighting).to(per_element)
    chunk_sums = torch.stack([part.flatten(1).sum(1) for part in per_element.split(list(chunk_frames), dim=2)], dim=1)
    per_sample = (chunk_sums * weights).sum(dim=1)
    if sample_weights is not None:
        per_sample = per_sample * sample_weights.to(per_sample)
    denominator = per_element.shape[0] * (weights * torch.tensor(numels).to(weights)).sum()
    return per_sample.sum() / denominator


def predict_x0(model: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """x̂0 of a bidirectional Wan transformer (the critic) from its velocity (SPEC §1)."""
    return x0_from_velocity(x_t, model(x_t, t, text, return_dict=False)[0], t)


@dataclass
class DMDStep:
    """One DMD iteration's losses (SPEC §4): the critic's flow loss and the student's DMD loss.

    The loop owns optimisers, TTUR, EMA and checkpoints; it calls `critic_loss` every iteration and
    `generator_loss` every `ttur`-th, both on the iteration's rollout.
    """

    options: DMDOptions
    student: CausalForwards
    critic: torch.nn.Module
    teacher: Teacher
    chunk_frames: Sequence[int]
    reward: Callable[[torch.Tensor, Sequence[str]], torch.Tensor] | None = None

    def trains_generator(self, iteration: int) -> bool:
        """TTUR: the generator steps when (iter + 1) % ttur == 0; the critic steps every iteration (SPEC §4)."""
        return (iteration + 1) % self.options.ttur == 0

    def critic_loss(self, rollout: Rollout, text: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """t ~ uniform+shift(5) on [20, 980], x_t from the rollout's x0 and fresh noise, conditional only."""
        x0 = rollout.x0.detach()
        t = score_times(x0.shape[0], self.options, generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        velocity = self.critic(add_noise(x0, noise, t), t, text, return_dict=False)[0]
        return critic_flow_loss(velocity, x0, noise)

    def generator_loss(
        self,
        rollout: Rollout,
        prompts: Sequence[str],
        text: torch.Tensor,
        generator: torch.Generator,
        real: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """k ~ U{0..3} per sample → x̂0 with grad (history mode), score noising at s', DMD loss, chunk weighting."""
        batch = rollout.x0.shape[0]
        k = trajectory_step_choice(batch, len(rollout.times), generator)
        x0 = generator_x0(
            self.options.history_mode, self.student, rollout, k, text, self.chunk_frames, generator, real,
            self.options.gen_use_trajectory,
        )
        s = score_times(batch, self.options, generator)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_s = add_noise(x0.detach(), noise, s)
        with torch.no_grad():
            x0_fake = predict_x0(self.critic, x_s, s, text)
            x0_real = self.teacher.x0(x_s, s, prompts)
        return weighted_dmd_loss(
            dmd_elementwise_loss(x0, x0_fake, x0_real), self.chunk_frames, self.options.weighting,
            self.sample_weights(rollout, prompts),
        )

    def sample_weights(self, rollout: Rollout, prompts: Sequence[str]) -> torch.Tensor | None:
        """Re-DMD: exp(β·reward) of each rollout (Reward Forcing); None when reward weighting is off."""
        if self.options.reward_weighting is None:
            return None
        if self.reward is None:
            raise ValueError("stages.dmd.reward_weighting is set but no reward function was given to the DMD step")
        with torch.no_grad():
            rewards = self.reward(rollout.x0, prompts)
        return reward_sample_weights(rewards, self.options.reward_weighting.beta)


def require_matching_architecture(folder: str | Path, spec: RunSpec, role: str) -> Path:
    """A diffusers transformer folder whose config.json matches the run spec's `transformer` section.

    `role` names the CLI option (e.g. `--init`) so that the message says which input is wrong.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{role} {folder}: no config.json; expected a diffusers folder written by save_pretrained")
    found = json.loads(config_file.read_text())
    expected = {name: getattr(spec.transformer, name) for name in ARCHITECTURE_KEYS}
    expected["patch_size"] = list(expected["patch_size"])
    expected["in_channels"] = expected["out_channels"] = spec.codec.latent_channels
    for key, value in expected.items():
        if key in found and (list(found[key]) if isinstance(found[key], list) else found[key]) != value:
            raise ConfigError(
                f"{role} {config_file}: {key} = {found[key]!r} but the run spec (scale {spec.scale!r}) needs {value!r}; "
                f"this checkpoint is from another architecture: pass one trained at scale {spec.scale!r}"
            )
    return folder


@dataclass(frozen=True)
class DMDInputs:
    """The validated inputs of `raven train dmd`: every bad path or value is reported before training starts."""

    spec: RunSpec
    options: DMDOptions
    init: Path
    critic_init: Path
    out: Path
    clips: Path | None

    @classmethod
    def from_paths(
        cls, spec_path: str | Path, init: str | Path, critic_init: str | Path, out: str | Path, clips: str | Path | None
    ) -> "DMDInputs":
        spec = read_spec(spec_path)
        options = stage_options(spec, "dmd", DMDOptions)
        if options.teacher == "wan":
            require_teacher_path(spec.weights.teacher)
        if options.history_mode in REAL_LATENT_MODES and clips is None:
            raise ConfigError(
                f"stages.dmd.history_mode {options.history_mode!r} trains on real clips: pass --clips DIR "
                "(parquet shards of clips written by `raven data`)"
            )
        if clips is not None and not any(Path(clips).glob("*.parquet")):
            raise FileNotFoundError(f"--clips {clips}: no *.parquet shards there; write them with `raven data`")
        return cls(
            spec, options,
            require_matching_architecture(init, spec, "--init"),
            require_matching_architecture(critic_init, spec, "--critic-init"),
            Path(out), Path(clips) if clips is not None else None,
        )
