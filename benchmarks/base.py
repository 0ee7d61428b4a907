"""Learning curve of the tiny base model (issues 3, 19): `raven train base` to a fixed iteration count,
cut into segments of `--every` iterations; after each, the EMA weights are sampled and judged on held-out
prompts (colour–shape–motion combinations never seen in training) with the toy world's parser. The final
weights are also judged on their training prompts (`train_accuracy`), and both judgements are split per object
into one- and two-object prompts (`by_objects`). `--judge-only` judges a finished run
in `--work` again without training (`wall_s` is then the judging time).

A run is its iteration count: segments resume the checkpoints in `--work`, so a long run (hours on the
2-core box) can be stopped and continued, in a later session too (the curve so far is kept in
`<work>/curve.json`). The last point is judged on `--final-heldout` prompts. Writes
benchmarks/reports/base.json.

    .venv/bin/python benchmarks/base.py [--scale tiny] [--iterations N] [--every 5000] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from host import machine

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"colour_acc": 0.95, "shape_acc": 0.9, "direction_acc": 0.8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="tiny")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; on the 2-core box one thread steps ~2x faster than two")
    parser.add_argument("--iterations", type=int, help="total iterations (default: stages.base.iterations)")
    parser.add_argument("--every", type=int, default=5000, help="iterations between evaluations")
    parser.add_argument("--heldout", type=int, default=64, help="held-out prompts judged at each curve point")
    parser.add_argument("--final-heldout", type=int, default=256, help="held-out prompts judged at the end")
    parser.add_argument("--guidance-sweep", type=float, nargs="*", default=[1.0, 2.0, 3.0],
                        help="also judge the final EMA weights sampled at these CFG scales")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "reports" / "base.json"))
    parser.add_argument("--work", help="working folder, kept for resuming (default: a temporary one)")
    parser.add_argument("--judge-only", action="store_true",
                        help="judge the finished run in --work again (final, CFG sweep, training prompts) without "
                             "training; its curve is kept as recorded")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key of the scale's spec, as `raven spec --set`, e.g. "
                             "--set text_encoder.neighbour_bias=4; part of the run's identity")
    parser.add_argument("--train-prompts", type=int,
                        help="training prompts (default: stages.data.train_prompts); part of the run's identity, so "
                             "a resumed run must give the same number")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from raven.cli.spec import parse_overrides
    from raven.config import deep_merge, resolve_spec, write_spec
    from raven.config.spec import FROM_SCRATCH
    from raven.data.prompts import read_prompt_file, write_prompt_file
    from raven.io import atomic_write_json
    from raven.training.base import ModelParts, base_stage_options, heldout_accuracy, sample_videos, train_base
    from raven.world.grammar import prompt_text, sample_prompts

    work = Path(args.work or tempfile.mkdtemp(prefix="raven-base-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    # the base trains from scratch: the scale's released weights are no part of its run (as from_scratch=true)
    spec = resolve_spec(ROOT / "config", args.scale, overrides=deep_merge(FROM_SCRATCH, parse_overrides(args.set)))
    spec = spec.model_copy(update={"tracking_uri": f"sqlite:///{work}/mlflow.db"})
    if args.train_prompts:
        spec = spec.model_copy(update={"stages": deep_merge(spec.stages, {"data": {"train_prompts": args.train_prompts}})})
    options = base_stage_options(spec)
    total = args.iterations or options.iterations
    data = spec.stages.get("data", {})
    train_prompts = [prompt_text(p) for p in sample_prompts(data.get("train_prompts", 256), "train", spec.seed)]
    heldout = [prompt_text(p) for p in sample_prompts(args.final_heldout, "heldout", spec.seed)]
    parts = ModelParts.build(spec)
    curve_file = work / "curve.json"
    curve = json.loads(curve_file.read_text()) if curve_file.is_file() else []

    def videos_of(model, prompts, opts):
        return sample_videos(model, parts.encode_text, parts.codec.decode, prompts, spec.latent_shape, opts, seed=10_000)

    def judge(model, prompts, opts):
        return heldout_accuracy(videos_of(model, prompts, opts), prompts)

    def judge_by_objects(model, prompts, opts):
        videos = videos_of(model, prompts, opts)
        return {**heldout_accuracy(videos, prompts), "by_objects": objects_judged(videos, prompts)}

    started = time.perf_counter()
    if args.judge_only:
        train_prompts = read_prompt_file(work / "train.txt")
        summary = json.loads((work / "base" / "summary.json").read_text())
    else:
        write_prompt_file(work / "train.txt", train_prompts)
        target = min(max((p["iterations"] for p in curve), default=0) + args.every, total)
        while True:
            segment = deep_merge(spec.stages, {"base": {"iterations": target, "budget_s": None}})
            write_spec(spec.model_copy(update={"stages": segment}), work / "spec.yaml")
            summary = train_base(work / "spec.yaml", prompts=str(work / "train.txt"), out=str(work / "base"))
            model = parts.load(work / "base" / "model_ema").eval()
            eval_start = time.perf_counter()
            point = {"iterations": summary["iterations"], "train_s": round(summary["train_s"], 1),
                     "prompts": args.heldout, **judge_by_objects(model, heldout[: args.heldout], options),
                     "eval_s": round(time.perf_counter() - eval_start, 1)}
            curve = [p for p in curve if p["iterations"] != point["iterations"]] + [point]
            atomic_write_json(curve_file, curve)
            print(point, flush=True)
            if target >= total:
                break
            target = min(target + args.every, total)
    model = parts.load(work / "base" / "model_ema").eval()

    final = {"iterations": summary["iterations"], "train_s": round(summary["train_s"], 1),
             "prompts": len(heldout), **judge_by_objects(model, heldout, options)}
    guidance_sweep = [{"guidance": g, **judge(model, heldout, options.model_copy(update={"guidance": g}))}
                      for g in args.guidance_sweep]
    # the same judgement on prompts it was trained on: the gap to `final` is what prompts it never saw cost
    seen = train_prompts[: args.final_heldout]
    train_accuracy = {"prompts": len(seen), **judge_by_objects(model, seen, options)}
    report = {
        "scale": args.scale,
        "objective": summary["objective"],
        "prediction_loss": summary["prediction_loss"],
        "batch_size": options.batch_size,
        "prompts": len(heldout),
        **{k: final[k] for k in ("colour_acc", "shape_acc", "direction_acc", "count_acc", "iterations", "train_s")},
        "wall_s": round(time.perf_counter() - started, 1),
        "sampler": {"euler_steps": options.sample_steps, "shift": options.sample_shift, "guidance": options.guidance},
        "curve": curve,
        "guidance_sweep": guidance_sweep,
        "train_accuracy": train_accuracy,
        "heldout_by_objects": final["by_objects"],
        "judge_only": args.judge_only,
        "targets": TARGETS,
        "targets_met": {k: final[k] >= v for k, v in TARGETS.items()},
        "machine": machine(),
    }
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")


def objects_judged(videos, prompts) -> dict:
    """raven.world.parser.by_objects of sampled videos against their prompts."""
    from raven.world.parser import by_objects, object_matches, parse_video

    return by_objects([object_matches(parse_video(v), p) for v, p in zip(videos, prompts)], prompts)


if __name__ == "__main__":
    main()
