"""GPU check: one prepared script for the first GPU that is lent (issue 14). Random weights in bf16.

1. Streaming: the 1.3B causal student at 480x832, 21 latent frames, through `raven.diffusion.streaming.generate`
   (KV cache, 4 consistency steps per chunk) and a random Wan VAE decode: FPS (81 pixel frames over
   generation + decode), time to first chunk, peak memory.
2. One DMD iteration (`raven.training.dmd.DMDStep`): rollout, critic step, generator step (RAVEN's
   interleaved forward) with a 1.3B student and critic and a 1.3B stand-in for the 14B teacher, gradient
   checkpointing on, AdamW: step time and peak memory (`--dmd-latent-frames` fewer frames if needed).
Beside each measured peak: the estimate of `raven preflight`'s memory model for the same setup.

    .venv/bin/python benchmarks/gpu_check.py                     # on a GPU: paper dims -> reports/gpu.json
    .venv/bin/python benchmarks/gpu_check.py --dims tiny --device cpu --out /tmp/gpu.json   # the CPU test

Until a GPU has run it, reports/gpu.json says so (`"ran": false`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import diffusers
import torch
from host import machine

from raven.config import resolve_spec
from raven.diffusion.schedule import student_timesteps
from raven.diffusion.streaming import generate
from raven.io import atomic_write_json
from raven.models import causal_forwards
from raven.models.transformer import transformer_config
from raven.preflight import UMT5_XXL, WAN_VAE_PARAMS
from raven.preflight_memory import Setup, dmd_estimate, streaming_estimate
from raven.preflight_stages import geometry_of, history, student_of
from raven.training.dmd import DMDOptions, DMDStep
from raven.training.teachers import WanTeacher

REPORT = Path(__file__).parent / "reports" / "gpu.json"
TEXT_TOKENS = 512
DTYPE = torch.bfloat16


def spec_for(dims: str, latent_frames: int | None = None):
    spec = resolve_spec("config", dims)
    if latent_frames is not None:
        factor = spec.codec.temporal_factor
        spec = resolve_spec("config", dims, None, {"video": {"frames": (latent_frames - 1) * factor + 1
                                                             if factor > 1 else latent_frames}})
    return spec


def text_dim(spec) -> int:
    return spec.text_encoder.d_model if spec.text_encoder.kind == "toy" else UMT5_XXL["d_model"]


def random_transformer(spec, device: str, seed: int) -> torch.nn.Module:
    """The project's Wan transformer config (raven.models.transformer) with random weights, in bf16."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    with torch.device(device):
        return WanTransformer3DModel(**transformer_config(spec, text_dim(spec))).to(DTYPE)


def random_text(spec, batch: int, device: str, seed: int) -> torch.Tensor:
    tokens = TEXT_TOKENS if spec.text_encoder.kind == "umt5" else spec.text_encoder.max_length
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, tokens, text_dim(spec), generator=generator).to(device, DTYPE)


def random_decoder(spec, device: str):
    """Latents -> pixels: a random diffusers AutoencoderKLWan (Wan2.1's VAE config) at paper dims; the toy
    scales' pixel codec otherwise."""
    if spec.codec.kind != "wan_vae":
        from raven.models import build_codec

        return build_codec(spec).decode, 0
    from diffusers import AutoencoderKLWan

    with torch.device(device):
        vae = AutoencoderKLWan().to(DTYPE).eval()
    return (lambda latents: vae.decode(latents.to(DTYPE)).sample), sum(p.numel() for p in vae.parameters())


class Memory:
    """Peak tensor bytes on the device (CUDA); None on the CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def peak_gb(self) -> dict:
        if not self.cuda:
            return {"allocated_gb": None, "reserved_gb": None}
        torch.cuda.synchronize()
        return {"allocated_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                "reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 2)}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def estimate_json(estimate) -> dict:
    return {"live_gb": round(estimate.live_gb, 2), "peak_gb": round(estimate.peak_gb, 2),
            "breakdown_gb": estimate.breakdown_gb()}


@torch.no_grad()
def check_streaming(dims: str, device: str, memory: Memory) -> dict:
    spec = spec_for(dims)
    model = random_transformer(spec, device, seed=0).eval().requires_grad_(False)
    forwards = causal_forwards(model, spec)
    decode, vae_params = random_decoder(spec, device)
    text, timesteps = random_text(spec, 1, device, seed=1), student_timesteps(spec)
    generate(forwards, text, [0], timesteps=timesteps)  # warm-up: kernels, compiled attention
    memory.reset()
    sync(device)
    start = time.perf_counter()
    generation = generate(forwards, text, [1], timesteps=timesteps)
    sync(device)
    generated = time.perf_counter() - start
    pixels = decode(generation.latents)
    sync(device)
    total = time.perf_counter() - start
    frames = pixels.shape[2]
    setup = Setup(shards=1, compute_bytes=2, checkpointing=False, master_bytes=2)
    estimate = streaming_estimate(student_of(spec), geometry_of(spec), setup, videos=1,
                                  history=history(spec, geometry_of(spec)), text_encoder_params=0,
                                  vae_params=vae_params, vae_gb_per_video=3.0 if vae_params else 0.0)
    return {"latent_frames": spec.latent_frames, "pixel_frames": frames, "height": spec.video.height,
            "width": spec.video.width, "fps": round(frames / total, 2), "fps_without_decode": round(frames / generated, 2),
            "time_to_first_chunk_s": round(generation.first_chunk_s, 4), "generation_s": round(generated, 3),
            "decode_s": round(total - generated, 3), "measured": memory.peak_gb(), "estimate": estimate_json(estimate),
            "targets": {"fps": 25.0, "time_to_first_chunk_s": 0.5}}


def check_dmd(dims: str, device: str, memory: Memory, latent_frames: int | None) -> dict:
    spec = spec_for(dims, latent_frames)
    student_model = random_transformer(spec, device, seed=0)
    critic = random_transformer(spec, device, seed=1)
    teacher_model = random_transformer(spec, device, seed=2).eval().requires_grad_(False)
    for model in (student_model, critic):
        model.enable_gradient_checkpointing()  # as raven.training.distributed does for sharded models
    text = random_text(spec, 1, device, seed=3)
    teacher = WanTeacher(teacher_model, lambda prompts: text.expand(len(prompts), -1, -1), guidance=3.0)
    options = DMDOptions(history_mode="raven", teacher="wan")
    step = DMDStep(options, causal_forwards(student_model, spec), critic, teacher, spec.chunk_frames)
    optimisers = {name: torch.optim.AdamW(model.parameters(), lr=1e-7, betas=(0.0, 0.999))
                  for name, model in (("student", student_model), ("critic", critic))}
    ema = [parameter.detach().clone() for parameter in student_model.parameters()]  # the student's EMA copy

    def iteration(seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            rollout = generate(step.student, text, [seed], timesteps=student_timesteps(spec), record=True).rollout()
        for name, loss in (("critic", lambda: step.critic_loss(rollout, text, generator)),
                           ("student", lambda: step.generator_loss(rollout, ["prompt"], text, generator))):
            loss().backward()
            optimisers[name].step()
            optimisers[name].zero_grad(set_to_none=False)
        with torch.no_grad():
            torch._foreach_lerp_(ema, list(student_model.parameters()), 1 - options.ema_decay)

    iteration(0)  # warm-up: optimiser state, kernels, compiled attention
    memory.reset()
    sync(device)
    start = time.perf_counter()
    iteration(1)
    sync(device)
    seconds = time.perf_counter() - start
    setup = Setup(shards=1, compute_bytes=2, checkpointing=True, master_bytes=2)
    estimate = dmd_estimate(student_of(spec), student_of(spec), geometry_of(spec), setup, mode="raven", batch=1, student_cfg=False,
                            teacher_cfg=True, history=history(spec, geometry_of(spec)))
    return {"latent_frames": spec.latent_frames, "step_s": round(seconds, 3), "measured": memory.peak_gb(),
            "estimate": estimate_json(estimate),
            "setup": "one GPU, bf16 weights, AdamW state and EMA, gradient checkpointing, teacher stand-in 1.3B"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", default="paper", help="scale whose dims to use: paper (1.3B) or tiny (CPU test)")
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (exercises the same lines)")
    parser.add_argument("--dmd-latent-frames", type=int, default=None,
                        help="latent frames of the DMD iteration (default: the scale's; fewer if memory is short)")
    parser.add_argument("--out", default=str(REPORT), help="report JSON")
    args = parser.parse_args()
    diffusers.utils.logging.set_verbosity_error()  # random models are cast to bf16 whole, on purpose
    memory = Memory(args.device)
    report = {"ran": True, "dims": args.dims, "device": args.device,
              "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
              "machine": machine(), "streaming": check_streaming(args.dims, args.device, memory)}
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    try:
        report["dmd_iteration"] = check_dmd(args.dims, args.device, memory, args.dmd_latent_frames)
    except torch.OutOfMemoryError as error:
        report["dmd_iteration"] = {"error": f"out of memory: {error}"[:500], "hint": "rerun with --dmd-latent-frames 12"}
    atomic_write_json(args.out, report)
    print(report)


if __name__ == "__main__":
    main()
