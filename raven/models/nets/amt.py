"""AMT-S (Li et al. 2023, "AMT: All-Pairs Multi-Field Transforms"; MCG-NKU/AMT `networks/AMT-S.py`, the
network VBench's motion smoothness runs) in the released state-dict layout, so `amt-s.pth` loads strictly.

A RAFT-style small feature encoder feeds a bidirectional correlation pyramid (4 levels, radius 3); an
IFRNet-style pyramid encoder/decoder predicts the flows from the middle frame to both inputs coarse to
fine, each level corrected by an update block that looks the flows up in the correlation; the last
decoder predicts 3 flow pairs, blend masks and residuals, merged by `comb_block`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from raven.models.nets.corr import CorrPyramid, coords_grid, correlation
from raven.models.nets.load import load_published
from raven.models.nets.rife import flow_warp

CHANNELS = (20, 32, 44, 56)
SKIP = 20
NUM_FLOWS = 3
CORR_LEVELS, CORR_RADIUS = 4, 3


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


def convrelu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding), nn.PReLU(c_out))


class Bottleneck(nn.Module):
    """RAFT's bottleneck block with instance norm (no parameters in the norms)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out // 4, 1)
        self.conv2 = nn.Conv2d(c_out // 4, c_out // 4, 3, stride, 1)
        self.conv3 = nn.Conv2d(c_out // 4, c_out, 1)
        self.norm1, self.norm2, self.norm3 = (nn.InstanceNorm2d(c) for c in (c_out // 4, c_out // 4, c_out))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None if stride == 1 else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride), nn.InstanceNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        y = self.relu(self.norm3(self.conv3(y)))
        return self.relu((x if self.downsample is None else self.downsample(x)) + y)


class SmallEncoder(nn.Module):
    def __init__(self, output_dim: int = 84):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3)
        self.norm1 = nn.InstanceNorm2d(32)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck(32, 32, 1), Bottleneck(32, 32, 1))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, 2), Bottleneck(64, 64, 1))
        self.layer3 = nn.Sequential(Bottleneck(64, 96, 2), Bottleneck(96, 96, 1))
        self.conv2 = nn.Conv2d(96, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class ResBlock(nn.Module):
    """IFRNet's residual block: the last `side` channels get extra convolutions."""

    def __init__(self, c: int, side: int):
        super().__init__()
        self.side = side
        self.conv1, self.conv3 = convrelu(c, c), convrelu(c, c)
        self.conv2, self.conv4 = convrelu(side, side), convrelu(side, side)
        self.conv5 = nn.Conv2d(c, c, 3, 1, 1)
        self.prelu = nn.PReLU(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.conv3(torch.cat([out[:, :-self.side], self.conv2(out[:, -self.side:])], 1))
        out = self.conv5(torch.cat([out[:, :-self.side], self.conv4(out[:, -self.side:])], 1))
        return self.prelu(x + out)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        previous = 3
        for i, c in enumerate(CHANNELS, 1):
            self.add_module(f"pyramid{i}", nn.Sequential(convrelu(previous, c, 3, 2, 1), convrelu(c, c)))
            previous = c

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i in range(len(CHANNELS)):
            x = getattr(self, f"pyramid{i + 1}")(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """`first`: from both inputs' coarsest features and t; otherwise from the previous level's features,
    both inputs' features warped by the previous flows, and those flows."""

    def __init__(self, c_in: int, c_out: int, first: bool):
        super().__init__()
        wide = c_in * 2 if first else c_in * 3
        self.first = first
        self.convblock = nn.Sequential(convrelu(c_in * 2 + 1 if first else c_in * 3 + 4, wide), ResBlock(wide, SKIP),
                                       nn.ConvTranspose2d(wide, c_out, 4, 2, 1))

    def forward(self, ft, f0, f1, flow0, flow1):
        if self.first:
            return self.convblock(torch.cat([f0, f1, ft.repeat(1, 1, *f0.shape[2:])], 1))
        return self.convblock(torch.cat([ft, flow_warp(f0, flow0), flow_warp(f1, flow1), flow0, flow1], 1))


class UpdateBlock(nn.Module):
    """AMT's small update block: a flow/feature correction from the correlation looked up along the flows."""

    def __init__(self, cdim: int, scale: int | None, hidden: int = 76, flow_dim: int = 20, corr_dim: int = 64, fc_dim: int = 68):
        super().__init__()
        planes = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.scale = scale
        self.convc1 = nn.Conv2d(2 * planes, corr_dim, 1)
        self.convf1 = nn.Conv2d(4, flow_dim * 2, 7, padding=3)
        self.convf2 = nn.Conv2d(flow_dim * 2, flow_dim, 3, padding=1)
        self.conv = nn.Conv2d(corr_dim + flow_dim, fc_dim, 3, padding=1)

        def two_convs(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, hidden, 3, padding=1), nn.LeakyReLU(0.1, True),
                                 nn.Conv2d(hidden, c_out, 3, padding=1))

        self.gru = two_convs(fc_dim + 4 + cdim, hidden)
        self.feat_head = two_convs(hidden, cdim)
        self.flow_head = two_convs(hidden, 4)
        self.lrelu = nn.LeakyReLU(0.1, True)

    def forward(self, net, flow, corr):
        net = resize(net, 1 / self.scale) if self.scale is not None else net
        cor = self.lrelu(self.convc1(corr))
        flo = self.lrelu(self.convf2(self.lrelu(self.convf1(flow))))
        out = self.gru(torch.cat([self.lrelu(self.conv(torch.cat([cor, flo], 1))), flow, net], 1))
        delta_net, delta_flow = self.feat_head(out), self.flow_head(out)
        if self.scale is not None:
            delta_net, delta_flow = resize(delta_net, self.scale), self.scale * resize(delta_flow, self.scale)
        return delta_net, delta_flow


class AMTS(nn.Module):
    def __init__(self):
        super().__init__()
        c = CHANNELS
        self.feat_encoder = SmallEncoder(84)
        self.encoder = Encoder()
        self.decoder4 = Decoder(c[3], c[2] + 4, first=True)
        self.decoder3 = Decoder(c[2], c[1] + 4, first=False)
        self.decoder2 = Decoder(c[1], c[0] + 4, first=False)
        self.decoder1 = Decoder(c[0], 8 * NUM_FLOWS, first=False)
        self.update4, self.update3, self.update2 = UpdateBlock(44, None), UpdateBlock(32, 2), UpdateBlock(20, 4)
        self.comb_block = nn.Sequential(nn.Conv2d(3 * NUM_FLOWS, 6 * NUM_FLOWS, 3, 1, 1), nn.PReLU(6 * NUM_FLOWS),
                                        nn.Conv2d(6 * NUM_FLOWS, 3, 3, 1, 1))

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: float = 0.5) -> torch.Tensor:
        """Frames [B, 3, H, W] in [0, 1] (H, W multiples of 16) → the frame at time t, in [0, 1]."""
        mean = torch.cat([img0, img1], 2).mean((1, 2, 3), keepdim=True)
        img0, img1 = img0 - mean, img1 - mean
        embt = torch.full_like(mean, t)
        fmap0, fmap1 = self.feat_encoder(torch.cat([img0, img1])).chunk(2)
        volume = correlation(fmap0, fmap1)
        forward = CorrPyramid(volume, CORR_LEVELS, CORR_RADIUS)
        backward = CorrPyramid(volume.permute(0, 3, 4, 1, 2), CORR_LEVELS, CORR_RADIUS)
        coord = coords_grid(img0.shape[0], *fmap0.shape[2:], img0.device)
        f0, f1 = self.encoder(img0), self.encoder(img1)

        out = self.decoder4(embt, f0[3], f1[3], None, None)
        flow0, flow1, ft = out[:, :2], out[:, 2:4], out[:, 4:]
        for level, update, decoder in ((1, self.update4, self.decoder3), (2, self.update3, self.decoder2),
                                       (4, self.update2, None)):
            small0, small1 = (flow0, flow1) if level == 1 else (resize(flow0, 1 / level) / level, resize(flow1, 1 / level) / level)
            # linear motion: the flow t→1 scaled by 1/t reaches frame 1 from frame 0, t→0 by 1/(1−t) the reverse
            corr = torch.cat([forward.lookup(coord + small1 / t), backward.lookup(coord + small0 / (1 - t))], 1)
            delta_ft, delta_flow = update(ft, torch.cat([small0, small1], 1), corr)
            flow0, flow1, ft = flow0 + delta_flow[:, :2], flow1 + delta_flow[:, 2:], ft + delta_ft
            if decoder is not None:
                index = {1: 2, 2: 1}[level]
                out = decoder(ft, f0[index], f1[index], flow0, flow1)
                flow0 = out[:, :2] + 2.0 * resize(flow0, 2.0)
                flow1 = out[:, 2:4] + 2.0 * resize(flow1, 2.0)
                ft = out[:, 4:]

        out = self.decoder1(ft, f0[0], f1[0], flow0, flow1)
        n = NUM_FLOWS
        delta0, delta1, mask, residual = torch.split(out, [2 * n, 2 * n, n, 3 * n], 1)
        flows0 = delta0 + 2.0 * resize(flow0, 2.0).repeat(1, n, 1, 1)
        flows1 = delta1 + 2.0 * resize(flow1, 2.0).repeat(1, n, 1, 1)
        return torch.clamp(self.combine(img0, img1, flows0, flows1, torch.sigmoid(mask), residual, mean), 0, 1)

    def combine(self, img0, img1, flows0, flows1, mask, residual, mean):
        """Warp both frames by each of the flow pairs, blend by the masks, add residual and mean; merge."""
        batch, _, height, width = flows0.shape
        n = NUM_FLOWS

        def per_flow(x: torch.Tensor, channels: int) -> torch.Tensor:
            return x.reshape(batch * n, channels, height, width)

        frames0, frames1 = (x.unsqueeze(1).expand(-1, n, -1, -1, -1).reshape(batch * n, 3, height, width) for x in (img0, img1))
        m = per_flow(mask, 1)
        warps = m * flow_warp(frames0, per_flow(flows0, 2)) + (1 - m) * flow_warp(frames1, per_flow(flows1, 2))
        warps = (warps + mean.repeat_interleave(n, 0) + per_flow(residual, 3)).reshape(batch, n, 3, height, width)
        return warps.mean(1) + self.comb_block(warps.reshape(batch, n * 3, height, width))


def load_amts(path: str | Path) -> AMTS:
    return load_published(AMTS(), path, "an AMT-S state dict (MCG-NKU/AMT layout, e.g. VBench's amt-s.pth)")
