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


def write_samples(folder: str | Path, videos: np.ndarray, prompts: list[str], seeds: list[int], fps: float) -> None:
    """Write a samples folder in the contract's layout (used for ground-truth and user-study folders)."""
    from raven.data.video import write_mp4
    from raven.io import atomic_path, atomic_write_json

    folder = Path(folder)
    records = []
    for index, (video, prompt, seed) in enumerate(zip(videos, prompts, seeds, strict=True)):
        name = f"videos/{index:05d}.mp4"
        write_mp4(folder / name, video, fps)
        records.append({"index": index, "prompt": prompt, "seed": int(seed), "file": name})
    with atomic_path(folder / "videos.npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(videos, dtype=np.uint8))
    atomic_write_json(folder / "samples.json", records)
    atomic_write_json(folder / "summary.json", {"fps": fps, "count": len(records)})
