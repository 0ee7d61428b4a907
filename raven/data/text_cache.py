"""The text-embedding cache: every prompt encoded once, stored trimmed to its token length in safetensors
shards plus an index, and read back per batch through memory maps (issue 14).

Training reads a few prompts per step from ~30k; encoding them all into a [N, 512, 4096] table in RAM
would take ~258 GB per rank. Here each rank of the encoding job writes its share of the prompts into its
own shards (`part-<rank>-<k>.safetensors`, one tensor [tokens, D] per prompt, in the job's dtype) and a
part list; rank 0 merges the part lists into `index.json`, written last. Reading pads each prompt back to
the encoder's `max_length` with zeros, so a model sees exactly what the encoder returned.

The encoder is any callable `encode(prompts) -> [B, max_length, D]` that is zero past each prompt's
length (raven.models.text.TextEncoder): this layer does not know about models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from raven.io import atomic_write_json, save_tensors

INDEX = "index.json"
FORMAT = 1


def token_length(embedding: torch.Tensor) -> int:
    """Rows up to the last non-zero one: the encoder zeroes every position past the prompt's tokens."""
    nonzero = embedding.abs().amax(dim=-1).nonzero()
    return int(nonzero[-1]) + 1 if len(nonzero) else 1


def part_list(folder: Path, part: int) -> Path:
    return folder / f"part-{part}.json"


def write_part(folder: str | Path, prompts: Sequence[str], encode: Callable[[Sequence[str]], torch.Tensor], *,
               part: int = 0, parts: int = 1, batch: int = 64, shard_prompts: int = 4096,
               dtype: torch.dtype = torch.bfloat16) -> Path:
    """Encode this part's share `prompts[part::parts]` into shards and write the part's list last
    ([prompt, shard file, tensor key, tokens] per prompt). Returns the list's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    share = list(dict.fromkeys(prompts))[part::parts]
    entries, shard, index = [], {}, 0

    def flush() -> None:
        nonlocal shard, index
        if shard:
            save_tensors(shard, folder / f"part-{part}-{index}.safetensors")
            shard, index = {}, index + 1

    for start in range(0, len(share), batch):
        with torch.no_grad():
            embeddings = encode(share[start : start + batch])
        for prompt, embedding in zip(share[start : start + batch], embeddings):
            if len(shard) == shard_prompts:
                flush()
            tokens, key = token_length(embedding), f"p{len(entries)}"
            shard[key] = embedding[:tokens].to("cpu", dtype).contiguous()
            entries.append([prompt, f"part-{part}-{index}.safetensors", key, tokens])
    flush()
    width, length = (int(embeddings.shape[-1]), int(embeddings.shape[1])) if share else (0, 0)
    atomic_write_json(part_list(folder, part), {"entries": entries, "dim": width, "max_length": length,
                                                "dtype": str(dtype).removeprefix("torch.")})
    return part_list(folder, part)


def merge_parts(folder: str | Path, parts: int, negatives: dict[str, str]) -> Path:
    """Merge the part lists into `index.json` (written last, so its presence means the cache is complete).
    `negatives` names the cached negative prompts (e.g. {"teacher": "<the release's negative prompt>"})."""
    folder = Path(folder)
    missing = [str(part_list(folder, part)) for part in range(parts) if not part_list(folder, part).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: text-cache parts {missing} are missing; rerun `raven data text-cache`")
    lists = [json.loads(part_list(folder, part).read_text()) for part in range(parts)]
    filled = [item for item in lists if item["entries"]]
    entries = {prompt: [file, key, tokens] for item in lists for prompt, file, key, tokens in item["entries"]}
    unknown = [prompt for prompt in negatives.values() if prompt not in entries]
    if unknown:
        raise ValueError(f"{folder}: negative prompts {unknown[:2]} were not encoded; pass them to write_part")
    atomic_write_json(folder / INDEX, {"format": FORMAT, "dim": filled[0]["dim"], "max_length": filled[0]["max_length"],
                                       "dtype": filled[0]["dtype"], "negatives": negatives, "entries": entries})
    return folder / INDEX


class TextCache:
    """Read side: `cache(prompts) -> [B, max_length, D]` (float32, zero-padded), like the encoder it replaces."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no text-embedding cache here (index.json is written last); "
                                    "build it with `raven data text-cache`")
        index = json.loads(path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{path}: format {index.get('format')!r}, expected {FORMAT}; rebuild the cache")
        self.entries: dict[str, list] = index["entries"]
        self.negatives: dict[str, str] = index["negatives"]
        self.dim, self.max_length = index["dim"], index["max_length"]
        self.device: torch.device | str = "cpu"  # where __call__ puts a batch (ModelParts.place sets it)
        self._files: dict[str, object] = {}

    @property
    def prompts(self) -> list[str]:
        return list(self.entries)

    def tensor(self, prompt: str) -> torch.Tensor:
        """One prompt's stored embedding [tokens, D], read through the shard's memory map."""
        try:
            file, key, _ = self.entries[prompt]
        except KeyError:
            raise KeyError(f"{self.folder}: prompt {prompt[:80]!r} is not in the text cache; rebuild it with "
                           "`raven data text-cache` from the same prompt files") from None
        if file not in self._files:
            self._files[file] = safe_open(str(self.folder / file), framework="pt")
        return self._files[file].get_tensor(key)

    def __call__(self, prompts: Sequence[str], device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.max_length, self.dim, dtype=dtype)
        for row, prompt in enumerate(prompts):
            embedding = self.tensor(prompt)
            out[row, : embedding.shape[0]] = embedding.to(dtype)
        return out.to(self.device if device is None else device)

    def negative(self, name: str) -> torch.Tensor:
        """[1, max_length, D] of a cached negative prompt (e.g. `teacher`)."""
        if name not in self.negatives:
            raise KeyError(f"{self.folder}: no negative prompt {name!r} cached; it has {sorted(self.negatives)}")
        return self([self.negatives[name]])
