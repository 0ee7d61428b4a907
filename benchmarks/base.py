"""Learning benchmark of the base model at tiny scale (issue 3): train `raven train base` within its
default budget (stages.base.budget_s) and judge Euler samples of its EMA weights on 64 held-out prompts
(colour–shape–motion combinations never seen in training) with the toy world's parser.

The run is cut into segments of `--every` seconds of training time; after each, the EMA weights are
sampled and judged (evaluation time is not training time), giving the accuracy curve over training
time. Writes benchmarks/reports/base.json.

    .venv/bin/python benchmarks/base.py [--scale tiny] [--threads 1] [--every 150]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from host import machine

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on the 2-core box one thread steps ~2x faster than two")
    parser.add_argument("--every", type=float, default=150.0, help="training seconds between evaluations")
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--guidance-sweep", type=float, nargs="*", default=[1.0, 2.0, 3.0],
                        help="also judge the final EMA weights sampled at these CFG scales")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "base.json"))
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from raven.config import deep_merge, resolve_spec, write_spec
    from raven.data.prompts import write_prompt_file
    from raven.io import atomic_write_json
    from raven.training.base import ModelParts, base_stage_options, heldout_accuracy, sample_videos, train_base
    from raven.world.grammar import prompt_text, sample_prompts

    work = Path(args.work or tempfile.mkdtemp(prefix="raven-base-bench-"))
    spec = resolve_spec(ROOT / "config", args.scale)
    spec = spec.model_copy(update={"tracking_uri": f"sqlite:///{work}/mlflow.db"})
    options = base_stage_options(spec)
    budget = options.budget_s
    data = spec.stages.get("data", {})
    train_prompts = [prompt_text(p) for p in sample_prompts(data.get("train_prompts", 256), "train", spec.seed)]
    heldout = [prompt_text(p) for p in sample_prompts(args.heldout, "heldout", spec.seed)]
    write_prompt_file(work / "train.txt", train_prompts)
    parts = ModelParts.build(spec)

    started, curve, summary = time.perf_counter(), [], {}
    segment = 0
    while True:
        segment += 1
        limit = min(budget, segment * args.every)
        segment_spec = spec.model_copy(update={"stages": deep_merge(spec.stages, {"base": {"budget_s": limit}})})
        spec_file = work / "spec.yaml"
        write_spec(segment_spec, spec_file)
        summary = train_base(spec_file, prompts=str(work / "train.txt"), out=str(work / "base"))
        model = parts.load(work / "base" / "model_ema").eval()
        eval_start = time.perf_counter()
        videos = sample_videos(model, parts.encode_text, parts.codec.decode, heldout, spec.latent_shape, options,
                               seed=10_000)
        point = {"train_s": round(summary["train_s"], 1), "iterations": summary["iterations"],
                 **heldout_accuracy(videos, heldout), "eval_s": round(time.perf_counter() - eval_start, 1)}
        curve.append(point)
        print(point, flush=True)
        if not summary["stopped_by_budget"] or limit >= budget:
            break

    final = curve[-1]
    guidance_sweep = []
    for guidance in args.guidance_sweep:
        swept = options.model_copy(update={"guidance": guidance})
        videos = sample_videos(model, parts.encode_text, parts.codec.decode, heldout, spec.latent_shape, swept,
                               seed=10_000)
        guidance_sweep.append({"guidance": guidance, **heldout_accuracy(videos, heldout)})
        print(guidance_sweep[-1], flush=True)
    report = {
        "scale": args.scale,
        "objective": summary["objective"],
        "prediction_loss": summary["prediction_loss"],
        "budget_s": budget,
        "batch_size": options.batch_size,
        "prompts": len(heldout),
        "colour_acc": final["colour_acc"],
        "shape_acc": final["shape_acc"],
        "direction_acc": final["direction_acc"],
        "count_acc": final["count_acc"],
        "iterations": final["iterations"],
        "train_s": final["train_s"],
        "wall_s": round(time.perf_counter() - started, 1),
        "sampler": {"euler_steps": options.sample_steps, "shift": options.sample_shift, "guidance": options.guidance},
        "curve": curve,
        "guidance_sweep": guidance_sweep,
        "targets": {"colour_acc": 0.9, "shape_acc": 0.8, "within_s": 900},
        "machine": machine(),
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
