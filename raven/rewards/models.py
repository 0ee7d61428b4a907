"""The paper's reward models as adapters over LOCAL weights (docs/method.md §10 "Reward models"; nothing is downloaded).

Each adapter checks its paths first (a missing one is an error naming the config key and the expected
file), then imports its library lazily (the optional extra `raven-pipeline[rewards]`):
- `raft_RAFT`, `ms_MS`: RAFT dynamic degree and AMT-S motion smoothness (`raven.rewards.motion`), the
  published networks from VBench's `raft-things.pth` and `amt-s.pth`.
- `videoalign_TA`: VideoAlign as the release runs it (`raven.rewards.videoalign`).
- `aq_AES`: CLIP ViT-L/14 image embeddings (transformers), L2-normalised, through the LAION linear
  aesthetic head; /10; frame mean.
- `iq_IMG`: MUSIQ trained on SPAQ (pyiqa); frames whose longer side exceeds 512 px are resized to 512;
  /100; frame mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from raven.config import ConfigError
from raven.rewards.motion import AMTMotionSmoothness, RAFTDynamicDegree
from raven.rewards.registry import Reward, RewardSources, to_frames

MUSIQ_MAX_SIDE = 512
EXTRA = "pip install 'raven-pipeline[rewards]'"


def require_path(path: Path | None, key: str, expected: str) -> Path:
    """The configured local path, or an error naming the config key and the file it should hold."""
    if path is None:
        raise ConfigError(f"{key} is not set: it must point to {expected} (local weights; nothing is downloaded)")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{key} = {path}: no such file or folder; expected {expected}")
    return path


def require_library(module: str, reward: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"reward {reward} needs the Python package {module.split('.')[0]!r} ({error}); {EXTRA}") from None


class CLIPAesthetic:
    """LAION linear aesthetic head on L2-normalised CLIP ViT-L/14 image embeddings, /10, frame mean."""

    def __init__(self, clip_folder: Path, head_file: Path, device: str):
        transformers = require_library("transformers", "aq_AES")
        self.model = transformers.CLIPVisionModelWithProjection.from_pretrained(clip_folder).eval().to(device)
        self.processor = transformers.CLIPImageProcessor.from_pretrained(clip_folder)
        state = torch.load(head_file, map_location="cpu", weights_only=True)
        self.head = torch.nn.Linear(self.model.config.projection_dim, 1)
        try:
            self.head.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"{head_file}: not a LAION linear head for embeddings of width "
                             f"{self.model.config.projection_dim} ({error})") from None
        self.head.eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        scores = []
        for frames in to_frames(videos):
            pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"].to(self.device)
            embeds = torch.nn.functional.normalize(self.model(pixel_values=pixels).image_embeds, dim=-1)
            scores.append(float(self.head(embeds).squeeze(-1).mean()) / 10.0)
        return torch.tensor(scores, dtype=torch.float64)


class MUSIQImagingQuality:
    """MUSIQ (SPAQ) per frame, longer side at most 512 px, /100, frame mean."""

    def __init__(self, weights: Path, device: str):
        musiq = require_library("pyiqa.archs.musiq_arch", "iq_IMG")
        self.model = musiq.MUSIQ(pretrained_model_path=str(weights)).eval().to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        scores = []
        for video in videos:
            frames = ((video.transpose(0, 1).float() + 1) / 2).clamp(0, 1).to(self.device)
            longest = max(frames.shape[-2:])
            if longest > MUSIQ_MAX_SIDE:
                size = [round(side * MUSIQ_MAX_SIDE / longest) for side in frames.shape[-2:]]
                frames = torch.nn.functional.interpolate(frames, size=size, mode="bilinear", antialias=True)
            scores.append(float(torch.stack([self.model(f[None]).flatten()[0] for f in frames]).mean()) / 100.0)
        return torch.tensor(scores, dtype=torch.float64)


def build_model_reward(name: str, sources: RewardSources, key: str) -> Reward:
    """The adapter of reward `name` over the local weights in `sources` (config path `key`)."""
    if name == "raft_RAFT":
        return RAFTDynamicDegree(require_path(sources.raft, f"{key}.raft", "VBench's RAFT weights raft-things.pth"),
                                 sources.device)
    if name == "aq_AES":
        clip = require_path(sources.clip, f"{key}.clip", "a CLIP ViT-L/14 folder (transformers save_pretrained)")
        head = require_path(sources.aesthetic_head, f"{key}.aesthetic_head",
                            "the LAION linear aesthetic head sa_0_4_vit_l_14_linear.pth")
        return CLIPAesthetic(clip, head, sources.device)
    if name == "iq_IMG":
        return MUSIQImagingQuality(require_path(sources.musiq, f"{key}.musiq",
                                                "the pyiqa MUSIQ checkpoint trained on SPAQ (musiq_spaq_ckpt-*.pth)"),
                                   sources.device)
    if name == "videoalign_TA":
        checkpoint = require_path(sources.videoalign, f"{key}.videoalign",
                                  "the VideoAlign checkpoint folder (KwaiVGI/VideoReward: model_config.json, "
                                  "checkpoint-<step>/...)")
        base = require_path(sources.videoalign_base, f"{key}.videoalign_base", "a Qwen2-VL-2B-Instruct folder")
        from raven.rewards.videoalign import VideoAlignTextAlignment

        return VideoAlignTextAlignment(checkpoint, base, sources.device, key)
    if name == "ms_MS":
        return AMTMotionSmoothness(require_path(sources.amt, f"{key}.amt", "VBench's AMT-S weights amt-s.pth"),
                                   sources.device)
    raise KeyError(f"unknown reward {name!r}")
