"""RAVEN DMD (docs/method.md §4): the formulas, the stage options, the training step and `raven train dmd`.

The formulas are pure functions of tensors. `DMDStep` wires them to the student, the critic, the
teacher and a history mode (docs/method.md §7, `raven.training.history`); `DMDIteration` adds the rollout and
TTUR and is the step `raven.training.loop.train` runs; `train_dmd` builds everything from a run spec.

Models (docs/method.md §4): student and its EMA from the ODE-init checkpoint (`--init`, `<ode_init out>/model`);
critic from the bidirectional base (see `critic_source`); teacher = the toy world's exact denoiser at
toy scales (`stages.dmd.teacher: toy`, exact, CFG against the mixture of the training prompts) or
Wan2.1-T2V-14B from `weights.teacher` (`wan`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator

from raven.config import ConfigError, RunSpec, Section, read_spec, stage_options
from raven.config.spec import HistoryMode, OptimSpec, WeightingSpec
from raven.data.latents import LatentClips
from raven.diffusion.schedule import (
    add_noise,
    student_timesteps,
    uniform_shift_timesteps,
    x0_from_velocity,
)
from raven.rewards import REWARD_NAMES, RewardSources, build_reward
from raven.training.base import ModelParts, TextTable, load_clip_batches
from raven.training.distributed import World
from raven.diffusion.trajectory import CausalForwards, Rollout
from raven.training.history import REAL_LATENT_MODES, fresh_noise, generator_x0
from raven.training.loop import StageLength, StepContext
from raven.training.teachers import (
    NEGATIVE_PROMPTS,
    Teacher,
    WanTeacher,
    build_teacher,
    require_teacher_path,
)
from raven.training.weighting import chunk_weighted_loss

NORMALISER_FLOOR = 1e-5
ARCHITECTURE_KEYS = ("num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "freq_dim", "patch_size")


class RewardWeighting(Section):
    """Reward Forcing's Re-DMD: each sample's DMD loss is scaled by exp(beta·reward)."""

    reward: str = Field(description="a reward of the raven.rewards registry, computed on the decoded rollout")
    beta: float = 1.0
    sources: RewardSources = RewardSources()

    @field_validator("reward")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in REWARD_NAMES:
            raise ValueError(f"reward {name!r} is not in the raven.rewards registry {list(REWARD_NAMES)}")
        return name


class DMDOptions(StageLength):
    """`stages.dmd` of a run spec (docs/method.md §4, §5, §7); defaults are the paper's main run."""

    iterations: int = Field(default=220, gt=0)
    batch_size: int = Field(default=1, gt=0)
    micro_batch_size: int | None = Field(
        default=None, gt=0, description="videos per forward/backward slice of the batch, their gradients "
        "accumulated (the release's ablations: batch 8 in slices of 1); None: the whole batch at once")
    history_mode: HistoryMode = "raven"
    weighting: WeightingSpec = -1
    ttur: int = Field(default=2, gt=0)
    student_optim: OptimSpec = OptimSpec(lr=2e-6)
    critic_optim: OptimSpec = OptimSpec(lr=4e-7)
    ema_decay: float = Field(default=0.9675, ge=0, lt=1)
    teacher: Literal["toy", "wan"] = "toy"
    teacher_guidance: float = Field(default=3.0, ge=0)
    teacher_negative: Literal["release", "wan"] = Field(
        default="release", description="the Wan teacher's CFG negative prompt (docs/method.md §4): `release`, the release's "
        "(Wan's led by 'slow motion, time dilation, 高帧率'), or `wan`, Wan2.1's own default")
    rollout_guidance: float = Field(
        default=1.0, ge=0, description="CFG of the student's own rollouts, against the teacher's negative prompt: "
        "3 in the paper-era code (config/scales/paper.yaml), 1 in the later release and at toy scales")
    gen_use_trajectory: bool = True
    score_shift: float = Field(default=5.0, gt=0)
    score_range: tuple[float, float] = (0.02, 0.98)
    reward_weighting: RewardWeighting | None = None
    checkpoint_every: int = Field(default=50, gt=0)

    @model_validator(mode="after")
    def _equal_slices(self) -> "DMDOptions":
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(f"micro_batch_size {self.micro_batch_size} does not divide batch_size {self.batch_size}: "
                             "the slices must be equal so that their mean loss is the batch's")
        return self


def critic_flow_loss(v_fake: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The critic's flow-matching loss on a rollout, mean of ‖v̂_fake − (ε − x0)‖² (docs/method.md §4 step 2)."""
    return (v_fake.float() - (noise - x0).float()).pow(2).mean()


def dmd_normaliser(x0_hat: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """Per-sample n = max(mean|x̂0 − x̂0_real|, 1e−5), float64 and detached (docs/method.md §4 step 3)."""
    diff = (x0_hat.detach().double() - x0_real.detach().double()).abs()
    return diff.flatten(1).mean(dim=1).clamp_min(NORMALISER_FLOOR)


def dmd_gradient(x0_hat: torch.Tensor, x0_fake: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """The DMD gradient w.r.t. x̂0 per element, (x̂0_fake − x̂0_real)/n, float64 (docs/method.md §4 step 3)."""
    n = dmd_normaliser(x0_hat, x0_real).view(-1, *([1] * (x0_hat.ndim - 1)))
    return (x0_fake.detach().double() - x0_real.detach().double()) / n


def dmd_elementwise_loss(x0_hat: torch.Tensor, x0_fake: torch.Tensor, x0_real: torch.Tensor) -> torch.Tensor:
    """Per-element DMD loss 0.5·(x̂0 − sg(x̂0 − g))², g = dmd_gradient, so ∂/∂x̂0 = g (docs/method.md §4 step 3).

    Returned in float64 with the shape of x̂0; the chunk-weighted reduction (docs/method.md §5) follows.
    """
    x0 = x0_hat.double()
    target = (x0 - dmd_gradient(x0_hat, x0_fake, x0_real)).detach()
    return 0.5 * (x0 - target).pow(2)


def reward_sample_weights(rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """Reward Forcing's Re-DMD per-sample weight exp(β·r) on a (normalised) reward r (docs/method.md §9)."""
    return torch.exp(beta * rewards.detach().double())


def score_times(batch: int, options: DMDOptions, generator: torch.Generator) -> torch.Tensor:
    """Times of the critic's noising and of the DMD score noising: uniform+shift(5) on [20, 980] (docs/method.md §1, §4)."""
    low, high = options.score_range
    return uniform_shift_timesteps(batch, options.score_shift, low, high, generator)


def trajectory_step_choice(batch: int, num_steps: int, generator: torch.Generator) -> torch.Tensor:
    """k ~ U{0, …, num_steps − 1} per sample: which trajectory state the generator step trains (docs/method.md §4 step 3)."""
    return torch.randint(0, num_steps, (batch,), generator=generator)


def predict_x0(model: torch.nn.Module, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """x̂0 of a bidirectional Wan transformer (the critic) from its velocity (docs/method.md §1)."""
    return x0_from_velocity(x_t, model(x_t, t, text, return_dict=False)[0], t)


@dataclass
class DMDStep:
    """One DMD iteration's losses (docs/method.md §4): the critic's flow loss and the student's DMD loss.

    The loop owns optimisers, TTUR, EMA and checkpoints; `DMDIteration` calls `critic_loss` every
    iteration and `generator_loss` every `ttur`-th, both on the iteration's rollout. `world` (None: one
    process) all-reduces the chunk-weighted loss's denominator (docs/method.md §5).
    """

    options: DMDOptions
    student: CausalForwards
    critic: torch.nn.Module
    teacher: Teacher
    chunk_frames: Sequence[int]
    reward: Callable[[torch.Tensor, Sequence[str]], torch.Tensor] | None = None
    world: World | None = None

    def trains_generator(self, iteration: int) -> bool:
        """TTUR: the generator steps when (iter + 1) % ttur == 0; the critic steps every iteration (docs/method.md §4)."""
        return (iteration + 1) % self.options.ttur == 0

    def critic_loss(self, rollout: Rollout, text: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """t ~ uniform+shift(5) on [20, 980], x_t from the rollout's x0 and fresh noise, conditional only."""
        x0 = rollout.x0.detach()
        t = score_times(x0.shape[0], self.options, generator).to(x0.device)
        noise = fresh_noise(x0, generator)
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
        s = score_times(batch, self.options, generator).to(x0.device)
        x_s = add_noise(x0.detach(), fresh_noise(x0, generator), s)
        with torch.no_grad():
            x0_fake = predict_x0(self.critic, x_s, s, text)
            x0_real = self.teacher.x0(x_s, s, prompts)
        return chunk_weighted_loss(
            dmd_elementwise_loss(x0, x0_fake, x0_real), self.chunk_frames, self.options.weighting,
            self.sample_weights(rollout, prompts), world=self.world,
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


def critic_source(spec: RunSpec, init: Path, critic_init: str | Path | None) -> Path:
    """Where the critic ("fake score") starts (docs/method.md §4: from the bidirectional base, Wan2.1-T2V-1.3B).

    In order: `--critic-init`; `weights.base` (paper scale: the Wan2.1-T2V-1.3B transformer folder); else
    the base model the ODE init itself started from, read from `<init>/../summary.json` key `init` (toy
    scales: `raven train ode-init --init <base out>/model_ema` records it there).
    """
    if critic_init is not None:
        return Path(critic_init)
    if spec.weights.base is not None:
        return Path(spec.weights.base)
    summary = init.parent / "summary.json"
    recorded = json.loads(summary.read_text()).get("init") if summary.is_file() else None
    if recorded is None:
        raise ConfigError(
            f"the critic starts from the bidirectional base model, but --critic-init is not given, weights.base is "
            f"not set and {summary} records no `init`: pass --critic-init <base out>/model_ema"
        )
    return Path(recorded)


@dataclass(frozen=True)
class DMDInputs:
    """The validated inputs of `raven train dmd`: every bad path or value is reported before training starts."""

    spec: RunSpec
    options: DMDOptions
    init: Path
    critic_init: Path
    prompts: Path
    out: Path
    clips: Path | None

    @classmethod
    def from_paths(
        cls,
        spec_path: str | Path,
        init: str | Path,
        prompts: str | Path,
        out: str | Path,
        clips: str | Path | None = None,
        critic_init: str | Path | None = None,
    ) -> DMDInputs:
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
        if not Path(prompts).is_file():
            raise FileNotFoundError(f"--prompts {prompts}: no such file; expected the training prompt file "
                                    "(one prompt per line) written by `raven data prompts`")
        init = require_matching_architecture(init, spec, "--init")
        critic = require_matching_architecture(critic_source(spec, init, critic_init), spec, "--critic-init")
        return cls(spec, options, init, critic, Path(prompts), Path(out), Path(clips) if clips is not None else None)


@dataclass
class DMDData:
    """Each iteration's prompts: drawn uniformly from the prompt file, or, for the real-clip history
    modes (tf, df), clips drawn from the shards with their captions as prompts and their latents as the
    real history (docs/method.md §7)."""

    prompts: list[str]
    clips: LatentClips | None = None

    def draw(self, batch: int, generator: torch.Generator) -> tuple[list[str], torch.Tensor | None]:
        if self.clips is not None:
            real, captions = self.clips.draw(batch, generator)
            return captions, real
        picks = torch.randint(0, len(self.prompts), (batch,), generator=generator).tolist()
        return [self.prompts[i] for i in picks], None


@dataclass
class DMDIteration:
    """One iteration of the loop (docs/method.md §4): a no-grad rollout of the online student with the consistency
    sampler (trajectory recorded), the critic step, and every `ttur`-th iteration the generator step."""

    losses: DMDStep
    data: DMDData
    text: TextTable
    timesteps: list[int]
    negative_text: torch.Tensor  # [1, L, D]: the rollouts' CFG negative (used when rollout_guidance != 1)

    def rollout(self, text: torch.Tensor, generator: torch.Generator) -> Rollout:
        from raven.diffusion.streaming import generate

        options = self.losses.options
        seeds = torch.randint(0, 2**31 - 1, (text.shape[0],), generator=generator).tolist()
        guided = options.rollout_guidance != 1.0
        with torch.no_grad():
            generation = generate(
                self.losses.student, text, seeds, timesteps=self.timesteps, record=True,
                guidance=options.rollout_guidance,
                negative_text=self.negative_text.expand(text.shape[0], -1, -1) if guided else None,
            )
        return generation.rollout()

    def __call__(self, ctx: StepContext) -> dict[str, float]:
        options, generator, device = self.losses.options, ctx.generator, ctx.world.device
        prompts, real = self.data.draw(options.batch_size, generator)
        text = self.text.embeddings[self.text.rows(prompts)].to(device)
        slices = micro_batches(options.batch_size, options.micro_batch_size)
        rollouts = [self.rollout(text[part], generator) for part in slices]
        critic = (self.losses.critic_loss(rollout, text[part], generator) for rollout, part in zip(rollouts, slices))
        metrics = ctx.optimisers.accumulate("critic", critic, len(slices))
        if self.losses.trains_generator(ctx.iteration):
            real = None if real is None else real.to(device)
            student = (self.losses.generator_loss(rollout, prompts[part], text[part], generator,
                                                  None if real is None else real[part])
                       for rollout, part in zip(rollouts, slices))
            metrics |= ctx.optimisers.accumulate("student", student, len(slices))
        return metrics


def micro_batches(batch: int, micro_batch_size: int | None) -> list[slice]:
    """The batch's slices of `micro_batch_size` samples (one slice when None); equal slices, so that the mean of
    their losses is the batch's loss (the chunk weighting's denominator is per sample, docs/method.md §5)."""
    size = micro_batch_size or batch
    return [slice(start, start + size) for start in range(0, batch, size)]


def dmd_teacher(inputs: DMDInputs, parts: ModelParts, train_prompts: Sequence[str], world: World) -> Teacher:
    """`stages.dmd.teacher`: the toy world's exact denoiser (CFG against the mixture of the training
    prompts) or the frozen Wan transformer of `weights.teacher` (on the device in `spec.precision`, sharded
    over the ranks) with CFG against the `teacher_negative` prompt."""
    from raven.world.teacher import ExactTeacher

    options = inputs.options
    exact = None
    if options.teacher == "toy":
        uncond = train_prompts if options.teacher_guidance != 1.0 else None
        exact = ExactTeacher.from_spec(inputs.spec, uncond)
    teacher = build_teacher(options.teacher, options.teacher_guidance, inputs.spec.weights.teacher,
                            parts.encode_text, parts.codec, exact, world.dtype,
                            NEGATIVE_PROMPTS[options.teacher_negative])
    if isinstance(teacher, WanTeacher):  # frozen, and sharded like the student when there are several ranks
        world.prepare(world.place(teacher.transformer), trainable=False)  # in place
    return teacher


def rollout_reward(spec: RunSpec, options: DMDOptions, codec) -> Callable[[torch.Tensor, Sequence[str]], torch.Tensor] | None:
    """Re-DMD's reward of a rollout: the `raven.rewards` registry entry on the decoded latents, or None."""
    weighting = options.reward_weighting
    if weighting is None:
        return None
    reward = build_reward(weighting.reward, weighting.sources, "stages.dmd.reward_weighting.sources")
    return lambda latents, prompts: reward(codec.decode(latents), prompts, spec.video.fps).to(latents.device)


def dmd_data(inputs: DMDInputs, parts: ModelParts, prompts: list[str]) -> tuple[DMDData, int]:
    """Prompts, plus the clips of the real-clip modes (corrupt clips skipped and counted)."""
    if inputs.options.history_mode not in REAL_LATENT_MODES:
        return DMDData(prompts), 0
    clips, skipped = load_clip_batches(inputs.clips, inputs.spec, parts.codec.encode)
    return DMDData(prompts, clips), skipped


def train_dmd(spec_path, init, prompts, out, clips=None, critic_init=None, text_cache=None) -> dict:
    """`raven train dmd`: the causal student (and its EMA) from the ODE init, the critic from the
    bidirectional base, DMD with the spec's history mode and chunk weighting (docs/method.md §4, §5, §7)."""
    from raven.data.prompts import read_prompt_file
    from raven.models import causal_forwards
    from raven.training.distributed import close_world, init_world
    from raven.training.loop import TrainedModel, train

    inputs = DMDInputs.from_paths(spec_path, init, prompts, out, clips, critic_init)
    spec, options = inputs.spec, inputs.options
    world = init_world(spec.precision)
    try:
        parts = ModelParts.build(spec, text_cache).place(world)
        train_prompts = read_prompt_file(inputs.prompts)
        data, skipped = dmd_data(inputs, parts, train_prompts)
        negative = NEGATIVE_PROMPTS[options.teacher_negative] if options.teacher == "wan" else ""
        text = TextTable.build(parts.encode_text, [*train_prompts, *(data.clips.captions if data.clips else []), negative])
        student, critic = parts.load(inputs.init), parts.load(inputs.critic_init)
        losses = DMDStep(options, causal_forwards(student, spec), critic,
                         dmd_teacher(inputs, parts, train_prompts, world), spec.chunk_frames,
                         rollout_reward(spec, options, parts.codec), world)
        step = DMDIteration(losses, data, text, student_timesteps(spec), text.embeddings[text.rows([negative])])
        models = [TrainedModel("critic", critic, options.critic_optim),
                  TrainedModel("student", student, options.student_optim, options.ema_decay, export="model")]
        return train(
            models, step, inputs.out,
            options.loop_options(spec.seed),
            world=world, spec=spec, stage="dmd",
            inputs={"init": inputs.init, "critic_init": inputs.critic_init, "prompts": inputs.prompts, "clips": inputs.clips},
            summary_extra={
                "history_mode": options.history_mode, "weighting": options.weighting, "ttur": options.ttur,
                "teacher": "toy-exact" if options.teacher == "toy" else str(spec.weights.teacher),
                "init": str(inputs.init), "critic_init": str(inputs.critic_init), "prompts": len(train_prompts),
                "timesteps": step.timesteps, "skipped_clips": skipped,
                "reward_weighting": options.reward_weighting.model_dump(mode="json") if options.reward_weighting else None,
            },
        )
    finally:
        close_world(world)
