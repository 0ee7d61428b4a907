"""A micro Wan transformer and a flow-matching step with TTUR, shared by the loop tests (also run in
subprocesses by the 2-rank gloo test)."""

from __future__ import annotations

import torch

from raven.config.spec import OptimSpec
from raven.training.loop import LoopOptions, StepContext, TrainedModel, train
from raven.training.weighting import chunk_weighted_loss

LATENT = (4, 3, 4, 4)
TEXT_LEN, TEXT_DIM = 3, 8


def micro_wan(seed: int):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=LATENT[0],
        out_channels=LATENT[0], text_dim=TEXT_DIM, freq_dim=16, ffn_dim=16, num_layers=1, rope_max_seq_len=32,
    )


def micro_models() -> list[TrainedModel]:
    return [
        TrainedModel("critic", micro_wan(1), OptimSpec(lr=1e-2, betas=(0.0, 0.99), eps=1e-6)),
        TrainedModel("student", micro_wan(2), OptimSpec(lr=5e-3, betas=(0.9, 0.999), weight_decay=0.01),
                     ema_decay=0.5, export="model"),
    ]


class FlowStep:
    """Flow matching of both models on a global batch drawn from (seed, iteration), sliced by rank.

    The critic steps every iteration, the student every 2nd (TTUR). `nan_at` makes the student's loss
    NaN at that iteration; `fail_at` raises (a killed job); the global torch RNG is used on purpose so
    that resume must restore it.
    """

    def __init__(self, global_batch: int = 3, nan_at: int | None = None, fail_at: int | None = None):
        self.global_batch, self.nan_at, self.fail_at = global_batch, nan_at, fail_at
        self.models: dict[str, torch.nn.Module] = {}

    def rank_slice(self, ctx: StepContext) -> slice:
        per_rank = -(-self.global_batch // ctx.world.world_size)
        return slice(ctx.world.rank * per_rank, min((ctx.world.rank + 1) * per_rank, self.global_batch))

    def loss(self, name: str, ctx: StepContext, data: torch.Generator) -> torch.Tensor:
        x0 = torch.randn(self.global_batch, *LATENT, generator=data)
        noise = torch.randn(self.global_batch, *LATENT, generator=data)
        t = torch.randint(1, 1000, (self.global_batch,), generator=data)
        text = torch.randn(self.global_batch, TEXT_LEN, TEXT_DIM, generator=data)
        part = self.rank_slice(ctx)
        sigma = (t[part].float() / 1000).view(-1, 1, 1, 1, 1)
        x_t = (1 - sigma) * x0[part] + sigma * noise[part]
        velocity = ctx.optimisers.models[name].module(x_t, t[part], text[part], return_dict=False)[0]
        per_element = (velocity - (noise[part] - x0[part])).pow(2)
        return chunk_weighted_loss(per_element, [2, 1], -1, world=ctx.world)

    def __call__(self, ctx: StepContext) -> dict[str, float]:
        if ctx.iteration == self.fail_at:
            raise RuntimeError("killed")
        data = torch.Generator().manual_seed(1000 + ctx.iteration)
        jitter = 1 + 0.01 * torch.rand(())  # global RNG: restored on resume
        metrics = ctx.optimisers.update("critic", jitter * self.loss("critic", ctx, data))
        if (ctx.iteration + 1) % 2 == 0:
            loss = self.loss("student", ctx, data)
            if ctx.iteration == self.nan_at:
                loss = loss * float("nan")
            metrics |= ctx.optimisers.update("student", loss)
        return metrics


def run(out, iterations: int, step: FlowStep, world=None, checkpoint_every: int = 2, spec=None, inputs=None) -> dict:
    return train(micro_models(), step, out, LoopOptions(iterations, checkpoint_every, seed=7), world=world,
                 spec=spec, stage="test", inputs=inputs)


def worker(out: str, global_batch: int) -> None:
    """Entry of one gloo rank (RANK/WORLD_SIZE/MASTER_* in the environment)."""
    from raven.training.distributed import close_world, init_world

    torch.set_num_threads(1)
    world = init_world()
    try:
        run(out, 4, FlowStep(global_batch), world=world)
    finally:
        close_world(world)
