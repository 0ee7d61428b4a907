"""VBench's motion rewards over their published networks (local weights; `raven.models.nets`):

- `raft_RAFT` (dynamic degree): frames kept every round(fps / 8) (~8 fps), pairs of consecutive frames
  through RAFT (raft-things, 20 refinements) on the replicate-padded frames, the flow cropped back; per
  pair the mean of the top 5% flow magnitudes; the mean over pairs.
- `ms_MS` (motion smoothness): the even frames are interpolated at t = 0.5 by AMT-S and compared with the
  odd frames they skip: `1 − mean |odd − interpolated| / 255` over pixels and pairs (uint8 frames; the
  interpolation is truncated to uint8 as VBench does). VBench picks a processing scale from the GPU's
  memory that is 1 for 480×832 videos; here the scale is always 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from raven.models.nets.amt import load_amts
from raven.models.nets.raft import load_raft, pad_to_multiple, unpad

RAFT_FPS = 8.0
RAFT_ITERS = 20
TOP_FRACTION = 0.05
PAIR_BATCH = 8
AMT_MULTIPLE = 16


def frame_stride(fps: float, target_fps: float) -> int:
    """Keep every n-th frame to sample `target_fps` from `fps` (VBench's `round(fps / target)`)."""
    return max(1, round(fps / target_fps))


def to_pixels(video: torch.Tensor) -> torch.Tensor:
    """[3, T, H, W] in [−1, 1] → [T, 3, H, W] float with integer values in [0, 255] (8-bit frames)."""
    return ((video.detach().float() + 1) * 127.5).round().clamp(0, 255).transpose(0, 1)


def top_fraction_mean(magnitude: torch.Tensor, fraction: float = TOP_FRACTION) -> torch.Tensor:
    """[N, H, W] → [N]: the mean of each map's largest `fraction` of values (at least one)."""
    flat = magnitude.flatten(1)
    return flat.topk(max(1, int(fraction * flat.shape[1])), dim=1).values.mean(dim=1)


class RAFTDynamicDegree:
    def __init__(self, weights: Path, device: str):
        self.model = load_raft(weights).to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        stride = frame_stride(fps, RAFT_FPS)
        scores = []
        for video in videos:
            frames, pad = pad_to_multiple(to_pixels(video)[::stride].to(self.device), 8)
            pairs = []
            for start in range(0, len(frames) - 1, PAIR_BATCH):
                first, second = frames[start:start + PAIR_BATCH], frames[start + 1:start + 1 + PAIR_BATCH]
                flow = unpad(self.model(first[:len(second)], second, iters=RAFT_ITERS), pad)
                pairs.append(top_fraction_mean(torch.linalg.vector_norm(flow, dim=1)))
            scores.append(float(torch.cat(pairs).mean()) if pairs else float("nan"))
        return torch.tensor(scores, dtype=torch.float64)


class AMTMotionSmoothness:
    def __init__(self, weights: Path, device: str):
        self.model = load_amts(weights).to(device)
        self.device = device

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor, prompts: Sequence[str], fps: float) -> torch.Tensor:
        scores = []
        for video in videos:
            pixels = to_pixels(video).to(self.device)
            padded, pad = pad_to_multiple(pixels / 255.0, AMT_MULTIPLE)
            evens, odds = padded[0::2], pixels[1::2]
            count = min(len(evens) - 1, len(odds))
            if count < 1:
                scores.append(float("nan"))
                continue
            middle = torch.cat([self.model(evens[i:i + 1], evens[i + 1:i + 2], 0.5) for i in range(count)])
            middle = (unpad(middle, pad) * 255.0).clamp(0, 255).to(torch.uint8).float()
            scores.append(1.0 - float((odds[:count] - middle).abs().mean()) / 255.0)
        return torch.tensor(scores, dtype=torch.float64)
