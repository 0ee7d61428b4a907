"""The toy-world benchmark: the tiny scale's evaluator, built on the toy-world parser.

TOY-WORLD SCORES, not VBench: every VBench dimension gets a stand-in measured exactly by the parser,
then the same Quality / Semantic / Total formula (docs/method.md §10) aggregates them, with bounds 0..1
(the stand-ins are fractions by construction). Per video:

| VBench dimension       | toy-world stand-in                                                        |
|------------------------|---------------------------------------------------------------------------|
| subject_consistency    | identity: fraction of frames each object keeps its video-level shape      |
| background_consistency | background stability: 1 − max drift of the frame median colour / 255      |
| temporal_flickering    | 1 − mean |frame_t+1 − frame_t| / 255 (VBench's own formula)               |
| motion_smoothness      | 1 / (1 + mean |second difference of the centroid|)                       |
| dynamic_degree         | VBench's rule on optical flow: dynamic if round(4·pairs/16) frame pairs    |
|                        | have a top-5% flow magnitude above 6·min(H, W)/256 px                      |
| aesthetic_quality      | shape fidelity: 1 − mean relative L1 error of the best shape template     |
| imaging_quality        | 1 − background noise RMS / 64 (clipped at 0)                              |
| object_class           | shape match       | color               | colour match                      |
| multiple_objects       | object count match| scene               | background colour match           |
| human_action           | direction match   | temporal_style      | direction match                   |
| spatial_relationship   | min(count, direction)                                                     |
| appearance_style       | min(colour, shape)                                                        |
| overall_consistency    | 1 if colour, shape, direction, count and background all match, else 0     |

Dyn. Deg. on UnifiedReward's 1–4 scale (toy mapping): 1 + 3·min(speed / 12, 1), where speed is the
objects' mean centroid speed in px per second at the 16 px reference size (from the parser's tracks;
optical flow has a floor of ~0.1 px on identical 16 px frames): a still scene rates 1, a "slow"
object (8 px/s) 3, a "fast" one (12 px/s) 4 (less when it bounces off a wall).

Drift (beyond the paper): per-frame colour / shape / count / identity curves over long videos, averaged
per chunk; identity compares each object's per-frame shape with its shape in the first chunk.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from raven.evaluation.scores import DIMENSIONS, UNIT_BOUNDS, vbench_scores
from raven.world.parser import (ParsedVideo, by_objects, dynamic_degree, frame_metrics, object_matches, parse_video,
                                video_metrics)
from raven.world.render import REFERENCE_SIZE, as_prompt

NOISE_SCALE = 64.0  # background RMS noise (0-255) at which imaging quality reaches 0
FAST_SPEED = 12.0  # px per second at the reference size: the world's "fast"
RECOGNISABLE = 0.5  # a frame's object counts for identity only if its best shape template errs less (relative L1)
DRIFT_KEYS = ("colour", "shape", "count", "identity")


def is_dynamic(pair_flow: np.ndarray, height: int, width: int) -> bool:
    """VBench's dynamic-degree rule on per-pair top-5% flow magnitudes."""
    threshold = 6.0 * min(height, width) / 256.0
    needed = round(4 * (len(pair_flow) + 1) / 16)
    return int(np.sum(pair_flow > threshold)) >= max(needed, 1)


def shape_fidelity(parsed: ParsedVideo) -> float:
    """1 − mean relative L1 error of the best-matching shape template over objects and present frames."""
    errors = [o.shape_error[o.present].min(axis=1) for o in parsed.objects.values()]
    if not errors:
        return 0.0
    return float(np.clip(1.0 - np.mean(np.concatenate(errors)), 0.0, 1.0))


def object_speed(parsed: ParsedVideo, height: int, width: int, fps: float) -> float:
    """Mean centroid speed of the found objects over consecutive present frames, reference px / second."""
    speeds = []
    for obj in parsed.objects.values():
        steps = np.linalg.norm(np.diff(obj.centroid, axis=0), axis=1)
        steps = steps[~np.isnan(steps)]
        if len(steps):
            speeds.append(float(steps.mean()))
    if not speeds:
        return 0.0
    return float(np.mean(speeds)) * fps * REFERENCE_SIZE / min(height, width)


def dyn_deg_rating(speed: float) -> float:
    """The toy mapping of dynamic degree onto UnifiedReward's 1–4 scale (see the module docstring)."""
    return 1.0 + 3.0 * min(speed / FAST_SPEED, 1.0)


def video_scores(frames: np.ndarray, prompt: str, fps: float, parsed: ParsedVideo | None = None) -> dict[str, float]:
    """The 16 toy stand-ins of one video plus its `dyn_deg` rating; `parsed`: `parse_video(frames)` when
    the caller has it already."""
    frames = np.asarray(frames)
    height, width = frames.shape[1:3]
    parsed = parsed or parse_video(frames)
    m = video_metrics(frames, prompt, parsed)
    matched = ("colour", "shape", "direction", "count", "background")
    scores = {
        "subject_consistency": m["identity"],
        "background_consistency": m["background_stability"],
        "temporal_flickering": m["flicker"],
        "motion_smoothness": m["motion_smoothness"],
        "dynamic_degree": float(is_dynamic(dynamic_degree(frames), height, width)),
        "aesthetic_quality": shape_fidelity(parsed),
        "imaging_quality": float(max(0.0, 1.0 - m["noise"] / NOISE_SCALE)),
        "object_class": m["shape"],
        "multiple_objects": m["count"],
        "human_action": m["direction"],
        "color": m["colour"],
        "spatial_relationship": min(m["count"], m["direction"]),
        "scene": m["background"],
        "appearance_style": min(m["colour"], m["shape"]),
        "temporal_style": m["direction"],
        "overall_consistency": float(all(m[key] == 1.0 for key in matched)),
    }
    scores["dyn_deg"] = dyn_deg_rating(object_speed(parsed, height, width, fps))
    return scores


def benchmark(videos: np.ndarray, prompts: Sequence[str], fps: float) -> dict:
    """Toy-world benchmark of uint8 videos [N, T, H, W, 3] against their prompts: per-dimension means,
    Total / Quality / Semantic (fractions), `dyn_deg` (1–4), per-video scores, and colour / shape /
    direction per object in one- and two-object prompts (`by_objects`, raven.world.parser)."""
    if len(videos) != len(prompts) or len(videos) == 0:
        raise ValueError(f"toy benchmark needs one prompt per video and at least one video; got "
                         f"{len(videos)} videos, {len(prompts)} prompts")
    per_video, matches = [], []
    for video, prompt in zip(videos, prompts):  # one parse per video, not kept once both are read from it
        parsed = parse_video(np.asarray(video))
        per_video.append(video_scores(video, prompt, fps, parsed))
        matches.append(object_matches(parsed, prompt))
    dimensions = {name: float(np.mean([s[name] for s in per_video])) for name in DIMENSIONS}
    return {
        "kind": "toy-world",
        "note": "toy-world stand-ins for the VBench dimensions (raven.evaluation.toy), not VBench scores",
        **vbench_scores(dimensions, UNIT_BOUNDS),
        "dyn_deg": float(np.mean([s["dyn_deg"] for s in per_video])),
        "dimensions": dimensions,
        "videos": len(per_video),
        "by_objects": by_objects(matches, list(prompts)),
        "per_video": [{"prompt": p, **s} for p, s in zip(prompts, per_video)],
    }


# ---- drift ------------------------------------------------------------------------------------------


def frame_curves(frames: np.ndarray, prompt: str, reference_frames: int) -> dict[str, np.ndarray]:
    """Per-frame colour / shape / count / identity [T] of one video; identity: fraction of the prompt's
    objects present, recognisably shaped, with the shape they mostly had in the first `reference_frames`
    frames (noise blobs are present but match no shape, so they keep no identity)."""
    parsed = parse_video(frames, min_present=0.0)
    curves = frame_metrics(frames, prompt, parsed)
    identity = np.zeros(len(frames))
    objects = as_prompt(prompt).objects
    for obj in objects:
        found = parsed.objects.get(obj.colour)
        if found is None:
            continue
        shapes = [s if s is not None and e.min() < RECOGNISABLE else None
                  for s, e in zip(found.shape_per_frame, found.shape_error)]
        early = [s for s in shapes[:reference_frames] if s is not None]
        if early:
            reference = Counter(early).most_common(1)[0][0]
            identity += np.asarray([s == reference for s in shapes], dtype=float)
    curves["identity"] = identity / len(objects)
    return {key: np.asarray(curves[key], dtype=float) for key in DRIFT_KEYS}


def pixel_chunk_bounds(chunk_latent_frames: Sequence[int], temporal_factor: int) -> list[tuple[int, int]]:
    """[start, end) pixel frames of each chunk: latent frame 0 is pixel frame 0, every later latent
    frame covers `temporal_factor` pixel frames (Wan's causal VAE; 1 for the pixel codec)."""
    bounds, start = [], 0
    for index, size in enumerate(chunk_latent_frames):
        pixels = size * temporal_factor - (temporal_factor - 1 if index == 0 else 0)
        bounds.append((start, start + pixels))
        start += pixels
    return bounds


def video_chunk_bounds(frames: int, chunk_size: int, first_chunk_size: int | None, temporal_factor: int
                       ) -> list[tuple[int, int]]:
    """Chunk bounds in pixel frames of a video of `frames` pixel frames (any length: drift videos are long)."""
    from raven.config.spec import chunk_frames

    latent = 1 + (frames - 1) // temporal_factor if temporal_factor > 1 else frames
    return pixel_chunk_bounds(chunk_frames(latent, chunk_size, first_chunk_size), temporal_factor)


def drift(videos: np.ndarray, prompts: Sequence[str], chunk_bounds: Sequence[tuple[int, int]]) -> dict:
    """Mean per-frame and per-chunk curves over videos: {per_frame: {key: [T]}, per_chunk: {key: [K]}}."""
    if chunk_bounds[-1][1] != videos.shape[1]:
        raise ValueError(f"chunks cover {chunk_bounds[-1][1]} frames but the videos have {videos.shape[1]}")
    reference = chunk_bounds[0][1]
    curves = [frame_curves(v, p, reference) for v, p in zip(videos, prompts)]
    per_frame = {key: np.mean([c[key] for c in curves], axis=0) for key in DRIFT_KEYS}
    per_chunk = {key: [float(per_frame[key][a:b].mean()) for a, b in chunk_bounds] for key in DRIFT_KEYS}
    return {"per_frame": {k: v.tolist() for k, v in per_frame.items()}, "per_chunk": per_chunk,
            "chunk_bounds": [list(b) for b in chunk_bounds], "videos": len(curves)}


def plot_drift(reports: dict[str, dict], path: str | Path) -> None:
    """One panel per consistency key, one line per labelled drift report, x = chunk index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raven.io import atomic_path

    figure, axes = plt.subplots(1, len(DRIFT_KEYS), figsize=(4 * len(DRIFT_KEYS), 3.2), sharey=True)
    for axis, key in zip(axes, DRIFT_KEYS):
        for label, report in reports.items():
            values = report["per_chunk"][key]
            axis.plot(range(len(values)), values, marker="o", label=label)
        axis.set_title(f"{key} consistency")
        axis.set_xlabel("chunk index")
        axis.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("fraction (toy-world parser)")
    axes[-1].legend(loc="lower left")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
