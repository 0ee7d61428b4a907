"""Benchmark: Euler samples of the toy world's exact teacher, judged by the toy-world parser.

Checks teacher, ODE sampler and parser together (issue 3). Writes benchmarks/reports/teacher.json with
colour_acc, shape_acc, direction_acc, count_acc over held-out prompts for the exact conditional teacher
(guidance 1), and under `guidance_sweep` the same with CFG against the training prompts' mixture:
an exact denoiser has nothing for CFG to sharpen, and extrapolating away from the all-prompt posterior
pushes held-out samples off the data: a held-out prompt's items are not in the unconditional mixture, so
near σ = 0 the unconditional posterior picks another prompt's item and the extrapolation moves away
from it. `train_prompts_cfg` shows the same guidance on training prompts (inside that mixture).

    .venv/bin/python benchmarks/teacher.py [--prompts 256] [--steps 40]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from host import machine
from tqdm import tqdm

from raven.diffusion.ode import euler_sample, euler_timesteps
from raven.io import atomic_write_json
from raven.runtime import apply_thread_policy
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.parser import accuracy
from raven.world.render import to_uint8
from raven.world.teacher import ExactTeacher

REPORT = Path(__file__).parent / "reports" / "teacher.json"


def judge(teacher: ExactTeacher, prompts: list[str], guidance: float, steps: int, shift: float, seed: int,
          batch: int) -> dict:
    videos = []
    start = time.perf_counter()
    for first in tqdm(range(0, len(prompts), batch), desc=f"teacher cfg {guidance}"):
        group = prompts[first: first + batch]
        noise = torch.randn(len(group), 3, 9, 16, 16, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(seed + first))
        samples = euler_sample(lambda x, t: teacher(x, t, group, guidance), noise, euler_timesteps(steps, shift))
        videos.append(to_uint8(samples.numpy()))
    wall = time.perf_counter() - start
    return {**accuracy(np.concatenate(videos), prompts), "guidance": guidance, "prompts": len(prompts), "steps": steps, "shift": shift,
            "wall_s": round(wall, 2), "samples_per_s": round(len(prompts) / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--uncond-prompts", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--shift", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads per process (default: RAVEN_THREADS, else 1; raven.runtime)")
    args = parser.parse_args()
    apply_thread_policy(args.threads)
    heldout = [prompt_text(p) for p in sample_prompts(args.prompts, "heldout", seed=0)]
    train = [prompt_text(p) for p in sample_prompts(args.uncond_prompts, "train", seed=0)]
    teacher = ExactTeacher(16, 16, 9, uncond_prompts=train)
    exact = judge(teacher, heldout, 1.0, args.steps, args.shift, seed=0, batch=args.batch)
    sweep = [judge(teacher, heldout, w, args.steps, args.shift, seed=0, batch=args.batch) for w in (1.5, 2.0, 3.0)]
    on_train = judge(teacher, train[: args.prompts // 4], 3.0, args.steps, args.shift, seed=0, batch=args.batch)
    report = {**exact, "uncond_prompts": len(train), "split": "heldout", "guidance_sweep": sweep,
              "train_prompts_cfg": on_train, "machine": machine()}
    atomic_write_json(REPORT, report)
    print(report)


if __name__ == "__main__":
    main()
