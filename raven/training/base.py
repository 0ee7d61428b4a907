"""The base model: a bidirectional Wan transformer pretrained by flow matching (docs/method.md §1), standing in for
Wan2.1-T2V-1.3B at toy scales. It initialises the critic and the causal student.

Two objectives (`stages.base.objective`):
- `flow`: flow matching on clips (parquet shards): x_t = (1 − σ) x0 + σ ε, target velocity ε − x0;
- `exact`: regression onto the toy world's exact denoiser: the target is E[x0 | x_t, prompt] (lower
  variance), x0 drawn from the prompt's mixture.
The network always predicts velocity. `prediction_loss: x0` weighs the velocity error by σ², i.e. the
MSE of x̂0 = x_t − σ v (measured in issue 3 to learn where velocity MSE did not); `velocity` is plain MSE.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from raven.config import RunSpec
from raven.config.spec import OptimSpec
from raven.data.latents import LatentClips
from raven.diffusion.ode import euler_sample, guided
from raven.diffusion.schedule import _broadcast, add_noise, sampling_timesteps, sigma_of, uniform_shift_timesteps, x0_from_velocity
from raven.training.loop import StageLength, StepContext

TextEncoder = Callable[[Sequence[str]], torch.Tensor]


class BaseOptions(StageLength):
    """`stages.base` of a run spec."""

    objective: Literal["flow", "exact"] = "flow"
    prediction_loss: Literal["x0", "velocity"] = "x0"
    iterations: int = Field(default=100_000, gt=0)
    batch_size: int = Field(default=16, gt=0)
    optim: OptimSpec = OptimSpec(lr=1e-3, betas=(0.9, 0.999), grad_clip=1.0)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    time_shift: float = Field(default=3.0, gt=0, description="uniform+shift sampler; > 1 biases noise high")
    time_range: tuple[float, float] = (0.0, 1.0)
    text_dropout: float = Field(default=0.1, ge=0, lt=1, description="empty prompt this often (for CFG)")
    checkpoint_every: int = Field(default=500, gt=0)
    sample_steps: int = Field(default=40, gt=0, description="Euler steps of evaluation samples")
    sample_shift: float = Field(default=3.0, gt=0)
    guidance: float = Field(default=1.0, ge=0, description="CFG of evaluation samples against the empty prompt")

    @model_validator(mode="after")
    def _valid_range(self) -> "BaseOptions":
        low, high = self.time_range
        if not 0 <= low < high <= 1:
            raise ValueError(f"time_range {self.time_range}: need 0 <= a < b <= 1 (fractions of t = 1000)")
        if self.objective == "exact" and self.prediction_loss == "velocity" and low == 0:
            raise ValueError("objective 'exact' with prediction_loss 'velocity' divides by σ: set time_range[0] > 0")
        return self


def base_loss(velocity: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, target_x0: torch.Tensor,
              noise: torch.Tensor | None, prediction_loss: str) -> torch.Tensor:
    """Mean flow-matching loss of a velocity prediction (docs/method.md §1); t per sample [B] or per frame [B, F].

    Target velocity ε − x0 when the clean sample is known (`noise` given, flow objective), else
    (x_t − x̂0*)/σ for a denoiser target x̂0* (exact objective). `x0` weighs the squared error by σ².
    """
    sigma = _broadcast(sigma_of(t.to(x_t.dtype)), x_t)
    if noise is not None:
        target = noise - target_x0
    else:
        target = (x_t - target_x0) / sigma
    error = (velocity - target).pow(2)
    if prediction_loss == "x0":
        error = error * sigma**2
    return error.mean()


@dataclass
class TextTable:
    """The prompts a step can draw, row 0 the empty prompt; their embeddings are read per batch from the
    text source (the memory-mapped cache of `raven data text-cache`, or the encoder), never held as a table."""

    prompts: list[str]
    encode_text: TextEncoder

    @classmethod
    def build(cls, encode_text: TextEncoder, prompts: Sequence[str]) -> "TextTable":
        return cls(list(dict.fromkeys(prompts)), encode_text)

    def rows(self, prompts: Sequence[str]) -> torch.Tensor:
        index = {p: i + 1 for i, p in enumerate(self.prompts)}
        return torch.tensor([index[p] for p in prompts])

    @property
    def embeddings(self) -> "TextRows":
        return TextRows(self)

    def embed(self, prompts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.encode_text(list(prompts))


@dataclass
class TextRows:
    """`table.embeddings[rows]`: the [len(rows), L, D] embeddings of those rows (a tensor or a slice)."""

    table: TextTable

    def __getitem__(self, rows: torch.Tensor | slice) -> torch.Tensor:
        texts = ["", *self.table.prompts]
        picks = texts[rows] if isinstance(rows, slice) else [texts[i] for i in torch.as_tensor(rows).tolist()]
        return self.table.embed(picks)


def load_clip_batches(folder, spec: RunSpec, encode: Callable[[torch.Tensor], torch.Tensor]) -> tuple[LatentClips, int]:
    """The clips of the shards in `folder`, streamed as latents from `folder/latents` (written by the launched
    `raven data clip-latents` job; encoded here with `encode` first when absent). Corrupt clips were skipped
    and counted, a clip of the wrong geometry is an error naming it. Returns the clips and the skipped count."""
    from raven.data.latents import INDEX, merge_latent_parts, write_latent_part

    latents = Path(folder) / "latents"
    if not (latents / INDEX).is_file():
        write_latent_part(folder, latents, encode, (spec.video.frames, spec.video.height, spec.video.width))
        merge_latent_parts(latents, 1)
    clips = LatentClips(latents)
    return clips, clips.skipped


@dataclass
class MixtureBatches:
    """Exact objective: prompts drawn uniformly, x0 an item of the prompt's finite mixture (raven.world)."""

    prompts: list[str]
    teacher: object  # raven.world.teacher.ExactTeacher
    encode: Callable[[torch.Tensor], torch.Tensor]  # pixels -> latents (the codec)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        picks = torch.randint(0, len(self.prompts), (batch,), generator=generator).tolist()
        prompts = [self.prompts[i] for i in picks]
        height, width, frames, _ = self.teacher.geometry
        videos = []
        for prompt in prompts:
            items = self.teacher.items(prompt).videos
            item = items[int(torch.randint(0, len(items), (1,), generator=generator))]
            videos.append(item.view(frames, 3, height, width).permute(1, 0, 2, 3))
        pixels = torch.stack(videos).float() / 127.5 - 1
        return self.encode(pixels), prompts


@dataclass
class BaseStep:
    """One flow-matching step of the base model (`ctx.optimisers` holds it under the name `base`)."""

    options: BaseOptions
    model: torch.nn.Module
    batches: LatentClips | MixtureBatches
    text: TextTable
    exact_x0: Callable[[torch.Tensor, torch.Tensor, Sequence[str]], torch.Tensor] | None = None

    def __call__(self, ctx: StepContext) -> dict[str, float]:
        options, generator = self.options, ctx.generator
        x0, prompts = self.batches.draw(options.batch_size, generator)
        rows = self.text.rows(prompts)
        rows[torch.rand(len(rows), generator=generator) < options.text_dropout] = 0
        t = uniform_shift_timesteps(len(rows), options.time_shift, *options.time_range, generator)
        noise = torch.randn(x0.shape, generator=generator)
        x_t = add_noise(x0, noise, t)
        if options.objective == "exact":
            target, noise_known = self.exact_x0(x_t, t, prompts), None
        else:
            target, noise_known = x0, noise
        device = ctx.world.device
        velocity = self.model(x_t.to(device), t.to(device), self.text.embeddings[rows].to(device), return_dict=False)[0]
        loss = base_loss(velocity, x_t.to(device), t.to(device), target.to(device),
                         None if noise_known is None else noise_known.to(device), options.prediction_loss)
        return ctx.optimisers.update("base", loss)


@torch.no_grad()
def sample_videos(model: torch.nn.Module, encode_text: TextEncoder, decode: Callable[[torch.Tensor], torch.Tensor],
                  prompts: Sequence[str], latent_shape: Sequence[int], options: BaseOptions, seed: int,
                  batch: int = 32) -> np.ndarray:
    """Euler ODE samples of a bidirectional velocity model (CFG against the empty prompt) as uint8
    videos [N, T, H, W, 3]; sample i uses seed + i."""
    from raven.world.render import to_uint8

    timesteps = sampling_timesteps(options.sample_steps, options.sample_shift) + [0]
    videos = []
    for start in range(0, len(prompts), batch):
        part = list(prompts[start : start + batch])
        text, empty = encode_text(part), encode_text([""] * len(part))

        def velocity_x0(text_embedding: torch.Tensor):
            return lambda x, t: x0_from_velocity(x, model(x, t, text_embedding, return_dict=False)[0], t)

        denoise = guided(velocity_x0(text), velocity_x0(empty), options.guidance)
        noise = torch.stack([torch.randn(*latent_shape, generator=torch.Generator().manual_seed(seed + start + i))
                             for i in range(len(part))])
        pixels = decode(euler_sample(denoise, noise, timesteps))
        videos.append(to_uint8(pixels.clamp(-1, 1).double().numpy()))
    return np.concatenate(videos)


def heldout_accuracy(videos: np.ndarray, prompts: Sequence[str]) -> dict[str, float]:
    """Colour, shape, direction and count accuracy of samples read back by the toy world's parser."""
    from raven.world.parser import accuracy

    return accuracy(videos, list(prompts))


def base_stage_options(spec: RunSpec) -> BaseOptions:
    from raven.config import stage_options

    return stage_options(spec, "base", BaseOptions)


@dataclass
class ModelParts:
    """What every trainer builds from a run spec (raven.models): a fresh transformer, the frozen text
    encoder `encode_text(prompts) -> [B, L, D]` and the codec (pixels [B, 3, T, H, W] <-> latents)."""

    spec: RunSpec
    encode_text: TextEncoder
    codec: object

    @classmethod
    def build(cls, spec: RunSpec, text_cache=None) -> "ModelParts":
        """`text_cache`: the folder of `raven data text-cache`; embeddings are then read from it per batch and
        the text encoder is never loaded (the DAG passes it at every scale)."""
        from raven.models import build_codec, build_text_encoder

        if text_cache is not None:
            from raven.data.text_cache import TextCache

            return cls(spec, TextCache(text_cache), build_codec(spec))
        return cls(spec, build_text_encoder(spec), build_codec(spec))

    def place(self, world) -> "ModelParts":
        """The frozen text encoder (when loaded) and codec on the world's device in its precision (`World.place`)."""
        if hasattr(self.encode_text, "model"):
            world.place(self.encode_text.model)
        else:  # the text cache: batches land on the device
            self.encode_text.device = world.device
        if hasattr(self.codec, "vae"):
            world.place(self.codec.vae)
        return self

    def transformer(self, seed: int) -> torch.nn.Module:
        from raven.models import build_transformer

        torch.manual_seed(seed)
        return build_transformer(self.spec)

    def load(self, folder) -> torch.nn.Module:
        from raven.models import load_transformer

        return load_transformer(folder, self.spec)


def training_batches(spec: RunSpec, parts: ModelParts, clips, prompts) -> tuple[LatentClips | MixtureBatches, int]:
    """Clips from parquet shards (`clips`), or videos drawn from the toy world's mixture of the prompts
    in the file `prompts`. Returns the batches and the number of skipped corrupt clips."""
    if clips is not None:
        return load_clip_batches(clips, spec, parts.codec.encode)
    from raven.data.prompts import read_prompt_file
    from raven.world.teacher import ExactTeacher

    return MixtureBatches(read_prompt_file(prompts), ExactTeacher.from_spec(spec), parts.codec.encode), 0


def exact_denoiser(spec: RunSpec, parts: ModelParts, guidance: float = 1.0, uncond_prompts=None):
    """The toy world's exact denoiser in latent space, `x0(x_t, t, prompts)` (t [B] or per frame [B, F])."""
    from raven.training.teachers import ToyTeacher
    from raven.world.teacher import ExactTeacher

    return ToyTeacher(ExactTeacher.from_spec(spec, uncond_prompts), parts.codec, guidance).x0


def train_base(spec_path, clips=None, prompts=None, out=None, text_cache=None) -> dict:
    """`raven train base`: flow matching on clips (objective flow) or regression onto the exact
    denoiser of the prompts' toy-world mixture (objective exact)."""
    from raven.config import ConfigError, read_spec
    from raven.training.distributed import close_world, init_world
    from raven.training.loop import TrainedModel, train

    spec = read_spec(spec_path)
    options = base_stage_options(spec)
    if options.objective == "exact" and prompts is None:
        raise ConfigError("stages.base.objective 'exact' regresses onto the toy world's denoiser: pass --prompts "
                          "(the training prompt file), not --clips")
    if options.objective == "flow" and clips is None:
        raise ConfigError("stages.base.objective 'flow' trains on clips: pass --clips (raven data clips)")
    world = init_world(spec.precision)
    try:
        parts = ModelParts.build(spec, text_cache).place(world)
        batches, skipped = training_batches(spec, parts, clips, prompts)
        text = TextTable.build(parts.encode_text, batches.captions if clips else batches.prompts)
        model = parts.transformer(spec.seed)
        exact = exact_denoiser(spec, parts) if options.objective == "exact" else None
        step = BaseStep(options, model, batches, text, exact)
        return train(
            [TrainedModel("base", model, options.optim, options.ema_decay, export="model")], step, out,
            options.loop_options(spec.seed),
            world=world, spec=spec, stage="base", inputs={"clips": clips, "prompts": prompts},
            summary_extra={"objective": options.objective, "prediction_loss": options.prediction_loss,
                           "skipped_clips": skipped, "prompts": len(text.prompts)},
        )
    finally:
        close_world(world)
