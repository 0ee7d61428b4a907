"""`raven sample`: stream videos from a trained causal student (docs/method.md §2, §3, §9).

Writes `<out>/videos/{i:05d}.mp4`, `<out>/videos.npy` (uint8 [N, T, H, W, 3], the exact pixels the toy
metrics read), `<out>/samples.json` ([{index, prompt, seed, file}]) and `<out>/summary.json` last
(fps, time to first chunk, latency per chunk). Sample i of prompt p × seed r has index p·seeds + r and
seed `spec.seed + index` (docs/method.md §10). Launched on several ranks, sample i is made by rank
i mod world size; each sample is written as it is made. A rerun whose summary exists does nothing; otherwise
it resumes after the finished samples.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODES = ("consistency", "rolling")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="stream videos from a causal student (KV cache, chunk by chunk)")
    parser.add_argument("--spec", required=True, help="resolved run spec YAML (raven spec)")
    parser.add_argument("--model", required=True,
                        help="student folder: <train out>/model_ema or /model (diffusers save_pretrained), or a "
                             "baseline's released checkpoint (weights.baselines.<row>.path; any checkpoint format)")
    parser.add_argument("--model-key", help="entry of a released checkpoint holding the weights, e.g. generator_ema "
                                            "(default: the first of generator, generator_ema, model, state_dict)")
    parser.add_argument("--lora", help="LoRA merged into the model before sampling (LongLive's base + LoRA)")
    parser.add_argument("--prompts", required=True, help="prompt file, one prompt per line")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--mode", choices=MODES, default="consistency",
                        help="consistency: chunk by chunk (sink/window from spec.chunks); rolling: Rolling "
                             "Forcing's joint window of sampler.rolling_window chunks")
    parser.add_argument("--chunks", type=int, help="chunks per video (default: the spec's horizon; more for drift)")
    parser.add_argument("--seeds-per-prompt", type=int, default=1, help="videos per prompt, each with its own seed")
    parser.add_argument("--batch-size", type=int,
                        help="videos generated together (default: the spec's stages.sample.batch_size)")
    parser.set_defaults(handler=run_sample)


def run_sample(args: argparse.Namespace) -> int:
    summary = Path(args.out) / "summary.json"
    if summary.is_file():
        print(f"raven sample: {summary} exists; nothing to do (delete the folder to sample again)")
        return 0
    for name in ("chunks", "seeds_per_prompt", "batch_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")
    from raven.evaluation.samples import sample_folder

    sample_folder(args.spec, args.model, args.prompts, args.out, args.mode, args.chunks, args.seeds_per_prompt,
                  args.batch_size, model_key=args.model_key, lora=args.lora)
    return 0
