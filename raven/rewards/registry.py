"""The reward registry (issue 6, docs/method.md §8, §10): reward names as in the paper's config, each mapping a
batch of videos [B, 3, T, H, W] in [−1, 1] at a known fps (and the prompts) to one float per video.

`RewardSources.kind` picks the implementation of every name: `toy` (weight-free, `raven.rewards.toy`)
or `model` (the paper's reward models from LOCAL weights, `raven.rewards.models`; nothing is
downloaded). A reward that raises or returns NaN for a video gives that video NaN with a logged
warning (`score_videos`); aggregation then leaves the sample out of its group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch

from raven.config import Section
from raven.rewards import toy

log = logging.getLogger(__name__)

REWARD_NAMES = ("videoalign_TA", "raft_RAFT", "ms_MS", "aq_AES", "iq_IMG")


class RewardSources(Section):
    """Where the rewards come from (`stages.<stage>.rewards`). Paths are local files or folders."""

    kind: Literal["toy", "model"] = "toy"
    raft: Path | None = None  # RAFT state dict in the princeton-vl layout (VBench's raft-things.pth)
    amt: Path | None = None  # AMT-S state dict (VBench's amt-s.pth)
    videoalign: Path | None = None  # VideoAlign checkpoint folder (LoRA adapter + non_lora_state_dict.pth)
    videoalign_base: Path | None = None  # Qwen2-VL-2B-Instruct folder (transformers)
    clip: Path | None = None  # CLIP ViT-L/14 folder (transformers CLIPVisionModelWithProjection)
    aesthetic_head: Path | None = None  # LAION linear aesthetic head (sa_0_4_vit_l_14_linear.pth)
    musiq: Path | None = None  # pyiqa MUSIQ checkpoint trained on SPAQ (musiq_spaq_ckpt-*.pth)
    device: str = "cpu"


class Reward(Protocol):
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        """videos [B, 3, T, H, W] in [−1, 1] → [B] float64."""


def to_frames(videos: torch.Tensor) -> np.ndarray:
    """[B, 3, T, H, W] in [−1, 1] → uint8 [B, T, H, W, 3] (the toy world's pixel convention)."""
    from raven.world.render import to_uint8

    return to_uint8(videos.detach().float().cpu().numpy())


@dataclass(frozen=True)
class PerVideoReward:
    """A reward computed one uint8 video [T, H, W, 3] at a time."""

    name: str
    score: Callable[[np.ndarray, str, float], float]

    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        frames = to_frames(videos)
        return torch.tensor([self.score(v, p, fps) for v, p in zip(frames, prompts)], dtype=torch.float64)


TOY_REWARDS: dict[str, Callable[[np.ndarray, str, float], float]] = {
    "videoalign_TA": toy.toy_text_alignment,
    "raft_RAFT": toy.toy_dynamic_degree,
    "ms_MS": toy.toy_motion_smoothness,
    "aq_AES": toy.toy_aesthetic,
    "iq_IMG": toy.toy_imaging_quality,
}


def build_reward(name: str, sources: RewardSources, key: str = "rewards") -> Reward:
    """The reward `name` from `sources`; `key` is the config path of `sources` for error messages."""
    if name not in REWARD_NAMES:
        raise KeyError(f"unknown reward {name!r}; the registry has {list(REWARD_NAMES)}")
    if sources.kind == "toy":
        return PerVideoReward(name, TOY_REWARDS[name])
    from raven.rewards import models

    return models.build_model_reward(name, sources, key)


def build_rewards(names: Sequence[str], sources: RewardSources, key: str = "rewards") -> dict[str, Reward]:
    return {name: build_reward(name, sources, key) for name in names}


def score_one_by_one(name: str, reward: Reward, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
    """Per-video calls after a batch failed: a video whose call raises gets NaN."""
    scores = []
    for i, prompt in enumerate(prompts):
        try:
            scores.append(float(reward(videos[i : i + 1], [prompt], fps)[0]))
        except Exception as error:  # noqa: BLE001 - any failure of a reward model excludes the sample
            log.warning("reward %s failed on video %d (prompt %r): %s; the sample is excluded", name, i, prompt, error)
            scores.append(float("nan"))
    return torch.tensor(scores, dtype=torch.float64)


def score_videos(rewards: Mapping[str, Reward], videos: torch.Tensor, prompts: Sequence[str], fps: float) -> dict[str, torch.Tensor]:
    """Every reward on the batch, [B] float64 each; failures and NaNs become NaN entries with a warning."""
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos for {len(prompts)} prompts")
    scores = {}
    for name, reward in rewards.items():
        try:
            values = reward(videos, prompts, fps).double().cpu()
        except Exception as error:  # noqa: BLE001
            log.warning("reward %s failed on the batch (%s); scoring its videos one by one", name, error)
            values = score_one_by_one(name, reward, videos, prompts, fps)
        for i in torch.flatten(torch.nonzero(~torch.isfinite(values))).tolist():
            log.warning("reward %s is not finite for video %d (prompt %r); the sample is excluded", name, i, prompts[i])
        scores[name] = values
    return scores
