"""Clip latents, encoded once and streamed: the real-clip stages (TF/DF rows, a base trained by flow) read
latents per batch from safetensors shards instead of decoding and encoding every clip into RAM (issue 14).

`raven data clip-latents` (a launched job, the VAE on the GPU in bf16) has each rank encode every
`parts`-th clip shard into `latents-<shard>.safetensors` (one tensor [C, F, h, w] per clip) and a part
list; rank 0 merges them into `index.json`, written last. `LatentClips` draws clips uniformly with the
iteration's generator, reading only the drawn ones through memory maps. The encoder is any callable
`encode(pixels [B, 3, T, H, W] in [-1, 1]) -> latents` (the codec): this layer does not know about models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open

from raven.data.shards import ClipReader
from raven.io import atomic_write_json, save_tensors

INDEX = "index.json"


def write_latent_part(clips: str | Path, out: str | Path, encode: Callable[[torch.Tensor], torch.Tensor],
                      geometry: tuple[int, int, int], *, part: int = 0, parts: int = 1, batch: int = 8,
                      dtype: torch.dtype = torch.float32) -> Path:
    """Encode this part's clip shards (every `parts`-th from `part`); `geometry` is the run spec's
    (frames, height, width): a clip of another geometry is an error naming it. Returns the part list."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reader = ClipReader(clips, part=part, parts=parts)
    entries, expected = [], (*geometry, 3)
    for shard in reader.paths:
        tensors, pixels, names = {}, [], []

        def flush() -> None:
            with torch.no_grad():
                latents = encode(torch.stack(pixels).float() / 127.5 - 1)
            for (key, caption), latent in zip(names, latents):
                tensors[f"c{len(tensors)}"] = latent.to("cpu", dtype).contiguous()
                entries.append([caption, f"latents-{shard.stem}.safetensors", f"c{len(tensors) - 1}"])
            pixels.clear()
            names.clear()

        for clip in reader.shard(shard):
            if clip.frames.shape != expected:
                raise ValueError(f"{shard}: clip {clip.key!r} has frames of shape {clip.frames.shape}, the run spec "
                                 f"needs {expected}; write the clips with the same spec")
            pixels.append(torch.from_numpy(clip.frames).permute(3, 0, 1, 2))
            names.append((clip.key, clip.caption))
            if len(pixels) == batch:
                flush()
        if pixels:
            flush()
        save_tensors(tensors, out / f"latents-{shard.stem}.safetensors")
    atomic_write_json(out / f"part-{part}.json", {"entries": entries, "skipped": reader.skipped})
    return out / f"part-{part}.json"


def merge_latent_parts(out: str | Path, parts: int) -> Path:
    """Merge the part lists into `index.json` (written last: its presence means every clip is encoded)."""
    out = Path(out)
    missing = [str(out / f"part-{k}.json") for k in range(parts) if not (out / f"part-{k}.json").is_file()]
    if missing:
        raise FileNotFoundError(f"{out}: latent parts {missing} are missing; rerun `raven data clip-latents`")
    lists = [json.loads((out / f"part-{k}.json").read_text()) for k in range(parts)]
    entries = [entry for item in lists for entry in item["entries"]]
    if not entries:
        raise ValueError(f"{out}: no readable clips to encode; rewrite them with `raven data clips`")
    atomic_write_json(out / INDEX, {"entries": entries, "skipped": sum(item["skipped"] for item in lists)})
    return out / INDEX


class LatentClips:
    """Clips as latents streamed from the shards: `draw(batch, generator) -> (latents [B, C, F, h, w], captions)`."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / INDEX).is_file():
            raise FileNotFoundError(f"{self.folder / INDEX}: no encoded clip latents (index.json is written last); "
                                    "build them with `raven data clip-latents`")
        index = json.loads((self.folder / INDEX).read_text())
        self.entries, self.skipped = index["entries"], index["skipped"]
        self._files: dict[str, object] = {}

    @property
    def captions(self) -> list[str]:
        return [caption for caption, _, _ in self.entries]

    def latent(self, index: int) -> torch.Tensor:
        _, file, key = self.entries[index]
        if file not in self._files:
            self._files[file] = safe_open(str(self.folder / file), framework="pt")
        return self._files[file].get_tensor(key).float()

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        index = torch.randint(0, len(self.entries), (batch,), generator=generator).tolist()
        return torch.stack([self.latent(i) for i in index]), [self.entries[i][0] for i in index]
