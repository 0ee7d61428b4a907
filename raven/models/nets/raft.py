"""RAFT (Teed & Deng 2020; princeton-vl/RAFT `core/raft.py`, the full model) in the released state-dict
layout, so VBench's `raft-things.pth` loads strictly (its `module.` prefix is dropped by the loader).

Feature encoder (instance norm) and context encoder (batch norm) at 1/8 resolution, a 4-level
correlation pyramid of radius 4, and a separable ConvGRU update block that refines the flow for
`iters` steps; the flow is upsampled ×8 with the learned convex mask. Images are [B, 3, H, W] with
values in [0, 255] and H, W multiples of 8 (VBench pads with replicated borders, see `pad_to_multiple`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from raven.models.nets.corr import CorrPyramid, coords_grid, correlation
from raven.models.nets.load import load_published

HIDDEN, CONTEXT = 128, 128
CORR_LEVELS, CORR_RADIUS = 4, 4


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: str, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)
        make = (lambda: nn.BatchNorm2d(c_out)) if norm == "batch" else (lambda: nn.InstanceNorm2d(c_out))
        self.norm1, self.norm2 = make(), make()
        self.downsample = None
        if stride != 1:
            self.norm3 = make()
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), self.norm3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        return self.relu((x if self.downsample is None else self.downsample(x)) + y)


class BasicEncoder(nn.Module):
    def __init__(self, output_dim: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3)
        self.norm1 = nn.BatchNorm2d(64) if norm == "batch" else nn.InstanceNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        layers, c_in = [], 64
        for c_out, stride in ((64, 1), (96, 2), (128, 2)):
            layers.append(nn.Sequential(ResidualBlock(c_in, c_out, norm, stride), ResidualBlock(c_out, c_out, norm, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3 = layers
        self.conv2 = nn.Conv2d(128, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class MotionEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        planes = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(planes, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], 1))), flow], 1)


class SepConvGRU(nn.Module):
    def __init__(self, hidden: int, inputs: int):
        super().__init__()
        for axis, kernel, padding in (("1", (1, 5), (0, 2)), ("2", (5, 1), (2, 0))):
            for gate in "zrq":
                self.add_module(f"conv{gate}{axis}", nn.Conv2d(hidden + inputs, hidden, kernel, padding=padding))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        for axis in "12":
            hx = torch.cat([h, x], 1)
            z = torch.sigmoid(getattr(self, f"convz{axis}")(hx))
            r = torch.sigmoid(getattr(self, f"convr{axis}")(hx))
            q = torch.tanh(getattr(self, f"convq{axis}")(torch.cat([r * h, x], 1)))
            h = (1 - z) * h + z * q
        return h


class FlowHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(HIDDEN, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 2, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = MotionEncoder()
        self.gru = SepConvGRU(HIDDEN, 128 + CONTEXT)
        self.flow_head = FlowHead()
        self.mask = nn.Sequential(nn.Conv2d(HIDDEN, 256, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], 1))
        return net, 0.25 * self.mask(net), self.flow_head(net)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, 2, H, W] flow → [B, 2, 8H, 8W]: each fine pixel a softmax-weighted mix of its 3×3 coarse neighbours."""
    batch, _, height, width = flow.shape
    mask = torch.softmax(mask.view(batch, 1, 9, 8, 8, height, width), dim=2)
    patches = F.unfold(8 * flow, [3, 3], padding=1).view(batch, 2, 9, 1, 1, height, width)
    up = torch.sum(mask * patches, dim=2).permute(0, 1, 4, 2, 5, 3)
    return up.reshape(batch, 2, 8 * height, 8 * width)


class RAFT(nn.Module):
    def __init__(self):
        super().__init__()
        self.fnet = BasicEncoder(256, "instance")
        self.cnet = BasicEncoder(HIDDEN + CONTEXT, "batch")
        self.update_block = UpdateBlock()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 20) -> torch.Tensor:
        """The flow from image1 to image2, [B, 2, H, W] in pixels, after `iters` refinements."""
        image1, image2 = 2 * (image1 / 255.0) - 1, 2 * (image2 / 255.0) - 1
        fmap1, fmap2 = self.fnet(torch.cat([image1, image2])).float().chunk(2)
        corr = CorrPyramid(correlation(fmap1, fmap2), CORR_LEVELS, CORR_RADIUS)
        net, inp = torch.split(self.cnet(image1), [HIDDEN, CONTEXT], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)
        batch, _, height, width = fmap1.shape
        coords0 = coords_grid(batch, height, width, image1.device)
        coords1 = coords0.clone()
        for _ in range(iters):
            net, mask, delta = self.update_block(net, inp, corr.lookup(coords1), coords1 - coords0)
            coords1 = coords1 + delta
        return convex_upsample(coords1 - coords0, mask)


def load_raft(path: str | Path) -> RAFT:
    return load_published(RAFT(), path, "a RAFT state dict (princeton-vl layout, e.g. VBench's raft-things.pth)")


def pad_to_multiple(frames: torch.Tensor, multiple: int = 8) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """[T, 3, H, W] padded (replicate, split evenly: RAFT's InputPadder) so H and W divide by `multiple`;
    returns the padded frames and the (left, right, top, bottom) padding to crop the flow back."""
    height, width = frames.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
    return F.pad(frames, pad, mode="replicate"), pad


def unpad(tensor: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    height, width = tensor.shape[-2:]
    return tensor[..., top: height - bottom, left: width - right]
