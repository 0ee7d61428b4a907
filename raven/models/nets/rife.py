"""Practical-RIFE v4.25/v4.26 IFNet (hzwer/Practical-RIFE `train_log/IFNet_HDv3.py`), in the released
`flownet.pkl` layout, and a frame interpolator over it (docs/method.md §11: OpenVid upsampled with RIFE).

The network: a feature head (`encode`, 16 channels at full resolution) and five IFBlocks at scales
16, 8, 4, 2, 1 that refine a bidirectional flow (4 channels), a blend mask and 8 feature channels;
the frame at time t is `sigmoid(mask)·warp(I0, F_t→0) + (1 − sigmoid(mask))·warp(I1, F_t→1)`.
Block widths are read from the state dict (the releases differ only in them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raven.models.nets.load import load_published, read_published

SCALES = (16, 8, 4, 2, 1)
PAD = 64  # H and W padded to a multiple of this (block 0 works at 1/16, then strides by 4)
HEAD_CHANNELS = 16
FEATURE_CHANNELS = 8  # per-block features passed on (13 outputs = 4 flow + 1 mask + 8 features)


def flow_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: output(x) = image(x + flow(x)), bilinear, border replicated (RIFE's and AMT's warp)."""
    batch, _, height, width = flow.shape
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device).view(1, 1, 1, width).expand(batch, -1, height, -1)
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device).view(1, 1, height, 1).expand(batch, -1, -1, width)
    grid = torch.cat([xs, ys], 1) + torch.cat([flow[:, :1] / ((width - 1.0) / 2.0), flow[:, 1:2] / ((height - 1.0) / 2.0)], 1)
    return F.grid_sample(image, grid.permute(0, 2, 3, 1).to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=True)


def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.LeakyReLU(0.2, True))


class Head(nn.Module):
    """16-channel features at full resolution."""

    def __init__(self):
        super().__init__()
        self.cnn0 = nn.Conv2d(3, 16, 3, 2, 1)
        self.cnn1 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn2 = nn.Conv2d(16, 16, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(16, HEAD_CHANNELS, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        return self.cnn3(self.relu(self.cnn2(x)))


class ResConv(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    def __init__(self, c_in: int, c: int):
        super().__init__()
        self.conv0 = nn.Sequential(conv(c_in, c // 2, 2), conv(c // 2, c, 2))
        self.convblock = nn.Sequential(*[ResConv(c) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * (5 + FEATURE_CHANNELS), 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float):
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        out = self.lastconv(self.convblock(self.conv0(x)))
        out = F.interpolate(out, scale_factor=scale, mode="bilinear", align_corners=False)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


class IFNet(nn.Module):
    def __init__(self, widths: tuple[int, ...] = (192, 128, 96, 64, 32)):
        super().__init__()
        first = 6 + 2 * HEAD_CHANNELS + 1
        later = first + 1 + FEATURE_CHANNELS + 4
        for i, width in enumerate(widths):
            self.add_module(f"block{i}", IFBlock(first if i == 0 else later, width))
        self.encode = Head()
        self.blocks = len(widths)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float) -> torch.Tensor:
        """Frames [B, 3, H, W] in [0, 1] (H, W multiples of `PAD`) → the frame at `timestep` ∈ (0, 1)."""
        t = torch.full_like(img0[:, :1], timestep)
        f0, f1 = self.encode(img0), self.encode(img1)
        warped0, warped1, flow, mask, feat = img0, img1, None, None, None
        for i in range(self.blocks):
            block = getattr(self, f"block{i}")
            if flow is None:
                flow, mask, feat = block(torch.cat((img0, img1, f0, f1, t), 1), None, SCALES[i])
            else:
                wf0, wf1 = flow_warp(f0, flow[:, :2]), flow_warp(f1, flow[:, 2:4])
                delta, mask, feat = block(torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1), flow, SCALES[i])
                flow = flow + delta
            warped0, warped1 = flow_warp(img0, flow[:, :2]), flow_warp(img1, flow[:, 2:4])
        mask = torch.sigmoid(mask)
        return warped0 * mask + warped1 * (1 - mask)


def load_ifnet(path: str | Path) -> IFNet:
    """IFNet from a Practical-RIFE `flownet.pkl` (v4.25/v4.26 layout), strict, weights only."""
    what = "a Practical-RIFE v4.25/v4.26 flownet.pkl"
    state = read_published(path, what)
    widths, i = [], 0
    while f"block{i}.conv0.1.0.weight" in state:
        widths.append(int(state[f"block{i}.conv0.1.0.weight"].shape[0]))
        i += 1
    if len(widths) != len(SCALES):
        raise ValueError(f"{path}: {len(widths)} IFBlocks (block<i>.conv0.1.0.weight), expected {len(SCALES)}; "
                         "only Practical-RIFE v4.25/v4.26 flownet.pkl files are supported")
    return load_published(IFNet(tuple(widths)), path, what, state)


class RIFEInterpolator:
    """`(a, b, fraction) -> frame` over uint8 [H, W, 3] frames (the `raven.data.resample` interpolator);
    on the GPU when one is available. Frames are zero-padded right/bottom to a multiple of 64."""

    def __init__(self, path: str | Path, device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_ifnet(path).to(self.device)

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
        height, width = a.shape[:2]
        pad = (0, (-width) % PAD, 0, (-height) % PAD)
        frames = [F.pad(torch.from_numpy(np.ascontiguousarray(x)).to(self.device).permute(2, 0, 1)[None].float() / 255, pad)
                  for x in (a, b)]
        out = self.model(frames[0], frames[1], float(fraction))[0, :, :height, :width]
        return (out * 255).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
