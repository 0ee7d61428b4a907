"""A samples folder written by `raven sample` (contract): `videos.npy` uint8 [N, T, H, W, 3] (exact pixels),
`samples.json` [{index, prompt, seed, file}], `videos/*.mp4`, and `summary.json`, written last.

`raven sample` splits the samples across ranks (sample i on rank i mod world size) and writes each one as it
is made: its mp4 and its exact pixels (`pixels/{i:05d}.npy`, until rank 0 streams them into `videos.npy`),
so no rank holds more than a batch of videos and a rerun resumes after the finished samples.
"""

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
    videos = np.load(folder / "videos.npy", mmap_mode="r")  # read on use, never all at once
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


def pixels_file(index: int) -> str:
    return f"pixels/{index:05d}.npy"


def write_sample(folder: Path, index: int, video: np.ndarray, fps: float) -> None:
    """One finished sample: its mp4 and its exact pixels, each written atomically (the pixels last)."""
    from raven.data.video import write_mp4
    from raven.io import atomic_path

    write_mp4(folder / video_file(index), video, fps)
    with atomic_path(folder / pixels_file(index)) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(video, dtype=np.uint8))


def finish_samples(folder: Path, prompts: list[str], seeds: list[int], fps: float, summary: dict | None = None) -> None:
    """Stream every sample's pixels into `videos.npy` (one video in memory at a time), then `samples.json`,
    then `summary.json` (`summary`, count, fps) last; the per-sample pixel files go once `videos.npy` is in."""
    from raven.io import atomic_path, atomic_write_json

    records = [{"index": index, "prompt": prompt, "seed": int(seed), "file": video_file(index)}
               for index, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True))]
    shape = np.load(folder / pixels_file(0), mmap_mode="r").shape
    with atomic_path(folder / "videos.npy") as tmp:
        videos = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(records), *shape))
        for index in range(len(records)):
            videos[index] = np.load(folder / pixels_file(index))
        videos.flush()
        del videos
    for index in range(len(records)):
        (folder / pixels_file(index)).unlink()
    (folder / "pixels").rmdir()
    atomic_write_json(folder / "samples.json", records)
    atomic_write_json(folder / "summary.json", {**(summary or {}), "count": len(records), "fps": fps})


def write_samples(folder: str | Path, videos: np.ndarray, prompts: list[str], seeds: list[int], fps: float,
                  summary: dict | None = None) -> None:
    """Write a samples folder in the contract's layout; `summary.json` (`summary`, count, fps) goes last.
    `fps` is the videos' frame rate, which every reader of the folder plays or measures them at."""
    folder = Path(folder)
    for index, video in enumerate(videos):
        write_sample(folder, index, video, fps)
    finish_samples(folder, prompts, seeds, fps, summary)


def sample_seeds(prompts: list[str], seeds_per_prompt: int, base_seed: int) -> tuple[list[str], list[int]]:
    """Prompt-major file order: video p·seeds + r is prompt p with seed `base_seed` + its index (docs/method.md §10)."""
    repeated = [prompt for prompt in prompts for _ in range(seeds_per_prompt)]
    return repeated, [base_seed + index for index in range(len(repeated))]


def sample_folder(spec_path: str | Path, model_path: str | Path, prompts_path: str | Path, out: str | Path,
                  mode: str = "consistency", chunks: int | None = None, seeds_per_prompt: int = 1,
                  batch_size: int | None = None, model_key: str | None = None, lora: str | Path | None = None) -> dict:
    """`raven sample`: stream videos of a causal student for every prompt × seed into a samples folder, the
    samples split across ranks, each written as it is made; the models on the device in `spec.precision`.
    `batch_size` None: the spec's `stages.sample.batch_size`."""
    import torch
    from tqdm import tqdm

    from raven.config import read_spec, stage_options
    from raven.data.prompts import read_prompt_file
    from raven.diffusion.schedule import student_timesteps
    from raven.diffusion.streaming import generate
    from raven.evaluation.options import SampleOptions
    from raven.models import build_codec, build_text_encoder, causal_forwards
    from raven.models.checkpoints import load_student
    from raven.training.distributed import close_world, init_world
    from raven.world.render import to_uint8

    spec = read_spec(spec_path)
    if batch_size is None:
        batch_size = stage_options(spec, "sample", SampleOptions).batch_size
    world = init_world(spec.precision)
    try:
        prompts, seeds = sample_seeds(read_prompt_file(prompts_path), seeds_per_prompt, spec.seed)
        student = load_student(model_path, spec, key=model_key, lora=lora)
        forwards = causal_forwards(world.place(student), spec)
        encoder, codec = build_text_encoder(spec), build_codec(spec)
        world.place(encoder.model)
        if hasattr(codec, "vae"):
            world.place(codec.vae)
        sampler = spec.sampler
        settings = {
            "timesteps": student_timesteps(spec), "num_chunks": chunks, "guidance": sampler.guidance,
            "rolling_window": sampler.rolling_window if mode == "rolling" else None,
            "kernel": "euler_maruyama" if sampler.kind == "euler_maruyama" else "consistency", "eta": sampler.eta,
        }
        negative = encoder([""]) if sampler.guidance != 1.0 else None
        folder = Path(out)
        mine = [i for i in range(world.rank, len(prompts), world.world_size)
                if not ((folder / video_file(i)).is_file() and (folder / pixels_file(i)).is_file())]
        timings = []
        batches = [mine[first : first + batch_size] for first in range(0, len(mine), batch_size)]
        for batch in tqdm(batches, desc="sample", unit="batch", disable=not world.is_main):
            with torch.no_grad():
                generation = generate(forwards, encoder([prompts[i] for i in batch]), [seeds[i] for i in batch],
                                      negative_text=negative, **settings)
                videos = to_uint8(codec.decode(generation.latents).float().cpu().numpy())
            for index, video in zip(batch, videos, strict=True):
                write_sample(folder, index, video, spec.video.fps)
            timings.append((generation.first_chunk_s, generation.chunk_s, len(batch)))
        timings = [timing for rank_timings in world.gather(timings) for timing in rank_timings]
        frames = int(np.load(folder / pixels_file(0), mmap_mode="r").shape[0])  # every rank has written
        world.barrier()  # and every rank has read it before rank 0 streams the pixel files and removes them
        summary = {
            "videos": len(prompts), "mode": mode, "device": str(world.device), "world_size": world.world_size,
            "precision": spec.precision, "model": str(model_path), "prompts": str(prompts_path),
            "seeds_per_prompt": seeds_per_prompt, "batch_size": batch_size, "sink": forwards.sink,
            "window": forwards.window, **{key: value for key, value in settings.items() if key != "num_chunks"},
            "frames_per_video": frames, **timing_summary(timings, frames),
            "threads": torch.get_num_threads(),
        }
        if world.is_main:
            finish_samples(folder, prompts, seeds, spec.video.fps, summary)
        world.barrier()
        return summary
    finally:
        close_world(world)


def timing_summary(timings: list[tuple[float, list[float], int]], frames: int) -> dict:
    """Frames per second of generation (frames made / time spent, over every rank's batches of
    (time to first chunk, chunk times, videos)), median time to the first chunk and per chunk; None where
    this run generated nothing (every sample resumed)."""
    if not timings:
        return {"chunks": None, "generation_fps": None, "time_to_first_chunk_s": None, "latency_per_chunk_s": None,
                "generation_s": 0.0}
    chunk_s = np.array([chunks for _, chunks, _ in timings])
    generation_s = float(chunk_s.sum())
    return {
        "chunks": int(chunk_s.shape[1]),
        "generation_fps": float(sum(count for _, _, count in timings) * frames / generation_s),
        "time_to_first_chunk_s": float(np.median([first for first, _, _ in timings])),
        "latency_per_chunk_s": [float(x) for x in np.median(chunk_s, axis=0)], "generation_s": generation_s,
    }
