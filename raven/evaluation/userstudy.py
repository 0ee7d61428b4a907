"""The user study (docs/method.md §10; the release has no code for it): blinded pairwise A/B judgements of a
method against each opponent on Quality, Semantic and Overall.

- `prepare`: for every prompt, opponent and sample k, one pair (method sample k vs opponent sample k)
  with a content id (`raven.evaluation.judgements.pair_id`); per opponent exactly half of the pairs
  show the method on the left; videos are copied under opaque names (browser-playable H.264,
  upscaled) so nothing on the page names a method.
- the votes live in `raven.evaluation.judgements.JudgementStore`, which outlives every manifest.
- `analyze`: win / tie / loss rates of the method per opponent and dimension (each annotator's latest
  vote) with bootstrap confidence intervals (resampling judgements), and the bar chart (Figure 6).
- `simulate`: toy-scale raters driven by the toy-world benchmark's per-video scores.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from raven.evaluation.judgements import DIMENSIONS, JudgementStore, pair_id
from raven.evaluation.samples import Samples, read_samples
from raven.io import atomic_path, atomic_write_json

DISPLAY_SIZE = 256  # px: toy videos are upscaled (nearest) so that a rater can see them


# ---- prepare ----------------------------------------------------------------------------------------


def encode_for_browser(frames: np.ndarray, fps: float, size: int = DISPLAY_SIZE) -> bytes:
    """uint8 [T, H, W, 3] -> H.264 yuv420p mp4 bytes (what browsers play), upscaled by an integer factor."""
    from raven.data.video import encode_mp4

    factor = max(1, size // max(frames.shape[1:3]))
    frames = np.repeat(np.repeat(frames, factor, axis=1), factor, axis=2)
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    return encode_mp4(frames, fps, crf=12, codec="libx264", pix_fmt="yuv420p")


def samples_by_prompt(samples: Samples) -> dict[str, list[int]]:
    """Sample indices of each prompt of a samples folder, in order."""
    grouped: dict[str, list[int]] = {}
    for record in samples.records:
        grouped.setdefault(record["prompt"], []).append(int(record["index"]))
    return grouped


def frames_digest(frames: np.ndarray) -> str:
    """SHA-256 of a video's frames (shape and bytes): part of a pair's content id."""
    frames = np.ascontiguousarray(frames)
    return hashlib.sha256(repr((frames.shape, str(frames.dtype))).encode() + frames.tobytes()).hexdigest()


def balanced_sides(count: int, rng: random.Random) -> list[bool]:
    """`count` booleans (method on the left?), half True (one more when odd), shuffled."""
    sides = [index < (count + 1) // 2 for index in range(count)]
    rng.shuffle(sides)
    return sides


def plan_pairs(method: str, folders: Mapping[str, Path], samples: Mapping[str, Samples], samples_per_prompt: int,
               seed: int, max_prompts: int | None = None) -> list[dict[str, Any]]:
    """The blinded pairs: {pair, prompt, opponent, sample, A: {method, samples, index, seed, digest}, B: {...}}."""
    if method not in folders:
        raise ValueError(f"the study's method {method!r} has no samples folder; got {sorted(folders)}")
    grouped = {name: samples_by_prompt(samples[name]) for name in folders}
    prompts = [p for p in grouped[method] if all(p in g for g in grouped.values())][:max_prompts]
    if not prompts:
        raise ValueError(f"no prompt is sampled by every method of {sorted(folders)}; sample the same prompt file")
    rng = random.Random(seed)
    pairs = []

    def side(name: str, prompt: str, k: int) -> dict[str, Any]:
        index = grouped[name][prompt][k]
        return {"method": name, "samples": str(folders[name]), "index": index,
                "seed": int(samples[name].records[index]["seed"]), "digest": frames_digest(samples[name].videos[index])}

    for opponent in (name for name in folders if name != method):
        jobs = []
        for prompt in prompts:
            available = min(len(grouped[method][prompt]), len(grouped[opponent][prompt]))
            if available < samples_per_prompt:
                raise ValueError(f"prompt {prompt!r}: {available} samples for {method} vs {opponent}, "
                                 f"the study needs {samples_per_prompt} (stages.userstudy.samples_per_prompt)")
            jobs += [(prompt, k) for k in range(samples_per_prompt)]
        for (prompt, k), method_left in zip(jobs, balanced_sides(len(jobs), rng)):
            ours, theirs = side(method, prompt, k), side(opponent, prompt, k)
            left, right = (ours, theirs) if method_left else (theirs, ours)
            content = {entry["method"]: entry for entry in (ours, theirs)}
            pairs.append({"pair": pair_id(content, prompt, k), "prompt": prompt, "opponent": opponent, "sample": k,
                          "A": left, "B": right})
    rng.shuffle(pairs)
    return pairs


def prepare(method: str, folders: Mapping[str, Path], out: str | Path, samples_per_prompt: int, seed: int,
            max_prompts: int | None = None) -> dict[str, Any]:
    """Write `out/videos/<opaque>.mp4` and `out/manifest.json` (last). Returns the manifest."""
    out = Path(out)
    loaded = {name: read_samples(folder) for name, folder in folders.items()}
    pairs = plan_pairs(method, folders, loaded, samples_per_prompt, seed, max_prompts)
    names = random.Random(f"names:{seed}")
    for pair in pairs:
        for side in ("A", "B"):
            entry = pair[side]
            samples = loaded[entry["method"]]
            entry["video"] = f"v{names.getrandbits(48):012x}.mp4"
            with atomic_path(out / "videos" / entry["video"]) as tmp:
                fps = float(samples.summary.get("fps", 8))
                tmp.write_bytes(encode_for_browser(samples.videos[entry["index"]], fps))
    manifest = {"method": method, "opponents": [n for n in folders if n != method], "dimensions": list(DIMENSIONS),
                "samples_per_prompt": samples_per_prompt, "seed": seed, "pairs": pairs}
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


# ---- analysis -----------------------------------------------------------------------------------------


def outcomes(manifest: Mapping[str, Any], judgements: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """{(opponent, dimension): ['win' | 'tie' | 'loss', ...]} from the method's point of view; each
    judgement names the method it preferred (or 'tie'), whichever side showed it."""
    pairs = {p["pair"]: p for p in manifest["pairs"]}
    method = manifest["method"]
    result: dict[tuple[str, str], list[str]] = {(o, d): [] for o in manifest["opponents"] for d in DIMENSIONS}
    for judgement in judgements:
        preferred = judgement["preferred"]
        outcome = "tie" if preferred == "tie" else "win" if preferred == method else "loss"
        result[(pairs[judgement["pair"]]["opponent"], judgement["dimension"])].append(outcome)
    return result


def rates_with_ci(values: Sequence[str], bootstrap: int, seed: int) -> dict[str, Any]:
    """Counts and rates of win / tie / loss, with 95% percentile-bootstrap intervals over judgements."""
    labels = np.asarray(values)
    counts = {k: int(np.sum(labels == k)) for k in ("win", "tie", "loss")}
    summary: dict[str, Any] = {"n": len(labels), "counts": counts}
    if len(labels) == 0:
        return {**summary, "rates": {k: None for k in counts}, "ci95": {k: None for k in counts}}
    rng = np.random.default_rng(seed)
    draws = labels[rng.integers(0, len(labels), size=(bootstrap, len(labels)))]
    summary["rates"] = {k: counts[k] / len(labels) for k in counts}
    summary["ci95"] = {k: [float(np.percentile((draws == k).mean(axis=1), q)) for q in (2.5, 97.5)] for k in counts}
    return summary


def analyze(manifest: Mapping[str, Any], judgements: Sequence[Mapping[str, Any]], bootstrap: int = 2000,
            seed: int = 0, votes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The tally of the counting judgements (each annotator's latest per pair and dimension); `votes`
    (`JudgementStore.summary()`) says how many earlier votes were superseded or archived."""
    grouped = outcomes(manifest, judgements)
    table = {opponent: {d: rates_with_ci(grouped[(opponent, d)], bootstrap, seed) for d in DIMENSIONS}
             for opponent in manifest["opponents"]}
    return {"method": manifest["method"], "judgements": len(judgements),
            "annotators": len({j["annotator"] for j in judgements}), "votes": dict(votes or {}), "results": table}


def plot_preferences(analysis: Mapping[str, Any], path: str | Path) -> None:
    """Figure 6: per opponent, stacked bars of win / tie / loss of the method for each dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opponents = list(analysis["results"])
    figure, axes = plt.subplots(len(DIMENSIONS), 1, figsize=(7, 1.2 + 0.5 * len(opponents) * len(DIMENSIONS)),
                                squeeze=False)
    colours = {"win": "#2b8cbe", "tie": "#bdbdbd", "loss": "#e34a33"}
    for axis, dimension in zip(axes[:, 0], DIMENSIONS):
        left = np.zeros(len(opponents))
        for outcome in ("win", "tie", "loss"):
            values = np.asarray([analysis["results"][o][dimension]["rates"][outcome] or 0.0 for o in opponents])
            axis.barh(opponents, values * 100, left=left, color=colours[outcome],
                      label=f"{analysis['method']} {outcome}" if outcome != "tie" else "tie")
            left += values * 100
        axis.set_title(dimension.capitalize())
        axis.set_xlim(0, 100)
    axes[-1, 0].set_xlabel("% of judgements")
    axes[0, 0].legend(loc="lower right", fontsize=7, ncol=3)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


# ---- simulated raters (toy scales) ---------------------------------------------------------------------


def toy_preference_scores(frames: np.ndarray, prompt: str, fps: float) -> dict[str, float]:
    """quality / semantic / overall of one video: the toy benchmark's Quality / Semantic / Total."""
    from raven.evaluation.scores import UNIT_BOUNDS, vbench_scores
    from raven.evaluation.toy import video_scores

    scores = vbench_scores(video_scores(frames, prompt, fps), UNIT_BOUNDS)
    return {"quality": scores["quality"], "semantic": scores["semantic"], "overall": scores["total"]}


def simulated_choice(score_a: float, score_b: float, margin: float, temperature: float, rng: random.Random) -> str:
    """tie within `margin`; else the better video, or (temperature > 0) the better one with
    probability sigmoid(|difference| / temperature): a Bradley-Terry rater."""
    difference = score_a - score_b
    if abs(difference) < margin:
        return "tie"
    better, worse = ("A", "B") if difference > 0 else ("B", "A")
    if temperature <= 0:
        return better
    return better if rng.random() < 1.0 / (1.0 + np.exp(-abs(difference) / temperature)) else worse


def simulate(manifest: Mapping[str, Any], store: JudgementStore, raters: int, margin: float, temperature: float,
             seed: int) -> int:
    """Judge every pair by `raters` simulated annotators (`sim-<k>`) that have not judged it yet; returns
    the number of new judgements. Choices do not depend on what was judged before (same seed, same answers)."""
    videos: dict[str, Any] = {}
    cache: dict[tuple[str, int], dict[str, float]] = {}

    def scores(entry: Mapping[str, Any], prompt: str) -> dict[str, float]:
        key = (entry["samples"], entry["index"])
        if key not in cache:
            samples = videos.setdefault(entry["samples"], read_samples(entry["samples"]))
            cache[key] = toy_preference_scores(samples.videos[entry["index"]], prompt,
                                               float(samples.summary.get("fps", 8)))
        return cache[key]

    rng = random.Random(seed)
    count = 0
    for rater in range(raters):
        annotator = f"sim-{rater}"
        done = store.judged_pairs(annotator)  # a rerun resumes: a simulated rater never votes twice
        for pair in manifest["pairs"]:
            a, b = scores(pair["A"], pair["prompt"]), scores(pair["B"], pair["prompt"])
            answers = {d: simulated_choice(a[d], b[d], margin, temperature, rng) for d in DIMENSIONS}
            if pair["pair"] not in done:
                store.record(pair["pair"], annotator, answers)
                count += len(DIMENSIONS)
    return count
