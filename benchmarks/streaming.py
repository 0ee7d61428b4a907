"""Benchmark: streaming generation with the KV cache against its alternatives (issue 4, Performance).

At the tiny scale (random weights: speed does not depend on them), in one process so every ratio
compares runs on the same machine state (median of `--repeats`, alternatives interleaved):
- `speedup_vs_no_cache`: 8 chunks streamed with the cache vs recomputing the whole prefix at every step
  (a block-causal forward over [clean chunks so far at t = 0 ; current chunk]); same noise, same output.
- `speedup_vs_pipeline`: one video at the spec's horizon vs diffusers' bidirectional `WanPipeline` with
  its defaults (50 steps, CFG 5, Wan's UniPC flow scheduler with shift 3) on the same transformer size
  and latent frames (built from the same tiny components, latents out: the pixel codec has no VAE).
- `interleaved_over_sf_step`: forward + backward of the RAVEN interleaved generator step over the SF
  (chunk-by-chunk, detached cache) step, same shapes (docs/method.md §7).
- `fps`, `time_to_first_chunk_s` (8 chunks, batch 1), `latency_per_chunk_s` (16 chunks, sink 1 +
  window 2 chunks; `latency_per_chunk_full_history_s` without a window for contrast).
- `interleaved_vs_streaming_max_abs_diff`: the interleaved forward on a rollout's trajectory vs the
  streaming calls' x̂0 (docs/method.md §3 consequence).

Ratios and fps are per video with `--batch` videos per call; time to first chunk and per-chunk latency
use one video. Without a cache every step reprocesses the prefix: at 8 equal chunks and 4 steps that is
Σ_j 4·j = 144 chunk passes against 8·4 + 7 = 39 with the cache (`no_cache_token_ratio` 3.7; attention,
quadratic in the prefix, adds somewhat more), so the ratio grows with the video (`..._16_chunks`).

    .venv/bin/python benchmarks/streaming.py [--batch 8] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from host import machine

from raven.config import RunSpec, resolve_spec
from raven.config.spec import chunk_layout
from raven.diffusion.consistency import consistency_step
from raven.diffusion.schedule import student_timesteps, x0_from_velocity
from raven.diffusion.streaming import SampleNoise, generate
from raven.io import atomic_write_json
from raven.models import build_text_encoder, build_transformer, causal_forwards
from raven.runtime import apply_thread_policy
from raven.training.history import generator_x0

REPORT = Path(__file__).parent / "reports" / "streaming.json"
PROMPTS = ["red circle left fast on black", "blue square still on white"]
SEED = 7


def median_times(functions: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True) -> dict[str, float]:
    """Median wall time of each function, run alternately (after one warm-up run each)."""
    for function in functions.values() if warm_up else ():
        function()
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


@torch.no_grad()
def generate_without_cache(forwards, text: torch.Tensor, seeds: list[int], timesteps: list[int],
                           num_chunks: int) -> torch.Tensor:
    """The same sampler and noise as `generate`, but every step recomputes the whole clean prefix."""
    sizes = chunk_layout(forwards.chunk_frames, num_chunks=num_chunks)
    channels, _, height, width = forwards.latent_shape
    batch = text.shape[0]
    noise = SampleNoise(seeds, channels, height, width, text)
    clean = torch.empty(batch, channels, 0, height, width)
    for size in sizes:
        x = noise.draw(size)
        for t, s in zip(timesteps, timesteps[1:] + [0]):
            sequence = torch.cat([clean, x], dim=2)
            times = torch.cat([torch.zeros(batch, clean.shape[2], dtype=torch.long),
                               torch.full((batch, size), t)], dim=1)
            velocity = forwards.block_causal(sequence, times, text)[:, :, -size:]
            x0_hat = x0_from_velocity(x, velocity, times[:, -size:])
            x = x0_hat if s == 0 else consistency_step(x0_hat, s, noise.draw(size))
        clean = torch.cat([clean, x], dim=2)
    return clean


def wan_pipeline(spec: RunSpec, model: torch.nn.Module, encoder):
    """diffusers' WanPipeline on a bidirectional copy of `model` with Wan2.1's scheduler settings."""
    from diffusers import UniPCMultistepScheduler, WanPipeline

    transformer = build_transformer(spec)
    transformer.load_state_dict(model.state_dict())
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=encoder.tokenizer, text_encoder=encoder.model, vae=None,
                       transformer=transformer.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_call(pipe, spec: RunSpec, text: torch.Tensor, negative: torch.Tensor) -> Callable[[], torch.Tensor]:
    """One video of `spec.latent_frames` latent frames of h×w: the pipeline's pixel size is latent × 8 and
    its frame count 4(F − 1) + 1 (its VAE factors without a VAE)."""
    _, frames, height, width = spec.latent_shape

    def run() -> torch.Tensor:
        with torch.no_grad():
            return pipe(prompt_embeds=text, negative_prompt_embeds=negative, height=8 * height, width=8 * width,
                        num_frames=4 * (frames - 1) + 1, output_type="latent",
                        generator=torch.Generator().manual_seed(SEED)).frames
    return run


def training_steps(forwards, rollout, text: torch.Tensor, chunk_frames: list[int]) -> dict[str, Callable[[], None]]:
    """Forward + backward of the generator's x̂0 in history modes `raven` (interleaved) and `sf`."""
    k = torch.tensor([1] * text.shape[0])

    def step(mode: str) -> Callable[[], None]:
        def run() -> None:
            forwards.model.zero_grad(set_to_none=True)
            x0 = generator_x0(mode, forwards, rollout, k, text, chunk_frames, torch.Generator().manual_seed(0))
            x0.pow(2).mean().backward()
        return run
    return {"interleaved": step("raven"), "self_forcing": step("sf")}


def interleaved_vs_streaming(forwards, text: torch.Tensor, timesteps: list[int]) -> float:
    with torch.no_grad():
        generation = generate(forwards, text, [SEED, SEED + 1], timesteps=timesteps, record=True)
        worst = 0.0
        for state, prediction, time_k in zip(generation.states, generation.predictions, generation.times):
            t = torch.full((text.shape[0], state.shape[2]), time_k)
            interleaved = x0_from_velocity(state, forwards.interleaved(state, t, generation.latents, text), t)
            worst = max(worst, float((interleaved - prediction).abs().max()))
    return worst


def chunk_latencies(forwards, text: torch.Tensor, timesteps: list[int], chunks: int, repeats: int) -> list[float]:
    runs = []
    with torch.no_grad():
        for repeat in range(repeats + 1):
            runs.append(generate(forwards, text, [SEED + repeat], timesteps=timesteps, num_chunks=chunks).chunk_s)
    return [statistics.median(column) for column in zip(*runs[1:])]


def token_ratio_no_cache(sizes: list[int], steps: int) -> float:
    """Tokens processed without/with the cache: Σ_j steps·(frames up to j) over Σ_j (steps + refresh)·size_j."""
    prefix = [sum(sizes[: j + 1]) for j in range(len(sizes))]
    return steps * sum(prefix) / (steps * sum(sizes) + sum(sizes[:-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--batch", type=int, default=8, help="videos per call for the per-video throughput ratios")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads per process (default: RAVEN_THREADS, else 1; raven.runtime)")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    apply_thread_policy(args.threads)

    spec = resolve_spec(Path(__file__).parents[1] / "config", args.scale)
    timesteps = student_timesteps(spec)
    torch.manual_seed(0)
    model = build_transformer(spec).eval()
    encoder = build_text_encoder(spec)
    text, negative = encoder(PROMPTS), encoder([""])
    batch_text = text[:1].expand(args.batch, -1, -1)
    seeds = [SEED + b for b in range(args.batch)]
    forwards = causal_forwards(model, spec)
    windowed = causal_forwards(model, spec, sink=1, window=2)
    pipe = wan_pipeline(spec, model, encoder)

    def stream(chunks: int | None, prompts: torch.Tensor = batch_text, seeds: list[int] = seeds):
        def run():
            with torch.no_grad():
                return generate(forwards, prompts, seeds, timesteps=timesteps, num_chunks=chunks)
        return run

    def no_cache(chunks: int):
        return lambda: generate_without_cache(forwards, batch_text, seeds, timesteps, chunks)

    streamed, recomputed = stream(8)(), no_cache(8)()
    times = median_times({"stream_8": stream(8), "no_cache_8": no_cache(8), "stream_horizon": stream(None),
                          "pipeline": pipeline_call(pipe, spec, batch_text, negative.expand(args.batch, -1, -1))},
                         args.repeats)
    long_times = median_times({"stream_16": stream(16), "no_cache_16": no_cache(16)}, 1, warm_up=False)
    first_chunk = statistics.median(stream(8, text[:1], [SEED])().first_chunk_s for _ in range(args.repeats + 1))

    with torch.no_grad():
        rollout = generate(forwards, text, [SEED, SEED + 1], timesteps=timesteps, record=True).rollout()
    model.train()
    step_times = median_times(training_steps(forwards, rollout, text, spec.chunk_frames), args.repeats)
    model.eval()

    frames_8 = streamed.latents.shape[2]
    report = {
        "scale": args.scale, "timesteps": timesteps, "repeats": args.repeats, "batch": args.batch,
        "speedup_vs_no_cache": times["no_cache_8"] / times["stream_8"],
        "speedup_vs_no_cache_16_chunks": long_times["no_cache_16"] / long_times["stream_16"],
        "no_cache_token_ratio": {"8_chunks": token_ratio_no_cache([spec.chunks.chunk_size] * 8, len(timesteps)),
                                 "16_chunks": token_ratio_no_cache([spec.chunks.chunk_size] * 16, len(timesteps))},
        "no_cache_max_abs_diff": float((streamed.latents - recomputed).abs().max()),
        "speedup_vs_pipeline": times["pipeline"] / times["stream_horizon"],
        "pipeline": {"num_inference_steps": 50, "guidance_scale": 5.0, "scheduler": "UniPC flow, shift 3",
                     "latent_frames": spec.latent_frames},
        "interleaved_over_sf_step": step_times["interleaved"] / step_times["self_forcing"],
        "fps": args.batch * frames_8 / times["stream_8"],
        "time_to_first_chunk_s": first_chunk,
        "latency_per_chunk_s": chunk_latencies(windowed, text[:1], timesteps, 16, args.repeats),
        "latency_window": {"sink": windowed.sink, "window": windowed.window, "batch": 1},
        "latency_per_chunk_full_history_s": chunk_latencies(forwards, text[:1], timesteps, 16, args.repeats),
        "interleaved_vs_streaming_max_abs_diff": interleaved_vs_streaming(forwards, text, timesteps),
        "seconds": {**times, **long_times, **{f"step_{name}": value for name, value in step_times.items()}},
        "machine": machine(device="cpu"),
    }
    atomic_write_json(args.out, report)
    print({key: value for key, value in report.items() if not isinstance(value, (list, dict))})


if __name__ == "__main__":
    main()
