"""Temporal resampling through a frame interpolator, and centre crop + resize (docs/method.md §11).

The paper upsamples OpenVid-HD to 48 fps with RIFE and keeps every third frame (16 fps):
`resample_fps(frames, fps, 48, rife, keep_every=3)` computes exactly the kept frames. Interpolators:
`flow_interpolate` here (weight-free, CPU: OpenCV Farneback optical flow both ways, each neighbour
warped to the intermediate time and blended by distance; the toy scales), and Practical-RIFE
(`raven.models.nets.rife.RIFEInterpolator`, local weights, on the GPU when there is one; the paper scale).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

Interpolator = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    grey_a = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    grey_b = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    levels = max(1, int(np.log2(max(min(a.shape[:2]) / 8, 1))) + 1)
    return cv2.calcOpticalFlowFarneback(grey_a, grey_b, None, 0.5, levels, 5, 3, 5, 1.1, 0)


def _warp(image: np.ndarray, flow: np.ndarray, amount: float) -> np.ndarray:
    """Sample `image` at x + amount * flow(x) (backward warp, border replicated)."""
    height, width = image.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = grid_x + amount * flow[..., 0]
    map_y = grid_y + amount * flow[..., 1]
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def flow_interpolate(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """The frame at `fraction` ∈ (0, 1) between uint8 frames a and b: I ≈ (1−f)·A(x − f F_ab) + f·B(x − (1−f) F_ba)."""
    forward, backward = _flow(a, b), _flow(b, a)
    from_a = _warp(a.astype(np.float32), forward, -fraction)
    from_b = _warp(b.astype(np.float32), backward, -(1 - fraction))
    return np.clip(np.rint((1 - fraction) * from_a + fraction * from_b), 0, 255).astype(np.uint8)


def resample_fps(frames: np.ndarray, source_fps: float, target_fps: float,
                 interpolate: Interpolator = flow_interpolate, keep_every: int = 1) -> np.ndarray:
    """Frames at times k / target_fps covering the clip's duration, every `keep_every`-th of them (the
    others are never computed); off-grid times are interpolated from their two neighbours."""
    if source_fps <= 0 or target_fps <= 0:
        raise ValueError(f"fps must be positive, got source {source_fps}, target {target_fps}")
    count = int(np.floor((len(frames) - 1) * target_fps / source_fps + 1e-9)) + 1
    out = []
    for k in range(0, count, keep_every):
        position = k * source_fps / target_fps
        index = int(np.floor(position + 1e-9))
        fraction = position - index
        if fraction < 1e-6 or index + 1 >= len(frames):
            out.append(frames[min(index, len(frames) - 1)])
        else:
            out.append(interpolate(frames[index], frames[index + 1], fraction))
    return np.stack(out)


def centre_crop_resize(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Crop the centre to the aspect width:height, then resize bilinearly to (height, width)."""
    in_h, in_w = frames.shape[1:3]
    if in_w * height > width * in_h:  # too wide
        crop_w, crop_h = int(round(in_h * width / height)), in_h
    else:
        crop_w, crop_h = in_w, int(round(in_w * height / width))
    top, left = (in_h - crop_h) // 2, (in_w - crop_w) // 2
    cropped = frames[:, top: top + crop_h, left: left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return np.ascontiguousarray(cropped)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in cropped])
