"""Weight-free rewards for toy scales (issue 6): the paper's reward formulas where they are algorithmic,
and the toy-world parser where the real reward needs a learned model. Each takes one uint8 video
[T, H, W, 3] at `fps` (and its prompt) and returns a float; higher is better.

- `raft_RAFT` dynamic degree: frames at 8 fps, per pair the mean of the top-5% flow magnitudes
  (OpenCV Farneback instead of RAFT), mean over pairs, in px (docs/method.md §10).
- `ms_MS` motion smoothness: the odd frames interpolated from their even neighbours by the classical
  flow interpolator of `raven.data.resample` (instead of AMT-S), `1 − mean|diff|/255` (docs/method.md §10).
- `videoalign_TA` text alignment: the mean of the parser's colour, shape, direction and count matches.
- `iq_IMG` imaging quality (sharpness and noise): per frame, the α-weighted mean of the parsed objects'
  soft masks ("solidity": 1 for crisp edges, lower when blurred) divided by 1 + noise/NOISE_SCALE,
  where noise is the RMS deviation of background pixels from the background colour; frame mean.
- `aq_AES` aesthetic proxy ("palette cleanliness"): 1 − the mean over pixels of each pixel's distance to
  the nearest blend of the background with one palette colour (the parser's blend explanation),
  relative to RESIDUAL_MAX and capped at 1. A rendered toy video scores ≈ 1; noise, colour casts and
  off-palette smears lower it.
"""

from __future__ import annotations

import numpy as np

from raven.data.resample import flow_interpolate, resample_fps
from raven.world.grammar import BACKGROUNDS, COLOURS
from raven.world.parser import (
    RESIDUAL_MAX,
    background_of,
    dynamic_degree,
    noise_level,
    palette_alphas,
    video_metrics,
)
from raven.world.render import as_prompt

DYNAMIC_DEGREE_FPS = 8.0
NOISE_SCALE = 10.0  # RMS background deviation (0-255) at which imaging quality halves
TEXT_ALIGNMENT_KEYS = ("colour", "shape", "direction", "count")


def toy_dynamic_degree(frames: np.ndarray, prompt: str, fps: float) -> float:
    """Mean over frame pairs at 8 fps of the top-5% flow magnitudes (px); 0 for a still video."""
    frames = resample_fps(frames, fps, DYNAMIC_DEGREE_FPS) if fps != DYNAMIC_DEGREE_FPS else frames
    if len(frames) < 2:
        raise ValueError(f"dynamic degree needs at least 2 frames at {DYNAMIC_DEGREE_FPS} fps, got {len(frames)}")
    return float(dynamic_degree(frames).mean())


def toy_motion_smoothness(frames: np.ndarray, prompt: str, fps: float) -> float:
    """VBench's motion smoothness with a flow interpolator: odd frames predicted from even ones."""
    if len(frames) < 3:
        raise ValueError(f"motion smoothness needs at least 3 frames, got {len(frames)}")
    errors = [
        np.abs(flow_interpolate(frames[i - 1], frames[i + 1], 0.5).astype(np.float64) - frames[i]).mean()
        for i in range(1, len(frames) - 1, 2)
    ]
    return float(1.0 - np.mean(errors) / 255.0)


def toy_text_alignment(frames: np.ndarray, prompt: str, fps: float) -> float:
    """Mean of the parser's colour, shape, direction and count matches against the prompt, in [0, 1]."""
    metrics = video_metrics(frames, as_prompt(prompt))
    return float(np.mean([metrics[key] for key in TEXT_ALIGNMENT_KEYS]))


def solidity(alphas: np.ndarray) -> np.ndarray:
    """Per frame Σα² / Σα over all colours: 1 when every covered pixel is fully covered; 1 for empty frames."""
    total = alphas.sum(axis=(0, 2, 3))
    squared = (alphas**2).sum(axis=(0, 2, 3))
    return np.where(total > 0, squared / np.maximum(total, 1e-12), 1.0)


def toy_imaging_quality(frames: np.ndarray, prompt: str, fps: float) -> float:
    """Frame mean of solidity / (1 + noise / NOISE_SCALE), in [0, 1]."""
    background, _ = background_of(frames)
    alphas = palette_alphas(frames, background)
    noise = noise_level(frames, background, alphas)
    return float(np.mean(solidity(alphas) / (1.0 + noise / NOISE_SCALE)))


def palette_residual(frames: np.ndarray, background: str) -> np.ndarray:
    """Per pixel [T, H, W]: distance (0-255 RGB) to the nearest blend of the background with one palette colour."""
    bg_rgb = np.asarray(BACKGROUNDS[background], dtype=np.float64)
    pixels = frames.astype(np.float64) - bg_rgb
    residual = np.linalg.norm(pixels, axis=-1)
    for rgb in COLOURS.values():
        direction = np.asarray(rgb, dtype=np.float64) - bg_rgb
        alpha = np.clip((pixels @ direction) / (direction @ direction), 0.0, 1.0)
        residual = np.minimum(residual, np.linalg.norm(pixels - alpha[..., None] * direction, axis=-1))
    return residual


def toy_aesthetic(frames: np.ndarray, prompt: str, fps: float) -> float:
    """1 − mean over pixels and frames of min(palette residual / RESIDUAL_MAX, 1), in [0, 1]."""
    residual = palette_residual(frames, background_of(frames)[0])
    return float(1.0 - np.minimum(residual / RESIDUAL_MAX, 1.0).mean())
