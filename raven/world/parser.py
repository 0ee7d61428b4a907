"""Read a toy-world video back into objects WITHOUT ground truth, and score it against a prompt.

Per frame: the background colour (the nearest palette background to the frame's median), then for each
object colour c a soft mask α_c — each pixel p is explained as a blend bg + α (c − bg); α is the
projection, accepted where the blend's residual is small (anti-aliased edges keep their fractional α).
From the masks: area (Σα), centroid, compactness (the share of α within an object-sized box around the
centroid: a real object is one blob, noise scatters every palette colour over the frame), and the shape:
each shape of the world's object size is rendered anti-aliased at the position its centroid implies, and
the shape whose coverage is nearest to α (L1, relative to the template's area) wins per frame; the
video's shape is the one matched best in any frame (another object may occlude this one in some frames).
Direction is the angle of the mean velocity over the first DIRECTION_STEPS steps, from unoccluded frames
(robust to a bounce near the end); below STILL_SPEED px/frame the object is `still`.
All per-frame quantities are arrays indexed by frame, so drift over time can be plotted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from raven.world.grammar import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, Prompt, heldout_triples
from raven.world.render import OBJECT_SIZE, REFERENCE_SIZE, as_prompt, coverage

RESIDUAL_MAX = 60.0  # max distance (0-255 RGB units) between a pixel and its blend explanation
MIN_ALPHA = 0.15
PRESENT_AREA = 0.4  # fraction of a full object's area for the object to count as present in a frame
PRESENT_FRAMES = 0.5  # fraction of frames an object must be present in to count
COMPACT_SHARE = 0.75  # share of a frame's α within COMPACT_BOX object sizes of the centroid
COMPACT_BOX = 1.5
OCCLUSION_AREA = 0.85  # frames below this fraction of the object's largest area count as occluded
STILL_SPEED = 0.35  # px per frame at the reference size
DIRECTION_STEPS = 8


@dataclass
class ParsedObject:
    """One object, found by its colour. Arrays are indexed by frame."""

    colour: str
    area: np.ndarray  # [T] soft area in px
    centroid: np.ndarray  # [T, 2] (x, y); NaN where absent
    shape_error: np.ndarray  # [T, len(SHAPES)] relative L1 distance of α to each shape's template
    present: np.ndarray  # [T] bool
    shape_per_frame: list[str | None]
    shape: str
    motion: str


@dataclass
class ParsedVideo:
    background: str
    background_rgb: np.ndarray  # [T, 3] per-frame median colour
    alphas: np.ndarray  # [colours, T, H, W] soft mask of every palette colour (`palette_alphas`)
    objects: dict[str, ParsedObject] = field(default_factory=dict)


def background_of(frames: np.ndarray) -> tuple[str, np.ndarray]:
    """The nearest palette background to the frames' medians, and the per-frame median colours [T, 3]."""
    medians = np.median(frames.reshape(len(frames), -1, 3), axis=1)
    overall = medians.mean(axis=0)
    name = min(BACKGROUNDS, key=lambda n: np.sum((np.asarray(BACKGROUNDS[n]) - overall) ** 2))
    return name, medians


def colour_alpha(frames: np.ndarray, bg_rgb: np.ndarray, colour_rgb) -> np.ndarray:
    """Soft mask [T, H, W]: α of the blend bg + α (colour − bg) explaining each pixel, 0 where it does not."""
    pixels = frames.astype(np.float64) - bg_rgb
    direction = np.asarray(colour_rgb, dtype=np.float64) - bg_rgb
    alpha = (pixels @ direction) / (direction @ direction)
    residual = np.linalg.norm(pixels - alpha[..., None] * direction, axis=-1)
    alpha = np.clip(alpha, 0.0, 1.0)
    return np.where((residual < RESIDUAL_MAX) & (alpha > MIN_ALPHA), alpha, 0.0)


def shape_errors(alpha: np.ndarray, centroid: np.ndarray, scale: float) -> np.ndarray:
    """[T, len(SHAPES)]: Σ|α − template| / Σ template for each shape placed at the observed centroid."""
    half = OBJECT_SIZE * scale / 2
    height, width = alpha.shape[1:]
    cx, cy = np.nan_to_num(centroid[:, 0]), np.nan_to_num(centroid[:, 1])
    errors = []
    for shape in SHAPES:
        # A triangle's centroid lies a third of its half-height below its box centre.
        offset = half / 3 if shape == "triangle" else 0.0
        template = coverage(shape, cx, cy - offset, half, height, width)
        errors.append(np.abs(alpha - template).sum(axis=(1, 2)) / template.sum(axis=(1, 2)))
    return np.stack(errors, axis=1)


def direction_of(centroids: np.ndarray, scale: float, steps: int = DIRECTION_STEPS) -> str:
    """Motion word of a centroid track [T, 2] (NaN rows = absent or occluded): angle of the mean
    velocity between the first and last valid frames among the first `steps + 1` frames."""
    index = np.flatnonzero(~np.isnan(centroids[: steps + 1, 0]))
    if len(index) < 2:
        return "still"
    velocity = (centroids[index[-1]] - centroids[index[0]]) / (index[-1] - index[0])
    if np.hypot(*velocity) < STILL_SPEED * scale:
        return "still"
    unit = velocity / np.hypot(*velocity)
    moving = {name: d for name, d in MOTIONS.items() if name != "still"}
    return max(moving, key=lambda name: unit @ np.asarray(moving[name]))


def compact_share(alpha: np.ndarray, centroid: np.ndarray, scale: float) -> np.ndarray:
    """[T]: the share of each frame's α inside a box of COMPACT_BOX object sizes centred on its centroid."""
    half = COMPACT_BOX * OBJECT_SIZE * scale / 2
    ys, xs = np.mgrid[: alpha.shape[1], : alpha.shape[2]] + 0.5
    cx, cy = np.nan_to_num(centroid[:, 0])[:, None, None], np.nan_to_num(centroid[:, 1])[:, None, None]
    inside = (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    return (alpha * inside).sum(axis=(1, 2)) / np.maximum(alpha.sum(axis=(1, 2)), 1e-9)


def _parse_object(colour: str, alpha: np.ndarray, scale: float, min_present: float) -> ParsedObject | None:
    """The object of one colour, or None when it is present in no frame or fewer than `min_present` of them.
    Present in a frame: enough α, gathered in one object-sized place."""
    area = alpha.sum(axis=(1, 2))
    full_area = (OBJECT_SIZE * scale) ** 2 * 0.5  # a triangle, the smallest shape
    ys, xs = np.mgrid[: alpha.shape[1], : alpha.shape[2]] + 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.stack([(alpha * xs).sum(axis=(1, 2)) / area, (alpha * ys).sum(axis=(1, 2)) / area], axis=1)
    present = (area >= PRESENT_AREA * full_area) & (compact_share(alpha, centroid, scale) >= COMPACT_SHARE)
    if not present.any() or present.mean() < min_present:
        return None
    centroid[~present] = np.nan
    errors = shape_errors(alpha, centroid, scale)
    shapes = [SHAPES[int(np.argmin(e))] if p else None for e, p in zip(errors, present)]
    # The best-matching frame decides: another object may occlude this one in some frames.
    shape = SHAPES[int(np.argmin(errors[present].min(axis=0)))]
    # Occluded frames (area well below the object's largest) would bias the centroid track.
    visible = present & (area >= OCCLUSION_AREA * area[present].max())
    track = np.where(visible[:, None], centroid, np.nan)
    return ParsedObject(colour, area, centroid, errors, present, shapes, shape, direction_of(track, scale))


def parse_video(frames: np.ndarray, min_present: float = PRESENT_FRAMES) -> ParsedVideo:
    """uint8 [T, H, W, 3] -> background and the objects present in at least `min_present` of the frames
    (keyed by colour). Drift curves use min_present = 0: an object that fades out still has its frames."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"parse_video expects uint8 [T, H, W, 3], got shape {frames.shape}")
    background, medians = background_of(frames)
    scale = min(frames.shape[1:3]) / REFERENCE_SIZE
    parsed = ParsedVideo(background, medians, palette_alphas(frames, background))
    for colour, alpha in zip(COLOURS, parsed.alphas):
        obj = _parse_object(colour, alpha, scale, min_present)
        if obj is not None:
            parsed.objects[colour] = obj
    return parsed


# ---- metrics --------------------------------------------------------------------------------------


def dynamic_degree(frames: np.ndarray) -> np.ndarray:
    """Per frame pair: mean of the top-5% optical-flow magnitudes (OpenCV Farneback), in px. [T-1]."""
    grey = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    values = []
    for a, b in zip(grey[:-1], grey[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 1, 5, 3, 5, 1.1, 0)
        magnitude = np.sort(np.hypot(flow[..., 0], flow[..., 1]).reshape(-1))
        values.append(float(magnitude[-max(1, int(0.05 * magnitude.size)):].mean()))
    return np.asarray(values)


def flicker(frames: np.ndarray) -> np.ndarray:
    """Per frame pair: 1 − mean |frame_t+1 − frame_t| / 255 (VBench temporal flickering's formula). [T-1]."""
    diffs = np.abs(np.diff(frames.astype(np.float64), axis=0)).mean(axis=(1, 2, 3))
    return 1.0 - diffs / 255.0


def sharpness(frames: np.ndarray) -> np.ndarray:
    """Per frame: variance of the Laplacian of the grey frame (higher = sharper). [T]."""
    return np.asarray([cv2.Laplacian(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
                       for f in frames])


def palette_alphas(frames: np.ndarray, background: str) -> np.ndarray:
    """Soft masks [colours, T, H, W] of every palette colour over the named background."""
    bg_rgb = np.asarray(BACKGROUNDS[background], dtype=np.float64)
    return np.stack([colour_alpha(frames, bg_rgb, rgb) for rgb in COLOURS.values()])


def noise_level(frames: np.ndarray, background: str, alphas: np.ndarray) -> np.ndarray:
    """Per frame: RMS deviation (0-255) of background pixels (no mask of `alphas`, from `palette_alphas`)
    from the background colour. [T]."""
    bg_rgb = np.asarray(BACKGROUNDS[background], dtype=np.float64)
    deviation = np.linalg.norm(frames.astype(np.float64) - bg_rgb, axis=-1)
    free = ~(alphas > 0).any(axis=0)
    return np.sqrt((deviation**2 * free).sum(axis=(1, 2)) / np.maximum(free.sum(axis=(1, 2)), 1))


def motion_smoothness(obj: ParsedObject, scale: float) -> float:
    """1 / (1 + mean |second difference of the centroid| in reference px): 1 for constant velocity."""
    track = obj.centroid[obj.present]
    if len(track) < 3:
        return 1.0
    accel = np.linalg.norm(np.diff(track, n=2, axis=0), axis=1) / scale
    return float(1.0 / (1.0 + accel.mean()))


def frame_metrics(frames: np.ndarray, prompt: Prompt | str, parsed: ParsedVideo | None = None) -> dict[str, np.ndarray]:
    """Frame-indexed arrays [T] against the prompt: per-frame colour presence, shape match, count match."""
    prompt = as_prompt(prompt)
    parsed = parsed or parse_video(frames, min_present=0.0)
    frames_n = len(frames)
    colour_ok = np.zeros(frames_n)
    shape_ok = np.zeros(frames_n)
    for obj in prompt.objects:
        found = parsed.objects.get(obj.colour)
        if found is not None:
            colour_ok += found.present
            shape_ok += np.asarray([s == obj.shape for s in found.shape_per_frame], dtype=float)
    counts = np.zeros(frames_n)
    for found in parsed.objects.values():
        counts += found.present
    n = len(prompt.objects)
    return {"colour": colour_ok / n, "shape": shape_ok / n, "count": (counts == n).astype(float),
            "background": (np.linalg.norm(parsed.background_rgb - BACKGROUNDS[parsed.background], axis=1) < 20).astype(float)}


MATCH_KEYS = ("colour", "shape", "direction")


def object_matches(parsed: ParsedVideo, prompt: Prompt | str) -> list[tuple[bool, bool, bool]]:
    """Per object the prompt names: (found with its colour, with the right shape, moving the right way)."""
    matches = []
    for wanted in as_prompt(prompt).objects:
        found = parsed.objects.get(wanted.colour)
        matches.append((found is not None, found is not None and found.shape == wanted.shape,
                        found is not None and found.motion == wanted.motion))
    return matches


def by_objects(matches: list[list[tuple[bool, bool, bool]]], prompts: list[Prompt | str]) -> dict[str, dict]:
    """Colour / shape / direction accuracy per object, in one-object prompts (`one_object`), in two-object
    prompts (`two_objects`, where the words must be bound to the right object), and over objects whose
    colour-shape-motion triple is held out of training (`unseen_triple`); `matches`: `object_matches` of
    each video against its prompt."""
    groups: dict[str, list[tuple[bool, bool, bool]]] = {"one_object": [], "two_objects": [], "unseen_triple": []}
    for video_matches, prompt in zip(matches, prompts, strict=True):
        objects = as_prompt(prompt).objects
        for wanted, match in zip(objects, video_matches, strict=True):
            groups["one_object" if len(objects) == 1 else "two_objects"].append(match)
            if wanted.triple in heldout_triples():
                groups["unseen_triple"].append(match)
    return {group: {"objects": len(rows), **{f"{key}_acc": float(np.mean([row[i] for row in rows]))
                                            for i, key in enumerate(MATCH_KEYS)}}
            for group, rows in groups.items() if rows}


def video_metrics(frames: np.ndarray, prompt: Prompt | str, parsed: ParsedVideo | None = None) -> dict[str, float]:
    """Scores in [0, 1] (except the raw `dynamic_degree` px, `sharpness`, `noise`) of one video vs its prompt.

    colour/shape/direction: fraction of the prompt's objects found with that colour / with the right
    shape / moving the right way; count: 1 if exactly as many objects as the prompt names;
    identity: fraction of frames each found object is present with its video-level shape.
    `parsed`: `parse_video(frames)` when the caller has it already.
    """
    prompt = as_prompt(prompt)
    frames = np.asarray(frames)
    parsed = parsed or parse_video(frames)
    scale = min(frames.shape[1:3]) / REFERENCE_SIZE
    matches = object_matches(parsed, prompt)
    identity = [np.mean([s == f.shape for s in f.shape_per_frame]) for f in parsed.objects.values()]
    smooth = [motion_smoothness(f, scale) for f in parsed.objects.values()]
    bg_drift = np.linalg.norm(parsed.background_rgb - parsed.background_rgb[0], axis=1)
    return {
        **{key: float(np.mean([m[i] for m in matches])) for i, key in enumerate(MATCH_KEYS)},
        "count": float(len(parsed.objects) == len(prompt.objects)),
        "background": float(parsed.background == prompt.background),
        "identity": float(np.mean(identity)) if identity else 0.0,
        "background_stability": float(1.0 - min(bg_drift.max() / 255.0, 1.0)),
        "flicker": float(flicker(frames).mean()),
        "motion_smoothness": float(np.mean(smooth)) if smooth else 1.0,
        "dynamic_degree": float(dynamic_degree(frames).mean()),
        "sharpness": float(sharpness(frames).mean()),
        "noise": float(noise_level(frames, parsed.background, parsed.alphas).mean()),
    }


def prompt_metrics(videos: list[np.ndarray], prompt: Prompt | str) -> dict[str, float]:
    """Mean of `video_metrics` over several samples of one prompt."""
    scores = [video_metrics(v, prompt) for v in videos]
    return {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}


def accuracy(videos: np.ndarray, prompts: list[str]) -> dict[str, float]:
    """colour_acc, shape_acc, direction_acc, count_acc of uint8 videos [B, T, H, W, 3] against their prompts
    (the keys of the benchmark reports). Pass model outputs through `render.to_uint8` first."""
    if len(videos) != len(prompts):
        raise ValueError(f"{len(videos)} videos for {len(prompts)} prompts")
    scores = [video_metrics(v, p) for v, p in zip(videos, prompts)]
    return {f"{key}_acc": float(np.mean([s[key] for s in scores])) for key in ("colour", "shape", "direction", "count")}
