"""Temporal resampling with the optical-flow interpolator; centre crop + resize."""

import numpy as np

from raven.data.resample import centre_crop_resize, flow_interpolate, resample_fps
from raven.world.render import render


def _crossfade(a, b, f):
    return np.rint((1 - f) * a + f * b).astype(np.uint8)


def test_resampling_keeps_grid_frames_and_flow_beats_crossfade():
    prompt = "blue circle down-right fast on grey"
    low, high = render(prompt, 0, 16, 16, 5, fps=4), render(prompt, 0, 16, 16, 9, fps=8)
    flow = resample_fps(low, 4, 8)
    assert flow.shape == high.shape
    assert np.array_equal(flow[::2], low)  # frames on the source grid are copied
    flow_error = np.abs(flow[1::2].astype(int) - high[1::2]).mean()
    fade_error = np.abs(resample_fps(low, 4, 8, _crossfade)[1::2].astype(int) - high[1::2]).mean()
    assert flow_error < 0.5 * fade_error


def test_downsampling_picks_frames_and_a_still_pair_interpolates_to_itself():
    frames = np.stack([np.full((4, 4, 3), 10 * i, np.uint8) for i in range(9)])
    np.testing.assert_array_equal(resample_fps(frames, 8, 4), frames[::2])
    still = render("red square still on black", 0, 16, 16, 1)[0]
    assert np.array_equal(flow_interpolate(still, still, 0.3), still)


def test_centre_crop_resize():
    frames = np.zeros((2, 4, 8, 3), np.uint8)
    frames[:, :, 2:6] = 200  # the centre 4x4 square
    out = centre_crop_resize(frames, 4, 4)
    assert out.shape == (2, 4, 4, 3) and (out == 200).all()
    assert centre_crop_resize(frames, 2, 4).shape == (2, 2, 4, 3)


def test_upsample_to_48_then_stride_3_computes_only_the_kept_frames():
    frames = np.stack([np.full((2, 2, 3), 7 * i, np.uint8) for i in range(13)])  # 0.5 s at 24 fps
    calls = []

    def counting(a, b, f):
        calls.append(f)
        return _crossfade(a, b, f)

    every = resample_fps(frames, 24, 48, _crossfade)
    kept = resample_fps(frames, 24, 48, counting, keep_every=3)
    np.testing.assert_array_equal(kept, every[::3])  # 48 fps, every third frame: 16 fps
    assert len(kept) == 9 and len(calls) == 4  # times k/16: half of them fall between source frames
