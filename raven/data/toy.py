"""Toy-world clips for the real-video path: rendered at a lower fps, resampled to the training fps by
the same interpolator as real clips (docs/method.md §11), so the shard writer, reader and resampler all run."""

from __future__ import annotations

from raven.data.resample import resample_fps
from raven.data.shards import Clip
from raven.world.render import render


def render_frames(target_frames: int, target_fps: float, render_fps: float) -> int:
    """Frames to render at `render_fps` covering the duration of `target_frames` at `target_fps`."""
    duration = (target_frames - 1) / target_fps
    frames = duration * render_fps + 1
    if abs(frames - round(frames)) > 1e-6:
        raise ValueError(f"render fps {render_fps} does not divide the clip duration {duration} s "
                         f"({target_frames} frames at {target_fps} fps) into whole frames")
    return int(round(frames))


def toy_clip(prompt: str, seed: int, height: int, width: int, frames: int, fps: float, render_fps: float) -> Clip:
    """One clip of `prompt` at the training geometry (frames at fps), rendered at render_fps and resampled."""
    low = render(prompt, seed, height, width, render_frames(frames, fps, render_fps), fps=render_fps)
    video = resample_fps(low, render_fps, fps)
    return Clip(key=f"toy-{seed:08d}", caption=prompt, frames=video, fps=fps)
