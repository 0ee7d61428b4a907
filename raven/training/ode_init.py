"""Initialisation by causal ODE distillation (docs/method.md §6, "Causal Forcing").

1. ODE trajectories (`raven ode pairs`): a teacher is integrated with many Euler steps (CFG), either
   CHUNK BY CHUNK with the clean chunks generated so far as history (`chunkwise`: the causal teacher)
   or over the whole video at once (`bidirectional`: the CausVid variant). The state at each of the
   student's sampling times [1000, 938, 833, 625] is recorded in full-video layout (chunk j's frames hold
   chunk j's state at that time) together with the ODE endpoint x0.
2. Regression (`raven train ode-init`): the few-step causal student, initialised from the base model,
   maps (x_{t_k}, t_k) with the clean ODE history to the endpoint x0 through the interleaved forward.

Pairs are stored as safetensors shards `pairs-NNNNN.safetensors` (`states` [N, S, C, F, h, w], `x0`
[N, C, F, h, w], `times` [S]) with `pairs-NNNNN.json` (the N prompts); `summary.json` is written last.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file
from tqdm import tqdm

from raven.config import Section
from raven.config.spec import OptimSpec, chunk_starts
from raven.diffusion.ode import euler_step
from raven.diffusion.schedule import cfg_combine, sampling_timesteps, x0_from_velocity
from raven.io import atomic_write_text, save_tensors
from raven.training import history
from raven.training.loop import StageLength, StepContext

FrameDenoiser = Callable[[torch.Tensor, torch.Tensor, Sequence[str]], torch.Tensor]
"""denoise(x_t [B, C, F, h, w], t [B, F] per latent frame, prompts) -> x̂0 (CFG included)."""


class OdePairsOptions(Section):
    """`stages.ode_pairs` of a run spec."""

    mode: Literal["chunkwise", "bidirectional"] = "chunkwise"
    samples_per_prompt: int = Field(default=4, gt=0)
    euler_steps: int = Field(default=40, gt=0)
    euler_shift: float = Field(default=3.0, gt=0)
    guidance: float = Field(default=1.0, ge=0)
    batch_size: int = Field(default=32, gt=0)
    shard_size: int = Field(default=512, gt=0)


class OdeInitOptions(StageLength):
    """`stages.ode_init` of a run spec."""

    iterations: int = Field(default=100_000, gt=0)
    batch_size: int = Field(default=16, gt=0)
    optim: OptimSpec = OptimSpec(lr=2e-4, betas=(0.9, 0.999), grad_clip=1.0)
    ema_decay: float = Field(default=0.99, ge=0, lt=1)
    checkpoint_every: int = Field(default=500, gt=0)


def euler_grid(steps: int, shift: float, record: Sequence[int]) -> list[int]:
    """A shifted many-step grid from 1000 to 0 that passes through every time in `record` exactly."""
    return sorted(set(sampling_timesteps(steps, shift)) | set(record) | {0}, reverse=True)


def frame_times(batch: int, frames: int, value: int, current: slice, history_end: int) -> torch.Tensor:
    """Per-frame times [B, F]: history frames 0 (clean), the current frames `value`, later frames 1000."""
    t = torch.full((batch, frames), 1000, dtype=torch.long)
    t[:, :history_end] = 0
    t[:, current] = value
    return t


@torch.no_grad()
def ode_trajectories(denoise: FrameDenoiser, noise: torch.Tensor, prompts: Sequence[str], chunk_frames: Sequence[int],
                     grid: Sequence[int], record: Sequence[int], chunkwise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate the teacher's ODE from `noise`; returns (states [S, B, C, F, h, w] at the `record` times,
    x0 [B, C, F, h, w]). Chunkwise: chunk j is integrated with chunks < j clean as history (docs/method.md §6)."""
    batch, _, frames = noise.shape[:3]
    x = noise.clone()
    states = torch.empty(len(record), *noise.shape, dtype=noise.dtype)
    spans = ([slice(start, start + size) for start, size in zip(chunk_starts(chunk_frames), chunk_frames)]
             if chunkwise else [slice(0, frames)])
    for span in spans:
        for t, s in zip(grid[:-1], grid[1:]):
            if t in record:
                states[record.index(t)][:, :, span] = x[:, :, span]
            x0_hat = denoise(x, frame_times(batch, frames, t, span, span.start), prompts)
            t_vec, s_vec = torch.full((batch,), t), torch.full((batch,), s)
            x[:, :, span] = euler_step(x[:, :, span], x0_hat[:, :, span], t_vec, s_vec)
    return states, x


def write_pairs(out: Path, denoise: FrameDenoiser, prompts: Sequence[str], latent_shape: Sequence[int],
                chunk_frames: Sequence[int], options: OdePairsOptions, record: Sequence[int], seed: int) -> dict:
    """All shards of ODE pairs for `samples_per_prompt` samples of each prompt (noise seed = seed + index);
    an existing shard is kept, so a rerun resumes. Returns the summary (written last by the caller)."""
    jobs = [p for p in prompts for _ in range(options.samples_per_prompt)]
    grid = euler_grid(options.euler_steps, options.euler_shift, record)
    shards = []
    for shard, first in enumerate(tqdm(range(0, len(jobs), options.shard_size), desc="ode pairs")):
        path = out / f"pairs-{shard:05d}.safetensors"
        shards.append(path.name)
        if path.is_file() and path.with_suffix(".json").is_file():
            continue
        indices = range(first, min(first + options.shard_size, len(jobs)))
        states, x0 = [], []
        for start in range(indices.start, indices.stop, options.batch_size):
            part = range(start, min(start + options.batch_size, indices.stop))
            noise = torch.stack([torch.randn(*latent_shape, generator=torch.Generator().manual_seed(seed + i))
                                 for i in part])
            s, x = ode_trajectories(denoise, noise, [jobs[i] for i in part], chunk_frames, grid, list(record),
                                    options.mode == "chunkwise")
            states.append(s.transpose(0, 1))
            x0.append(x)
        save_tensors({"states": torch.cat(states).contiguous(), "x0": torch.cat(x0).contiguous(),
                      "times": torch.tensor(list(record))}, path)
        atomic_write_text(path.with_suffix(".json"), json.dumps({"prompts": [jobs[i] for i in indices]}))
    return {"pairs": len(jobs), "shards": shards, "mode": options.mode, "euler_steps": len(grid) - 1,
            "guidance": options.guidance, "times": list(record)}


@dataclass
class OdePairs:
    """All pairs of a folder in memory: states [N, S, C, F, h, w], x0 [N, C, F, h, w], times [S], prompts."""

    states: torch.Tensor
    x0: torch.Tensor
    times: torch.Tensor
    prompts: list[str]

    @classmethod
    def read(cls, folder: str | Path) -> "OdePairs":
        folder = Path(folder)
        files = sorted(folder.glob("pairs-*.safetensors"))
        if not files or not (folder / "summary.json").is_file():
            raise FileNotFoundError(f"--pairs {folder}: no complete ODE pairs there (pairs-*.safetensors and "
                                    "summary.json); write them with `raven ode pairs`")
        parts = [load_file(str(f)) for f in files]
        prompts = [p for f in files for p in json.loads(f.with_suffix(".json").read_text())["prompts"]]
        return cls(torch.cat([p["states"] for p in parts]), torch.cat([p["x0"] for p in parts]), parts[0]["times"],
                   prompts)


@dataclass
class OdeInitStep:
    """Regress the causal student onto ODE endpoints (docs/method.md §6): per sample a sampling step k ~ U{0..S−1},
    noisy input = the pair's state at t_k for all chunks, clean history = the ODE's x0; MSE on x̂0.

    `student` is a `raven.diffusion.trajectory.CausalForwards` whose module is trained under the name `student`.
    """

    options: OdeInitOptions
    student: object
    pairs: OdePairs
    text: object  # raven.training.base.TextTable

    def __call__(self, ctx: StepContext) -> dict[str, float]:
        generator, batch = ctx.generator, self.options.batch_size
        index = torch.randint(0, len(self.pairs.prompts), (batch,), generator=generator)
        k = torch.randint(0, len(self.pairs.times), (batch,), generator=generator)
        noisy, clean = self.pairs.states[index, k], self.pairs.x0[index]
        t = history.frame_times(self.pairs.times[k], noisy.shape[2])
        text = self.text.embeddings[self.text.rows([self.pairs.prompts[i] for i in index.tolist()])]
        device = ctx.world.device
        noisy, clean, t = noisy.to(device), clean.to(device), t.to(device)
        x0_hat = x0_from_velocity(noisy, self.student.interleaved(noisy, t, clean, text.to(device)), t)
        return ctx.optimisers.update("student", (x0_hat - clean).pow(2).mean())


def model_denoiser(forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
                   encode_text: Callable[[Sequence[str]], torch.Tensor], guidance: float) -> FrameDenoiser:
    """x̂0 of a velocity model `forward(x_t, t [B, F], text)` with CFG against the empty prompt."""
    cache: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def denoise(x_t: torch.Tensor, t: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        key = tuple(prompts)
        if key not in cache:
            cache.clear()
            cache[key] = (encode_text(list(prompts)), encode_text([""] * len(prompts)))
        text, empty = cache[key]
        cond = x0_from_velocity(x_t, forward(x_t, t, text), t)
        if guidance == 1.0:
            return cond
        uncond = x0_from_velocity(x_t, forward(x_t, t, empty), t)
        return cfg_combine(cond, uncond, guidance)

    return denoise


def teacher_denoiser(teacher: str | Path, spec, parts, options: OdePairsOptions, prompts: Sequence[str]) -> tuple[FrameDenoiser, str]:
    """The denoiser of `--teacher`: the exact causal teacher when the causal-teacher stage chose `exact`,
    else the model — block-causal (chunkwise) or bidirectional (the CausVid variant). `--teacher` is a
    training stage's output folder (its `model_ema`) or a model folder given as weights (weights.base)."""
    from raven.io import read_json

    teacher = Path(teacher)
    trained_here = (teacher / "summary.json").is_file()
    if trained_here and read_json(teacher / "summary.json").get("kind") == "exact":
        from raven.training.base import exact_denoiser

        return exact_denoiser(spec, parts, options.guidance, prompts if options.guidance != 1 else None), "exact"
    teacher = teacher / "model_ema" if trained_here else teacher
    model = parts.load(teacher).eval().requires_grad_(False)
    if options.mode == "chunkwise":
        from raven.models import causal_forwards

        forwards = causal_forwards(model, spec)
        forward = forwards.block_causal
    else:
        def forward(x_t, t, text):
            return model(x_t, t[:, 0], text, return_dict=False)[0]
    return model_denoiser(forward, parts.encode_text, options.guidance), str(teacher)


def ode_pairs_stage(spec_path, teacher, prompts, out, text_cache=None) -> dict:
    """`raven ode pairs`: pairs of every training prompt into `out`, `summary.json` last."""
    from raven.config import read_spec, stage_options
    from raven.data.prompts import read_prompt_file
    from raven.io import atomic_write_json
    from raven.training.base import ModelParts

    spec = read_spec(spec_path)
    options = stage_options(spec, "ode_pairs", OdePairsOptions)
    prompt_list = read_prompt_file(prompts)
    parts = ModelParts.build(spec, text_cache)
    denoise, source = teacher_denoiser(teacher, spec, parts, options, prompt_list)
    frames = spec.chunk_frames
    record = sampling_timesteps(spec.sampler.num_steps, spec.sampler.shift, spec.sampler.warp)
    out = Path(out)
    summary = write_pairs(out, denoise, prompt_list, spec.latent_shape, frames, options, record, spec.seed)
    summary.update({"stage": "ode_pairs", "teacher": source, "prompts": len(prompt_list)})
    atomic_write_json(out / "summary.json", summary)
    return summary


def released_init(spec) -> Path | None:
    """The released student that replaces this init's training: `weights.causal_init` for the chunkwise
    (Causal Forcing) init, `weights.bidirectional_init` for the bidirectional-teacher (CausVid) one."""
    from raven.config import stage_options

    return spec.weights.released_init(stage_options(spec, "ode_pairs", OdePairsOptions).mode)


def train_ode_init(spec_path, pairs, init, out, text_cache=None) -> dict:
    """`raven train ode-init`: the causal student from the base weights regressed on ODE pairs. When the
    init's released weights are given (`released_init`; paper scale: Causal Forcing's checkpoint, tiny
    scale: data/weights/tiny) they are loaded and exported instead of training."""
    from raven.config import read_spec, stage_options
    from raven.io import atomic_write_json
    from raven.training.base import ModelParts, TextTable
    from raven.training.distributed import close_world, init_world
    from raven.training.loop import TrainedModel, export_pretrained, train

    spec = read_spec(spec_path)
    options = stage_options(spec, "ode_init", OdeInitOptions)
    parts = ModelParts.build(spec, text_cache)
    out = Path(out)
    released = released_init(spec)
    world = init_world(spec.precision)
    try:
        parts.place(world)
        if released is not None:
            summary = {"stage": "ode_init", "source": str(released), "trained": False}
            if world.is_main:  # outputs are written by rank 0 only
                model = parts.load(released)
                for name in ("model", "model_ema"):
                    export_pretrained(model, model.state_dict(), out / name)
                atomic_write_json(out / "summary.json", summary)
            world.barrier()
            return summary
        from raven.models import causal_forwards

        ode_pairs = OdePairs.read(pairs)
        text = TextTable.build(parts.encode_text, ode_pairs.prompts)
        model = parts.load(init)
        step = OdeInitStep(options, causal_forwards(model, spec), ode_pairs, text)
        return train(
            [TrainedModel("student", model, options.optim, options.ema_decay, export="model")], step, out,
            options.loop_options(spec.seed),
            world=world, spec=spec, stage="ode_init", inputs={"init": init, "pairs": pairs},
            summary_extra={"pairs": len(ode_pairs.prompts), "init": str(init), "trained": True},
        )
    finally:
        close_world(world)
