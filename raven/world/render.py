"""The toy world's renderer: (prompt, seed, geometry) -> uint8 video [T, H, W, 3].

The distribution of videos for one prompt is a FINITE uniform mixture: `mixture(prompt, ...)` lists
every renderable video (one per start-position combination on a grid) and `render(prompt, seed, ...)`
draws one of them with the seed. The exact teacher (`raven.world.teacher`) relies on this.

Geometry (all scaled by min(H, W) / 16): objects 6 px wide, speeds 1 px/frame ("slow") and 1.5 px/frame
("fast") at 8 fps. A moving object starts on the side it moves away from, so its direction is salient
within the training length; at a wall it bounces (reflection of its centre inside the canvas).
Two objects: the mixture keeps the start combinations whose boxes overlap in the fewest frames (0 when
the grid allows it); where they overlap, the later object is drawn on top. The grammar's sampler only
draws two-object prompts whose objects overlap in at most MAX_OVERLAP_FRAMES frames at the reference
geometry, so occlusion stays short. (The combination set is chosen for the requested number of frames.)
"""

from __future__ import annotations

import itertools

import numpy as np

from raven.world.grammar import BACKGROUNDS, COLOURS, MOTIONS, Prompt, ToyObject, parse_prompt

REFERENCE_SIZE = 16
OBJECT_SIZE = 6.0  # px at the reference size
SPEED_PX_PER_SECOND = {"slow": 8.0, "fast": 12.0}  # at the reference size
SUPERSAMPLE = 4


def as_prompt(prompt: Prompt | str) -> Prompt:
    return parse_prompt(prompt) if isinstance(prompt, str) else prompt


def _scale(height: int, width: int) -> float:
    return min(height, width) / REFERENCE_SIZE


def _axis_starts(direction: float, low: float, high: float, scale: float) -> list[float]:
    """Start coordinates along one axis: 2 'back' positions if moving along it, else 3 spread ones."""
    if direction > 0:
        return [low, low + 2 * scale]
    if direction < 0:
        return [high, high - 2 * scale]
    return list(np.linspace(low + scale, high - scale, 3))


def object_starts(obj: ToyObject, height: int, width: int) -> list[tuple[float, float]]:
    """The grid of start centres (x, y) of one object."""
    scale, half = _scale(height, width), OBJECT_SIZE * _scale(height, width) / 2
    dx, dy = MOTIONS[obj.motion]
    xs = _axis_starts(dx, half, width - half, scale)
    ys = _axis_starts(dy, half, height - half, scale)
    return [(x, y) for y in ys for x in xs]


def _bounce(position: np.ndarray, low: float, high: float) -> np.ndarray:
    """Reflect positions into [low, high] (an object's centre bouncing between two walls)."""
    span = high - low
    u = np.mod(position - low, 2 * span)
    return low + np.where(u <= span, u, 2 * span - u)


def trajectory(obj: ToyObject, start: tuple[float, float], height: int, width: int, frames: int,
               fps: float) -> np.ndarray:
    """Centres [T, 2] (x, y) of an object over `frames` frames at `fps`, with bounces."""
    scale, half = _scale(height, width), OBJECT_SIZE * _scale(height, width) / 2
    speed = 0.0 if obj.speed is None else SPEED_PX_PER_SECOND[obj.speed] * scale / fps
    steps = np.arange(frames, dtype=np.float64)
    dx, dy = MOTIONS[obj.motion]
    x = _bounce(start[0] + speed * dx * steps, half, width - half)
    y = _bounce(start[1] + speed * dy * steps, half, height - half)
    return np.stack([x, y], axis=1)


def overlap_frames(prompt: Prompt, starts: tuple, height: int, width: int, frames: int, fps: float) -> int:
    """Number of frames in which the objects' boxes overlap (0 for one object)."""
    if len(prompt.objects) == 1:
        return 0
    size = OBJECT_SIZE * _scale(height, width)
    a, b = (trajectory(o, s, height, width, frames, fps) for o, s in zip(prompt.objects, starts))
    return int(np.sum(np.max(np.abs(a - b), axis=1) < size))


def start_grid(prompt: Prompt | str, height: int, width: int, frames: int, fps: float = 8) -> list[tuple]:
    """Every start combination (one (x, y) per object) of the prompt's mixture, in a fixed order:
    the combinations whose objects overlap in the fewest frames."""
    prompt = as_prompt(prompt)
    combos = list(itertools.product(*(object_starts(o, height, width) for o in prompt.objects)))
    overlaps = [overlap_frames(prompt, c, height, width, frames, fps) for c in combos]
    return [c for c, n in zip(combos, overlaps) if n == min(overlaps)]


def min_overlap_frames(prompt: Prompt | str, height: int, width: int, frames: int, fps: float = 8) -> int:
    prompt = as_prompt(prompt)
    return overlap_frames(prompt, start_grid(prompt, height, width, frames, fps)[0], height, width, frames, fps)


def coverage(shape: str, cx: np.ndarray, cy: np.ndarray, half: float, height: int, width: int) -> np.ndarray:
    """Anti-aliased coverage [T, H, W] of a shape centred at (cx[t], cy[t]) by 4x4 supersampling."""
    offsets = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    xs = (np.arange(width)[:, None] + offsets[None, :]).reshape(-1)
    ys = (np.arange(height)[:, None] + offsets[None, :]).reshape(-1)
    x = xs[None, None, :] - cx[:, None, None]
    y = ys[None, :, None] - cy[:, None, None]
    if shape == "square":
        inside = (np.abs(x) <= half) & (np.abs(y) <= half)
    elif shape == "circle":
        inside = x**2 + y**2 <= half**2
    else:  # triangle pointing up: apex (0, -half), base y = +half from -half to +half
        inside = (y <= half) & (np.abs(x) <= (y + half) / 2)
    frames = len(cx)
    inside = inside.reshape(frames, height, SUPERSAMPLE, width, SUPERSAMPLE)
    return inside.mean(axis=(2, 4))


def render_item(prompt: Prompt | str, index: int, height: int, width: int, frames: int,
                fps: float = 8) -> np.ndarray:
    """Mixture item `index` of the prompt: uint8 video [T, H, W, 3]."""
    prompt = as_prompt(prompt)
    starts = start_grid(prompt, height, width, frames, fps)[index]
    half = OBJECT_SIZE * _scale(height, width) / 2
    video = np.empty((frames, height, width, 3), dtype=np.float64)
    video[:] = BACKGROUNDS[prompt.background]
    for obj, start in zip(prompt.objects, starts):
        centres = trajectory(obj, start, height, width, frames, fps)
        alpha = coverage(obj.shape, centres[:, 0], centres[:, 1], half, height, width)[..., None]
        video = video * (1 - alpha) + np.asarray(COLOURS[obj.colour], dtype=np.float64) * alpha
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def mixture_size(prompt: Prompt | str, height: int, width: int, frames: int, fps: float = 8) -> int:
    return len(start_grid(prompt, height, width, frames, fps))


def mixture(prompt: Prompt | str, height: int, width: int, frames: int, fps: float = 8) -> np.ndarray:
    """All M equally likely videos of the prompt: uint8 [M, T, H, W, 3]."""
    size = mixture_size(prompt, height, width, frames, fps)
    return np.stack([render_item(prompt, i, height, width, frames, fps) for i in range(size)])


def render(prompt: Prompt | str, seed: int, height: int, width: int, frames: int, fps: float = 8) -> np.ndarray:
    """One video of the prompt: the mixture item drawn uniformly by `seed`. uint8 [T, H, W, 3]."""
    index = int(np.random.default_rng(seed).integers(mixture_size(prompt, height, width, frames, fps)))
    return render_item(prompt, index, height, width, frames, fps)


def to_model_range(videos: np.ndarray) -> np.ndarray:
    """uint8 [..., T, H, W, 3] -> float [..., 3, T, H, W] in [-1, 1] (the in-memory convention)."""
    moved = np.moveaxis(videos, -1, -4).astype(np.float64)
    return moved / 127.5 - 1.0


def to_uint8(videos: np.ndarray) -> np.ndarray:
    """float [..., 3, T, H, W] in [-1, 1] -> uint8 [..., T, H, W, 3]."""
    pixels = np.clip(np.rint((np.asarray(videos, dtype=np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.moveaxis(pixels, -4, -1)
