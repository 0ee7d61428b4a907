"""`raven sample`: stream videos from a trained causal student (SPEC §2, §3, §9).

Writes `<out>/videos/{i:05d}.mp4`, `<out>/videos.npy` (uint8 [N, T, H, W, 3], the exact pixels the toy
metrics read), `<out>/samples.json` ([{index, prompt, seed, file}]) and `<out>/summary.json` last
(fps, time to first chunk, latency per chunk). Sample i of prompt p × seed r has index p·seeds + r and
seed `spec.seed + index` (SPEC §10). A rerun whose summary exists does nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODES = ("consistency", "rolling")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="stream videos from a causal student (KV cache, chunk by chunk)")
    parser.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    parser.add_argument("--model", required=True,
                        help="student folder: <train out>/model_ema or /model (diffusers save_pretrained)")
    parser.add_argument("--prompts", required=True, help="prompt file, one prompt per line")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mode", choices=MODES, default="consistency",
                        help="consistency: chunk by chunk (sink/window from spec.chunks); rolling: Rolling "
                             "Forcing's joint window of sampler.rolling_window chunks")
    parser.add_argument("--chunks", type=int, help="chunks per video (default: the spec's horizon; more for drift)")
    parser.add_argument("--seeds-per-prompt", type=int, default=1, help="videos per prompt, each with its own seed")
    parser.add_argument("--batch-size", type=int, default=8, help="videos generated together")
    parser.set_defaults(handler=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    summary = Path(args.out) / "summary.json"
    if summary.is_file():
        print(f"raven sample: {summary} exists; nothing to do (delete the folder to sample again)")
        return 0
    for name in ("chunks", "seeds_per_prompt", "batch_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    sample_stage(args.spec, args.model, args.prompts, Path(args.out), args.mode, args.chunks,
                 args.seeds_per_prompt, args.batch_size)
    return 0


def sample_jobs(prompts: list[str], seeds_per_prompt: int, base_seed: int) -> list[dict]:
    """[{index, prompt, seed, file}] in file order: prompt-major, one seed per video."""
    jobs = []
    for p, prompt in enumerate(prompts):
        for r in range(seeds_per_prompt):
            index = p * seeds_per_prompt + r
            jobs.append({"index": index, "prompt": prompt, "seed": base_seed + index, "file": f"videos/{index:05d}.mp4"})
    return jobs


def sample_stage(spec_path: str, model_path: str, prompts_path: str, out: Path, mode: str, chunks: int | None,
                 seeds_per_prompt: int, batch_size: int) -> dict:
    import numpy as np
    import torch
    from tqdm import tqdm

    from raven.config import read_spec
    from raven.data.prompts import read_prompt_file
    from raven.data.video import write_mp4
    from raven.diffusion.streaming import generate, streaming_forwards
    from raven.io import atomic_path, atomic_write_json
    from raven.models import build_codec, build_text_encoder, load_transformer
    from raven.training.dmd import sampler_times
    from raven.world.render import to_uint8

    spec = read_spec(spec_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    jobs = sample_jobs(read_prompt_file(prompts_path), seeds_per_prompt, spec.seed)
    forwards = streaming_forwards(load_transformer(model_path, spec).eval().requires_grad_(False).to(device), spec)
    encoder, codec = build_text_encoder(spec), build_codec(spec)
    encoder.model.to(device)
    sampler = spec.sampler
    settings = {
        "timesteps": sampler_times(spec), "num_chunks": chunks, "guidance": sampler.guidance,
        "rolling_window": sampler.rolling_window if mode == "rolling" else None,
        "kernel": "euler_maruyama" if sampler.kind == "euler_maruyama" else "consistency", "eta": sampler.eta,
    }
    negative = encoder([""]) if sampler.guidance != 1.0 else None
    videos, first_chunk_s, chunk_s, generation_s = [], [], [], 0.0
    for first in tqdm(range(0, len(jobs), batch_size), desc="sample", unit="batch"):
        batch = jobs[first : first + batch_size]
        text = encoder([job["prompt"] for job in batch])
        with torch.no_grad():
            generation = generate(forwards, text, [job["seed"] for job in batch], negative_text=negative, **settings)
            pixels = codec.decode(generation.latents).cpu().numpy()
        first_chunk_s.append(generation.first_chunk_s)
        chunk_s.append(generation.chunk_s)
        generation_s += sum(generation.chunk_s)
        frames = to_uint8(pixels)
        for job, video in zip(batch, frames):
            write_mp4(out / job["file"], video, spec.video.fps)
        videos.append(frames)
    stacked = np.concatenate(videos)
    with atomic_path(out / "videos.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, stacked)
    atomic_write_json(out / "samples.json", jobs)
    summary = {
        "videos": len(jobs), "frames_per_video": int(stacked.shape[1]), "mode": mode, "device": str(device),
        "model": str(model_path), "prompts": str(prompts_path), "seeds_per_prompt": seeds_per_prompt,
        "batch_size": batch_size, "chunks": len(chunk_s[0]), "sink": forwards.sink, "window": forwards.window,
        **{key: value for key, value in settings.items() if key != "num_chunks"},
        "fps": float(stacked.shape[0] * stacked.shape[1] / generation_s),
        "time_to_first_chunk_s": float(np.median(first_chunk_s)),
        "latency_per_chunk_s": [float(x) for x in np.median(np.array(chunk_s), axis=0)],
        "generation_s": generation_s,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
