"""Practical-RIFE IFNet from a flownet.pkl in the released layout (tiny random weights, torch.save)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raven.models.checkpoints import CheckpointError
from raven.models.nets.rife import IFNet, RIFEInterpolator, load_ifnet

WIDTHS = (16, 16, 8, 8, 8)  # narrow blocks; key names and every other shape are the release's


def save(state: dict, path) -> None:
    torch.save({f"module.{k}": v for k, v in state.items()}, path)  # the release keeps DataParallel's prefix


def random_ifnet(seed: int = 0) -> IFNet:
    torch.manual_seed(seed)
    return IFNet(WIDTHS)


def translating_ifnet(shift: float) -> IFNet:
    """Weights that know a translation: every block's last layer is zero except block 0's bias, which
    sets the flows to F_t→0 = (−shift/2, 0), F_t→1 = (+shift/2, 0) and the mask to 0 (an even blend)."""
    net = random_ifnet()
    with torch.no_grad():
        for i in range(len(WIDTHS)):
            last = getattr(net, f"block{i}").lastconv[0]
            last.weight.zero_()
            last.bias.zero_()
        bias = net.block0.lastconv[0].bias.view(-1, 4)  # PixelShuffle(2): channel c <- 4c..4c+3
        bias[0] = -shift / 2 / 16  # block 0 works at 1/16 and multiplies its flow by 16
        bias[2] = shift / 2 / 16
    return net


def textured(height: int, width: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return np.kron(low, np.ones((4, 4, 1), dtype=np.uint8))


def test_flownet_pkl_loads_strictly_and_gives_the_midpoint_of_a_translation(tmp_path):
    path = tmp_path / "flownet.pkl"
    save(translating_ifnet(shift=4).state_dict(), path)
    rife = RIFEInterpolator(path, device="cpu")
    a = textured(48, 72)
    b = np.roll(a, 4, axis=1)  # b(x) = a(x − 4)
    middle = rife(a, b, 0.5)
    assert middle.shape == a.shape and middle.dtype == np.uint8
    np.testing.assert_array_equal(middle[:, 4:-4], np.roll(a, 2, axis=1)[:, 4:-4])  # a(x − 2), away from the border
    save(translating_ifnet(shift=0).state_dict(), path)
    np.testing.assert_array_equal(RIFEInterpolator(path, device="cpu")(a, a, 0.5), a)  # identical frames: unchanged


def test_random_weights_blend_warped_inputs(tmp_path):
    path = tmp_path / "flownet.pkl"
    save(random_ifnet(3).state_dict(), path)
    rife = RIFEInterpolator(path, device="cpu")
    a = textured(40, 56, seed=2)
    b = np.roll(a, 3, axis=0)
    out = rife(a, b, 0.3).astype(int)
    assert out.shape == a.shape
    # bilinear warps with border replication and a sigmoid blend are convex combinations of input pixels
    both = np.concatenate([a, b]).reshape(-1, 3)
    assert (out.reshape(-1, 3) >= both.min(0)).all() and (out.reshape(-1, 3) <= both.max(0)).all()
    still = rife(a, a, 0.5)
    assert np.array_equal(rife(a, a, 0.5), still)  # deterministic


def test_a_flownet_of_another_layout_is_refused_naming_the_key(tmp_path):
    state = random_ifnet().state_dict()
    path = tmp_path / "flownet.pkl"
    save({k: v for k, v in state.items() if k != "encode.cnn1.bias"}, path)
    with pytest.raises(CheckpointError, match=r"flownet.pkl: not a Practical-RIFE.*1 missing keys \['encode.cnn1.bias'\]"):
        load_ifnet(path)
    save({k: v for k, v in state.items() if not k.startswith("block4.")}, path)
    with pytest.raises(ValueError, match=r"4 IFBlocks.*expected 5"):
        load_ifnet(path)


def test_openvid_clips_go_through_rife(tmp_path, smoke_spec):
    from raven.data.options import DataOptions
    from raven.data.shards import ClipReader
    from raven.data.stage import build_clips
    from raven.data.video import write_mp4

    folder = tmp_path / "openvid"
    folder.mkdir()
    write_mp4(folder / "clip.mp4", np.stack([textured(16, 16, seed=s) for s in range(21)]), fps=20)  # 8 fps x 3 = 24: off-grid
    (folder / "OpenVidHD.csv").write_text('video,caption\nclip.mp4,"noise"\n')
    with pytest.raises(ValueError, match="interpolator 'rife' needs rife_path"):
        DataOptions(clip_source="openvid", openvid_path=folder, interpolator="rife")
    save(translating_ifnet(shift=0).state_dict(), tmp_path / "flownet.pkl")
    options = DataOptions(clip_source="openvid", openvid_path=folder, openvid_csv="OpenVidHD.csv",
                          interpolator="rife", rife_path=tmp_path / "flownet.pkl")
    summary = build_clips(smoke_spec, options, None, tmp_path / "clips")
    assert summary["interpolator"] == "rife" and summary["clips"] == 1
    assert next(iter(ClipReader(tmp_path / "clips"))).frames.shape[0] == smoke_spec.video.frames
