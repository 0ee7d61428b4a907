"""Options of the evaluation stages, validated from the run spec's `stages.<name>` (unknown keys are errors)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from raven.config import Section
from raven.evaluation.scores import DIMENSIONS
from raven.evaluation.vbench_suite import FULL_INFO


class VBenchOptions(Section):
    """`stages.vbench`: the protocol's counts and the separate VBench environment."""

    venv: Path = Path("results/envs/vbench")
    cache_dir: Path | None = Field(default=None, description="VBench weights, laid out like ~/.cache/vbench")
    full_info: Path = FULL_INFO
    extended_prompts: Path | None = Field(default=None, description="one LLM-extended prompt per suite line")
    flicker_samples: int = Field(default=25, gt=0)
    samples: int = Field(default=5, gt=0)
    max_prompts: int | None = Field(default=None, gt=0)
    dimensions: list[str] = Field(default_factory=lambda: list(DIMENSIONS))
    static_filter: bool = True
    gpus: int = Field(default=0, ge=0, description="GPUs of the node VBench runs on under torchrun (0, 1: one process)")
    detectron2: Path | None = Field(default=None, description="local detectron2 source tree or wheel for the GRiT "
                                    "dimensions, installed into the venv (not on PyPI)")


class ToyProtocolOptions(Section):
    """`stages.toy_protocol`: the toy scales' stand-in for VBench's protocol (raven.evaluation.vbench_toy)."""

    flicker_prompts: int = Field(default=0, ge=0, description="the suite's first prompts that are its "
                                 "temporal-flickering ones (VBench: the first 75)")
    flicker_samples: int = Field(default=1, gt=0, description="files per flickering prompt")
    samples: int = Field(default=1, gt=0, description="files per other prompt; static clips kept per flickering one")
    static_filter: bool = False


class SampleOptions(Section):
    """`stages.sample`: how `raven sample` batches its videos. The videos do not depend on it: each has its own
    seed, so every batch size gives the same pixels (tests/test_sample_distributed.py, benchmarks/sample_batch.py)."""

    batch_size: int = Field(default=8, gt=0, description="videos generated together on one rank; the memory "
                            "preflight checks it against the GPU (bigger batches: fewer, larger forwards)")


class UnifiedRewardOptions(Section):
    """`stages.unified_reward`: UnifiedReward-qwen-32B (Qwen2.5-VL) from a local folder."""

    model: Path | None = Field(default=None, description="local folder of UnifiedReward-qwen-32B")
    fps: float = Field(default=2.0, gt=0)
    max_new_tokens: int = Field(default=256, gt=0)
    dtype: str = "bfloat16"


class UserStudyOptions(Section):
    """`stages.userstudy`: blinded A/B pairs of `method` against every other method whose samples are given
    (the `user_study` table of config/experiments.yaml lists them; docs/method.md §10)."""

    method: str = "raven"
    prompts: int = Field(default=100, gt=0)
    samples_per_prompt: int = Field(default=4, gt=0)
    seed: int = 0
    bootstrap: int = Field(default=2000, gt=0)
