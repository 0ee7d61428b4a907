"""A samples folder written by `raven sample` (contract): `videos.npy` uint8 [N, T, H, W, 3] (exact pixels),
`samples.json` [{index, prompt, seed, file}], `videos/*.mp4`, and `summary.json`, written last."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raven.io import read_json


@dataclass
class Samples:
    videos: np.ndarray  # uint8 [N, T, H, W, 3]
    records: list[dict]  # [{index, prompt, seed, file}]
    summary: dict

    @property
    def prompts(self) -> list[str]:
        return [record["prompt"] for record in self.records]


def read_samples(folder: str | Path) -> Samples:
    """Load a complete samples folder; an incomplete or inconsistent one raises naming the file."""
    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        raise FileNotFoundError(f"{folder / 'summary.json'}: missing, so the samples folder is incomplete "
                                "(`raven sample` writes it last); rerun `raven sample --out {folder}`")
    records = read_json(folder / "samples.json")
    videos = np.load(folder / "videos.npy")
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{folder / 'videos.npy'}: expected uint8 [N, T, H, W, 3], got {videos.dtype} {videos.shape}")
    if len(records) != len(videos):
        raise ValueError(f"{folder}: samples.json lists {len(records)} samples but videos.npy holds {len(videos)}")
    for position, record in enumerate(records):
        if record.get("index") != position or "prompt" not in record:
            raise ValueError(f"{folder / 'samples.json'}: entry {position} must have index {position} and a prompt, "
                             f"got {record}")
    return Samples(videos, records, read_json(folder / "summary.json"))


def video_file(index: int) -> str:
    return f"videos/{index:05d}.mp4"


def write_samples(folder: str | Path, videos: np.ndarray, prompts: list[str], seeds: list[int], fps: float,
                  summary: dict | None = None) -> None:
    """Write a samples folder in the contract's layout; `summary.json` (`summary`, count, fps) goes last.
    `fps` is the videos' frame rate, which every reader of the folder plays or measures them at."""
    from raven.data.video import write_mp4
    from raven.io import atomic_path, atomic_write_json

    folder = Path(folder)
    records = []
    for index, (video, prompt, seed) in enumerate(zip(videos, prompts, seeds, strict=True)):
        write_mp4(folder / video_file(index), video, fps)
        records.append({"index": index, "prompt": prompt, "seed": int(seed), "file": video_file(index)})
    with atomic_path(folder / "videos.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(videos, dtype=np.uint8))
    atomic_write_json(folder / "samples.json", records)
    atomic_write_json(folder / "summary.json", {**(summary or {}), "count": len(records), "fps": fps})


def sample_seeds(prompts: list[str], seeds_per_prompt: int, base_seed: int) -> tuple[list[str], list[int]]:
    """Prompt-major file order: video p·seeds + r is prompt p with seed `base_seed` + its index (docs/method.md §10)."""
    repeated = [prompt for prompt in prompts for _ in range(seeds_per_prompt)]
    return repeated, [base_seed + index for index in range(len(repeated))]


def sample_folder(spec_path: str | Path, model_path: str | Path, prompts_path: str | Path, out: str | Path,
                  mode: str = "consistency", chunks: int | None = None, seeds_per_prompt: int = 1,
                  batch_size: int = 8, model_key: str | None = None, lora: str | Path | None = None) -> dict:
    """`raven sample`: stream videos of a causal student for every prompt × seed into a samples folder."""
    import torch
    from tqdm import tqdm

    from raven.config import read_spec
    from raven.data.prompts import read_prompt_file
    from raven.diffusion.schedule import student_timesteps
    from raven.diffusion.streaming import generate
    from raven.models import build_codec, build_text_encoder, causal_forwards
    from raven.models.checkpoints import load_student
    from raven.world.render import to_uint8

    spec = read_spec(spec_path)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    prompts, seeds = sample_seeds(read_prompt_file(prompts_path), seeds_per_prompt, spec.seed)
    student = load_student(model_path, spec, key=model_key, lora=lora)
    forwards = causal_forwards(student.eval().requires_grad_(False).to(device), spec)
    encoder, codec = build_text_encoder(spec), build_codec(spec)
    encoder.model.to(device)
    sampler = spec.sampler
    settings = {
        "timesteps": student_timesteps(spec), "num_chunks": chunks, "guidance": sampler.guidance,
        "rolling_window": sampler.rolling_window if mode == "rolling" else None,
        "kernel": "euler_maruyama" if sampler.kind == "euler_maruyama" else "consistency", "eta": sampler.eta,
    }
    negative = encoder([""]) if sampler.guidance != 1.0 else None
    videos, first_chunk_s, chunk_s = [], [], []
    for first in tqdm(range(0, len(prompts), batch_size), desc="sample", unit="batch"):
        with torch.no_grad():
            generation = generate(forwards, encoder(prompts[first : first + batch_size]),
                                  seeds[first : first + batch_size], negative_text=negative, **settings)
            videos.append(to_uint8(codec.decode(generation.latents).cpu().numpy()))
        first_chunk_s.append(generation.first_chunk_s)
        chunk_s.append(generation.chunk_s)
    stacked = np.concatenate(videos)
    generation_s = float(np.sum(chunk_s))
    summary = {
        "videos": len(prompts), "frames_per_video": int(stacked.shape[1]), "mode": mode, "device": str(device),
        "model": str(model_path), "prompts": str(prompts_path), "seeds_per_prompt": seeds_per_prompt,
        "batch_size": batch_size, "chunks": len(chunk_s[0]), "sink": forwards.sink, "window": forwards.window,
        **{key: value for key, value in settings.items() if key != "num_chunks"},
        "generation_fps": float(stacked.shape[0] * stacked.shape[1] / generation_s),
        "time_to_first_chunk_s": float(np.median(first_chunk_s)),
        "latency_per_chunk_s": [float(x) for x in np.median(np.array(chunk_s), axis=0)],
        "generation_s": generation_s, "threads": torch.get_num_threads(),
    }
    write_samples(out, stacked, prompts, seeds, spec.video.fps, summary)
    return summary
