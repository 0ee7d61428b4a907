"""RAFT (raft-things) and AMT-S from torch.save files in their released layouts, with random weights and
with weights constructed so that the answer is known; the dynamic-degree and motion-smoothness rewards.

What random weights cannot check: that the flows are right (they need the trained weights). What is
checked: strict loading of the released key names and shapes (DataParallel's `module.` prefix, AMT's
`state_dict` wrapper), the correlation lookup's window layout against a known shift, the convex
upsampling, the reward pipelines on known answers (zero motion → dynamic degree 0; a static or
alternating clip → motion smoothness 1 or 1 − |a − b|/255)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raven.models.checkpoints import CheckpointError
from raven.models.nets.amt import AMTS, load_amts
from raven.models.nets.corr import CorrPyramid, correlation
from raven.models.nets.raft import RAFT, convex_upsample, load_raft
from raven.rewards import RewardSources, build_reward

SIZE = 128  # the 4-level correlation pyramids need 128 px frames (2 px at the coarsest level)


def video_of(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] → [1, 3, T, H, W] in [−1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1


def textured(seed: int = 0) -> np.ndarray:
    low = np.random.default_rng(seed).integers(0, 256, (SIZE // 8, SIZE // 8, 3), dtype=np.uint8)
    return np.kron(low, np.ones((8, 8, 1), dtype=np.uint8))


def test_correlation_window_peaks_at_the_shift():
    torch.manual_seed(0)
    fmap1 = torch.randn(1, 64, 16, 16)
    fmap2 = torch.roll(fmap1, shifts=(1, 2), dims=(2, 3))  # moved 2 px right, 1 px down
    window = CorrPyramid(correlation(fmap1, fmap2), levels=1, radius=3).lookup(
        torch.stack(torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="xy"))[None])
    r = 3
    assert window.shape == (1, (2 * r + 1) ** 2, 16, 16)
    # the released layout: the x offset is the slow index of the window, the y offset the fast one
    assert int(window[0, :, 8, 8].argmax()) == (r + 2) * (2 * r + 1) + (r + 1)


def test_convex_upsampling_of_a_constant_flow_is_eight_times_it():
    flow = torch.full((1, 2, 3, 4), 0.5)
    up = convex_upsample(flow, torch.randn(1, 64 * 9, 3, 4))
    assert up.shape == (1, 2, 24, 32)
    torch.testing.assert_close(up[..., 8:16, 8:24], torch.full_like(up[..., 8:16, 8:24], 4.0))


def save_raft(model: RAFT, path) -> None:
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)  # VBench's DataParallel keys


def test_raft_things_layout_loads_strictly_and_gives_full_resolution_flow(tmp_path):
    torch.manual_seed(0)
    reference = RAFT()
    save_raft(reference, tmp_path / "raft-things.pth")
    model = load_raft(tmp_path / "raft-things.pth")
    image = torch.from_numpy(textured()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        flow = model(image, torch.roll(image, 3, dims=3), iters=2)
    assert flow.shape == (1, 2, SIZE, SIZE) and torch.isfinite(flow).all()
    state = reference.state_dict()
    del state["update_block.gru.convq2.bias"]
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match=r"other.pth: not a RAFT state dict.*\['update_block.gru.convq2.bias'\]"):
        load_raft(tmp_path / "other.pth")


def test_dynamic_degree_of_zero_motion_is_zero_and_random_weights_score(tmp_path):
    torch.manual_seed(0)
    model = RAFT()
    save_raft(model, tmp_path / "random.pth")
    with torch.no_grad():  # a flow head that never moves: every flow is exactly zero
        model.update_block.flow_head.conv2.weight.zero_()
        model.update_block.flow_head.conv2.bias.zero_()
    save_raft(model, tmp_path / "still.pth")
    frames = np.stack([np.roll(textured(), 4 * t, axis=1) for t in range(3)])[:, :, :124]  # padded back to 128
    for weights, check in (("still.pth", lambda s: s == 0.0), ("random.pth", lambda s: np.isfinite(s) and s > 0)):
        reward = build_reward("raft_RAFT", RewardSources(kind="model", raft=tmp_path / weights), "rewards")
        assert check(float(reward(video_of(frames), ["x"], 8.0)[0]))


def zero_flow_amts() -> AMTS:
    """Random AMT-S whose flow, feature, mask and residual outputs are zeroed: it blends the two inputs evenly."""
    torch.manual_seed(0)
    model = AMTS()
    with torch.no_grad():
        layers = [model.decoder4.convblock[2], model.decoder3.convblock[2], model.decoder2.convblock[2],
                  model.decoder1.convblock[2], model.comb_block[2]]
        layers += [getattr(model, f"update{i}").flow_head[2] for i in (4, 3, 2)]
        layers += [getattr(model, f"update{i}").feat_head[2] for i in (4, 3, 2)]
        for layer in layers:
            layer.weight.zero_()
            layer.bias.zero_()
    return model


def test_amt_s_layout_loads_strictly_from_its_state_dict_wrapper(tmp_path):
    torch.manual_seed(0)
    state = AMTS().state_dict()
    torch.save({"state_dict": state}, tmp_path / "amt-s.pth")  # the release wraps the weights
    model = load_amts(tmp_path / "amt-s.pth")
    image = torch.from_numpy(textured()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = model(image, torch.roll(image, 2, dims=3), 0.5)
    assert out.shape == image.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "comb_block.1.weight"}}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=r"bad.pth: not an AMT-S.*\['comb_block.1.weight'\]"):
        load_amts(tmp_path / "bad.pth")


def test_motion_smoothness_of_static_and_alternating_clips(tmp_path):
    torch.save({"state_dict": zero_flow_amts().state_dict()}, tmp_path / "amt-s.pth")
    reward = build_reward("ms_MS", RewardSources(kind="model", amt=tmp_path / "amt-s.pth"), "rewards")
    still = np.stack([textured()] * 5)[:, :, :124]
    flicker = np.stack([np.full((SIZE, SIZE, 3), 100 if t % 2 == 0 else 160, np.uint8) for t in range(5)])
    # uint8 truncation of the interpolated frame may lose at most one level per pixel
    assert 1 - 1 / 255 <= float(reward(video_of(still), ["x"], 16.0)[0]) <= 1.0
    assert 1 - 61 / 255 <= float(reward(video_of(flicker), ["y"], 16.0)[0]) <= 1 - 60 / 255
