"""The causal teacher of the ODE initialisation (docs/method.md §6 step 1): a block-causal many-step diffusion
model trained with teacher forcing from the bidirectional base.

Teacher forcing: every chunk is noised to its own time t_j (uniform+shift), and sees the CLEAN real
chunks before it as history — the interleaved forward with the real latents as clean copies. At toy
scales the toy world's exact causal teacher (`raven.world.teacher`, clean history frames at t = 0) can
stand in (`stages.causal_teacher.kind: exact`): the stage then trains nothing and records that choice in
its summary, which `raven ode pairs` reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from raven.config.spec import OptimSpec
from raven.diffusion.schedule import add_noise, uniform_shift_timesteps
from raven.training.base import base_loss
from raven.training.history import chunk_frame_times
from raven.training.loop import StageLength, StepContext


class CausalTeacherOptions(StageLength):
    """`stages.causal_teacher` of a run spec."""

    kind: Literal["exact", "trained"] = "exact"
    prediction_loss: Literal["x0", "velocity"] = "x0"
    iterations: int = Field(default=100_000, gt=0)
    batch_size: int = Field(default=16, gt=0)
    optim: OptimSpec = OptimSpec(lr=2e-4, betas=(0.9, 0.999), grad_clip=1.0)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)
    time_shift: float = Field(default=3.0, gt=0)
    checkpoint_every: int = Field(default=500, gt=0)


def teacher_forcing_times(batch: int, chunk_frames: Sequence[int], shift: float,
                          generator: torch.Generator) -> torch.Tensor:
    """Independent uniform+shift times per chunk on [0, 1000], expanded to latent frames [B, F]."""
    per_chunk = uniform_shift_timesteps(batch * len(chunk_frames), shift, 0.0, 1.0, generator)
    return chunk_frame_times(per_chunk.view(batch, len(chunk_frames)), chunk_frames)


@dataclass
class TeacherForcingStep:
    """One teacher-forcing step of the causal teacher (trained under the name `teacher`).

    `student`: `raven.diffusion.trajectory.CausalForwards` over the trained transformer; `batches`: clip or
    mixture batches of `raven.training.base`; `text`: its TextTable.
    """

    options: CausalTeacherOptions
    model: object
    batches: object
    text: object
    chunk_frames: Sequence[int]

    def __call__(self, ctx: StepContext) -> dict[str, float]:
        generator = ctx.generator
        x0, prompts = self.batches.draw(self.options.batch_size, generator)
        t = teacher_forcing_times(len(prompts), self.chunk_frames, self.options.time_shift, generator)
        noise = torch.randn(x0.shape, generator=generator)
        noisy = add_noise(x0, noise, t)
        text = self.text.embeddings[self.text.rows(prompts)]
        device = ctx.world.device
        velocity = self.model.interleaved(noisy.to(device), t.to(device), x0.to(device), text.to(device))
        loss = base_loss(velocity, noisy.to(device), t.to(device), x0.to(device), noise.to(device),
                         self.options.prediction_loss)
        return ctx.optimisers.update("teacher", loss)


def train_causal_teacher(spec_path, init=None, clips=None, prompts=None, out=None, text_cache=None) -> dict:
    """`raven train causal-teacher`: kind `exact` records that the toy world's exact causal teacher stands
    in (nothing trained); kind `trained` trains a block-causal teacher from the base by teacher forcing."""
    from pathlib import Path

    from raven.config import ConfigError, read_spec, stage_options
    from raven.io import atomic_write_json
    from raven.training.base import ModelParts, TextTable, training_batches
    from raven.training.distributed import close_world, init_world, launched_rank
    from raven.training.loop import TrainedModel, train

    spec = read_spec(spec_path)
    options = stage_options(spec, "causal_teacher", CausalTeacherOptions)
    if options.kind == "exact":
        summary = {"stage": "causal_teacher", "kind": "exact",
                   "note": "the toy world's exact causal teacher stands in for a trained causal teacher"}
        if launched_rank() == 0:  # outputs are written by rank 0 only
            atomic_write_json(Path(out) / "summary.json", summary)
        return summary
    if init is None or (clips is None and prompts is None):
        raise ConfigError("stages.causal_teacher.kind 'trained' needs --init (the base model folder) and "
                          "--clips or --prompts (its training videos)")
    world = init_world(spec.precision)
    try:
        from raven.models import causal_forwards

        parts = ModelParts.build(spec, text_cache).place(world)
        batches, skipped = training_batches(spec, parts, clips, prompts)
        text = TextTable.build(parts.encode_text, batches.captions if clips else batches.prompts)
        model = parts.load(init)
        frames = spec.chunk_frames
        step = TeacherForcingStep(options, causal_forwards(model, spec), batches, text, frames)
        return train(
            [TrainedModel("teacher", model, options.optim, options.ema_decay, export="model")], step, out,
            options.loop_options(spec.seed),
            world=world, spec=spec, stage="causal_teacher", inputs={"init": init, "clips": clips, "prompts": prompts},
            summary_extra={"kind": "trained", "skipped_clips": skipped, "init": str(init)},
        )
    finally:
        close_world(world)
