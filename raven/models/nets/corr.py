"""RAFT's all-pairs correlation pyramid and its windowed lookup (shared by RAFT and AMT-S)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def coords_grid(batch: int, height: int, width: int, device: torch.device | str) -> torch.Tensor:
    """Pixel coordinates [B, 2, H, W], channel 0 = x, channel 1 = y."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device), torch.arange(width, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].repeat(batch, 1, 1, 1)


def sample_pixels(image: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of `image` [N, C, H, W] at pixel coordinates `coords` [N, h, w, 2] (x, y); zeros outside."""
    height, width = image.shape[-2:]
    x, y = coords.split(1, dim=-1)
    grid = torch.cat([2 * x / (width - 1) - 1, 2 * y / (height - 1) - 1], dim=-1)
    return F.grid_sample(image, grid, align_corners=True)


def correlation(fmap0: torch.Tensor, fmap1: torch.Tensor) -> torch.Tensor:
    """All-pairs feature dot products / sqrt(C): [B, C, H, W] × 2 → [B, H, W, H, W]."""
    batch, dim, height, width = fmap0.shape
    corr = torch.matmul(fmap0.reshape(batch, dim, -1).transpose(1, 2), fmap1.reshape(batch, dim, -1))
    return corr.view(batch, height, width, height, width) / dim ** 0.5


class CorrPyramid:
    """The correlation volume [B·H·W, 1, H, W] average-pooled into `levels` levels; `lookup(coords)` reads a
    (2r+1)² window around each pixel's target at every level: [B, levels·(2r+1)², H, W]. The window offsets
    are stacked (dy, dx) and added to (x, y) coordinates, as in the released RAFT; the trained weights
    expect that ordering."""

    def __init__(self, volume: torch.Tensor, levels: int, radius: int):
        batch, height, width = volume.shape[:3]
        if min(volume.shape[3:]) >> (levels - 1) < 2:
            raise ValueError(f"features of {tuple(volume.shape[3:])} px are too small for a {levels}-level correlation "
                             f"pyramid (its coarsest level needs 2 px): frames must be at least {8 * (2 << (levels - 1))} px a side")
        self.shape, self.radius = (batch, height, width), radius
        corr = volume.reshape(batch * height * width, 1, *volume.shape[3:])
        self.pyramid = [corr]
        for _ in range(levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        batch, height, width = self.shape
        r = self.radius
        offsets = torch.linspace(-r, r, 2 * r + 1, device=coords.device)
        delta = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1).view(1, 2 * r + 1, 2 * r + 1, 2)
        centre = coords.permute(0, 2, 3, 1).reshape(batch * height * width, 1, 1, 2)
        out = [sample_pixels(corr, centre / 2 ** level + delta).view(batch, height, width, -1)
               for level, corr in enumerate(self.pyramid)]
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous().float()
