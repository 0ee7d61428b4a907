"""Benchmark of the evaluation stage (issue 7): toy-world benchmark numbers per baseline miniature, the
long-horizon drift at 4x the training length, and the real VBench dimensions run here.

    .venv/bin/python benchmarks/eval.py [--spec S] [--row NAME=SAMPLES_DIR ...] [--drift NAME=LONG_SAMPLES_DIR ...]

Rows given with --row (folders of `raven sample`) fill `baselines`; --drift folders (sampled with
`--chunks 4x`) fill `drift`. `references` are always measured: ground-truth renders of held-out prompts,
the same with the first frame frozen, and with Gaussian noise (σ = 25), so the toy scale's range is
visible. `vbench_dimensions_run` lists the real VBench dimensions run here (in the VBench venv, when
it is built) with their agreement against the toy parser's formula. Writes benchmarks/reports/eval.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from host import machine

from raven.config import read_spec, resolve_spec
from raven.evaluation.samples import read_samples
from raven.evaluation.toy import benchmark, drift, video_chunk_bounds
from raven.evaluation.vbench_suite import env_is_built, load_full_info, run_vbench
from raven.io import atomic_write_json
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.render import render

REPORT = Path(__file__).parent / "reports" / "eval.json"
VENV = Path(__file__).resolve().parents[1] / "results" / "envs" / "vbench"
KEYS = ("total", "quality", "semantic", "dyn_deg")


def summary(report: dict) -> dict:
    return {**{key: round(report[key], 4) for key in KEYS}, "videos": report["videos"],
            "dimensions": {k: round(v, 4) for k, v in report["dimensions"].items()}}


def references(spec, prompts: list[str]) -> dict:
    video = spec.video
    truth = np.stack([render(p, i, video.height, video.width, video.frames, video.fps) for i, p in enumerate(prompts)])
    frozen = np.repeat(truth[:, :1], video.frames, axis=1)
    noisy = np.clip(truth + np.random.default_rng(0).normal(0, 25, truth.shape), 0, 255).astype(np.uint8)
    return {name: summary(benchmark(v, prompts, video.fps))
            for name, v in (("ground_truth", truth), ("frozen_first_frame", frozen), ("noise_25", noisy))}


def drift_of(spec, videos: np.ndarray, prompts: list[str]) -> dict:
    bounds = video_chunk_bounds(videos.shape[1], spec.chunks.chunk_size, spec.chunks.first_chunk_size,
                                spec.codec.temporal_factor)
    return drift(videos, prompts, bounds)["per_chunk"]


def vbench_check(prompts: list[str]) -> list[dict]:
    """temporal_flickering (needs no weights) on toy renders, against the parser's identical formula."""
    if not env_is_built(VENV):
        return []
    from raven.data.video import write_mp4

    with tempfile.TemporaryDirectory() as tmp:
        expected = []
        for entry, prompt in zip(load_full_info()[:len(prompts)], prompts):
            for index in range(5):
                frames = render(prompt, index, 32, 32, 9, 8)
                write_mp4(Path(tmp) / "videos" / f"{entry['prompt_en']}-{index}.mp4", frames, 8)
                expected.append(1 - np.abs(np.diff(frames.astype(np.float64), axis=0)).mean() / 255)
        start = time.perf_counter()
        scores = run_vbench(VENV, Path(tmp) / "videos", Path(tmp) / "out", ["temporal_flickering"], Path(tmp) / "cache")
        wall = time.perf_counter() - start
    return [{"dimension": "temporal_flickering", "vbench": scores["temporal_flickering"],
             "toy_parser_formula": float(np.mean(expected)), "videos": len(expected), "wall_s": round(wall, 2)}]


def labelled(items: list[str]) -> dict[str, Path]:
    return {name: Path(folder) for name, _, folder in (item.partition("=") for item in items)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="resolved run spec (default: config/ at the tiny scale)")
    parser.add_argument("--row", action="append", default=[], metavar="NAME=SAMPLES_DIR")
    parser.add_argument("--drift", action="append", default=[], metavar="NAME=LONG_SAMPLES_DIR")
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()
    spec = read_spec(args.spec) if args.spec else resolve_spec(Path(__file__).resolve().parents[1] / "config", "tiny")
    start = time.perf_counter()
    prompts = [prompt_text(p) for p in sample_prompts(args.prompts, "heldout", seed=0)]
    baselines = {}
    for name, folder in labelled(args.row).items():
        samples = read_samples(folder)
        baselines[name] = summary(benchmark(samples.videos, samples.prompts, spec.video.fps))
    long_frames = 4 * spec.video.frames
    truth_long = np.stack([render(p, i, spec.video.height, spec.video.width, long_frames, spec.video.fps)
                           for i, p in enumerate(prompts[:16])])
    drifts = {"ground_truth": drift_of(spec, truth_long, prompts[:16])}
    for name, folder in labelled(args.drift).items():
        samples = read_samples(folder)
        drifts[name] = drift_of(spec, samples.videos, samples.prompts)
    report = {"kind": "toy-world", "scale": spec.scale, "baselines": baselines, "references": references(spec, prompts),
              "drift": drifts, "drift_length_x_training": 4, "vbench_dimensions_run": vbench_check(prompts[:3]),
              "prompts": len(prompts), "wall_s": round(time.perf_counter() - start, 2), "machine": machine(),
              "note": "baselines are filled from the miniatures' sample folders (--row); without them it is empty"}
    atomic_write_json(REPORT, report)
    print({k: report[k] for k in ("baselines", "references", "vbench_dimensions_run")})


if __name__ == "__main__":
    main()
