"""The toy scales' stand-ins inside VBench's protocol (docs/method.md §10), so that toy DAGs run the same rules
(protocol plan, protocol sampling, names, static filter, scored set) as the paper's:

- suite: the held-out toy prompts, one entry each; the first `flicker_prompts` are its temporal-flickering
  prompts (as VBench's first 75), with `flicker_samples` files each, the others `samples`
  (`stages.toy_protocol`).
- static filter: per flickering prompt, its first `samples` clips that the toy world's dynamic-degree
  rule (VBench's rule on optical flow, `raven.evaluation.toy.is_dynamic`) calls static.
- scorer: the toy-world benchmark on the scored set, read from its mp4s (lossless: the exact pixels).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from raven.evaluation.options import ToyProtocolOptions
from raven.evaluation.vbench_suite import FLICKER, VBenchFile, scored_files, scoring_folder

TOY_DIMENSION = "toy_world"  # every other suite entry: scored on all toy stand-ins


def toy_suite(prompts: Sequence[str], flicker_prompts: int) -> list[dict]:
    """Suite entries ({prompt_en, dimension}, as VBench_full_info.json) of the held-out toy prompts."""
    if flicker_prompts > len(prompts):
        raise ValueError(f"stages.toy_protocol.flicker_prompts is {flicker_prompts}, but the suite has only "
                         f"{len(prompts)} prompts (stages.data.heldout_prompts)")
    return [{"prompt_en": prompt, "dimension": [FLICKER if position < flicker_prompts else TOY_DIMENSION]}
            for position, prompt in enumerate(prompts)]


def is_static(frames: np.ndarray) -> bool:
    from raven.evaluation.toy import is_dynamic
    from raven.world.parser import dynamic_degree

    return not is_dynamic(dynamic_degree(frames), *frames.shape[1:3])


def toy_static_filter(files: Sequence[VBenchFile], samples: int):
    """The static filter of the toy scales for `scoring_folder`: links each flickering prompt's first
    `samples` static clips as `<prompt>-0..samples-1` into its output folder."""
    from raven.data.video import read_mp4

    def run(videos: Path, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        kept: dict[str, int] = {}
        for item in files:
            if not item.flicker or kept.get(item.prompt, 0) == samples:
                continue
            if is_static(read_mp4(videos / item.name)[0]):
                target = out / f"{item.prompt}-{kept.get(item.prompt, 0)}.mp4"
                if not os.path.lexists(target):
                    target.symlink_to((videos / item.name).resolve())
                kept[item.prompt] = kept.get(item.prompt, 0) + 1
        return out

    return run


def score_toy_protocol(samples: str | Path, files: Sequence[VBenchFile], options: ToyProtocolOptions,
                       work: str | Path, fps: float) -> dict:
    """`raven eval toy --plan`: the scoring folder of a row's samples (toy static filter when configured)
    scored by the toy-world benchmark, with the folder's counts."""
    from raven.data.video import read_mp4
    from raven.evaluation.toy import benchmark

    work = Path(work)
    static_filter = toy_static_filter(files, options.samples) if options.static_filter else None
    counts = scoring_folder(samples, files, work, options.samples, static_filter)
    scored = [item for item in scored_files(files, options.samples) if (work / "scored" / item.name).exists()]
    videos = np.stack([read_mp4(work / "scored" / item.name)[0] for item in scored])
    return {**benchmark(videos, [item.prompt for item in scored], fps), **counts}
