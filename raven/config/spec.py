"""Pydantic models of a resolved run spec.

A run spec is `config/config.yaml` (paths, launcher) merged with `config/scales/<scale>.yaml`
(dims, geometry, budgets) and a row's overrides from `config/experiments.yaml`. Every section
forbids unknown keys so that a typo is an error naming its key path, never a silent default.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

WeightingSpec = float | str
HistoryMode = Literal["raven", "sf", "df", "tf", "df_self_rollout"]
REAL_CLIP_MODES = frozenset({"tf", "df"})  # history modes whose generator step reads real clips (docs/method.md §7)
LauncherName = Literal["local", "debug", "slurm"]


def chunk_frames(latent_frames: int, chunk_size: int, first_chunk_size: int | None = None) -> list[int]:
    """Latent frames per chunk: an optional first chunk of `first_chunk_size`, then `chunk_size` each
    (the last chunk takes the remainder)."""
    sizes, left = [], latent_frames
    first = first_chunk_size or chunk_size
    while left > 0:
        size = min(first if not sizes else chunk_size, left)
        sizes.append(size)
        left -= size
    return sizes


def chunk_layout(chunk_frames: Sequence[int], *, frames: int | None = None, num_chunks: int | None = None) -> list[int]:
    """Chunk sizes of a video of `frames` latent frames or of `num_chunks` chunks (give one): the training
    layout `chunk_frames`, continued beyond the training horizon with its last chunk size; with `frames`
    the last chunk is cut to fit."""
    if (frames is None) == (num_chunks is None):
        raise ValueError("chunk_layout takes exactly one of frames and num_chunks")
    if (frames or num_chunks) <= 0:
        raise ValueError(f"chunk_layout needs a positive length, got frames={frames}, num_chunks={num_chunks}")
    sizes, total = [], 0
    for size in itertools.chain(chunk_frames, itertools.repeat(chunk_frames[-1])):
        if len(sizes) == num_chunks or (frames is not None and total >= frames):
            return sizes
        sizes.append(size if frames is None else min(size, frames - total))
        total += sizes[-1]


def chunk_starts(sizes: Sequence[int]) -> list[int]:
    """First latent frame of each chunk of the layout `sizes`."""
    return list(itertools.accumulate(sizes, initial=0))[:-1]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VideoSpec(Section):
    """Pixel geometry of generated and training videos."""

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    frames: int = Field(gt=0)
    fps: int = Field(gt=0)


class CodecSpec(Section):
    """Pixel <-> latent codec: `pixel` (exact space-to-depth, toy scales) or `wan_vae`."""

    kind: Literal["pixel", "wan_vae"]
    path: Path | None = None
    spatial_factor: int = Field(default=2, gt=0)
    temporal_factor: int = Field(default=1, gt=0)
    latent_channels: int = Field(default=12, gt=0)

    @model_validator(mode="after")
    def _vae_needs_path(self) -> "CodecSpec":
        if self.kind == "wan_vae" and self.path is None:
            raise ValueError("codec.kind 'wan_vae' needs codec.path: a local diffusers AutoencoderKLWan folder")
        return self


class TextEncoderSpec(Section):
    """UMT5 encoder: `toy` builds a small random-initialised UMT5 with a word-level tokenizer."""

    kind: Literal["toy", "umt5"]
    path: Path | None = None
    tokenizer_path: Path | None = None
    max_length: int = Field(default=16, gt=0)
    d_model: int = Field(default=64, gt=0)
    num_layers: int = Field(default=2, gt=0)
    num_heads: int = Field(default=4, gt=0)
    d_ff: int = Field(default=128, gt=0)
    # toy: added to every layer's relative-attention bias towards the previous token (first half of the heads)
    # and the next one (second half), so each token's output carries its neighbours' words and a two-object
    # prompt says which object has which shape and motion; 0 keeps the plain random init, whose output tells
    # "red circle ... blue square" from "red square ... blue circle" by 4% (benchmarks/text_binding.py)
    neighbour_bias: float = Field(default=0.0, ge=0.0)

    @model_serializer(mode="wrap")
    def _neighbour_bias_only_when_set(self, handler):
        """A spec written before the key existed keeps its text, hash and run identity: 0 is left out."""
        data = handler(self)
        if not self.neighbour_bias:
            data.pop("neighbour_bias", None)
        return data

    @model_validator(mode="after")
    def _umt5_keys(self) -> "TextEncoderSpec":
        if self.kind == "umt5" and self.path is None:
            raise ValueError("text_encoder.kind 'umt5' needs text_encoder.path: a local UMT5 encoder folder")
        if self.kind == "umt5" and self.neighbour_bias:
            raise ValueError("text_encoder.neighbour_bias shapes the toy encoder's random weights; a 'umt5' encoder is "
                             "loaded as trained: remove the key")
        return self


class TransformerSpec(Section):
    """Dimensions of the diffusers `WanTransformer3DModel` (student, critic and base share them)."""

    num_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    attention_head_dim: int = Field(gt=0)
    ffn_dim: int = Field(gt=0)
    freq_dim: int = Field(default=256, gt=0)
    patch_size: tuple[int, int, int] = (1, 2, 2)
    cross_attn_norm: bool = True
    qk_norm: str = "rms_norm_across_heads"
    eps: float = 1e-6

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim


class ChunkSpec(Section):
    """Chunking of the latent video, counted in latent frames; sink/window counted in chunks."""

    chunk_size: int = Field(default=3, gt=0)
    first_chunk_size: int | None = Field(default=None, gt=0)
    sink: int = Field(default=0, ge=0)
    window: int | None = Field(default=None, gt=0)


class SamplerSpec(Section):
    """The student's few-step sampler (docs/method.md §2) or a baseline's step list (docs/method.md §9)."""

    kind: Literal["consistency", "euler_maruyama", "rolling"] = "consistency"
    num_steps: int = Field(default=4, gt=0)
    shift: float = Field(default=5.0, gt=0)
    warp: bool = True
    timesteps: list[int] | None = None
    eta: float = Field(default=0.0, ge=0)
    em_convention: Literal["release", "flow_grpo"] = Field(
        default="release", description="Euler-Maruyama kernel (kind euler_maruyama, docs/method.md §8): `release`, the "
        "release's kernel the paper's Flow-GRPO rows used (sigma_max 1 at t = 1000, noise kept at the last step), "
        "or `flow_grpo`, Flow-GRPO's own (sigma_max the first step below 1000, deterministic last step)")
    guidance: float = Field(default=1.0, ge=0)
    rolling_window: int = Field(default=5, gt=0)


class OptimSpec(Section):
    lr: float = Field(gt=0)
    betas: tuple[float, float] = (0.0, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=1000.0, gt=0)


class BaselineWeights(Section):
    """A baseline's released checkpoint (docs/method.md §9): the file or folder, the entry holding the weights
    (`generator` or `generator_ema`; None: the first present), and an optional LoRA merged into it (LongLive)."""

    path: Path
    key: str | None = None
    lora: Path | None = None


# The two ODE inits a DMD row can start from and the mode of the trajectories each regresses on.
INIT_MODES = {"ode_causal": "chunkwise", "ode_bidirectional": "bidirectional"}


# `--config from_scratch=true` and the base benchmark: the models the tiny scale releases are trained, not loaded
FROM_SCRATCH = {"weights": {"base": None, "causal_init": None, "bidirectional_init": None}}


class WeightsSpec(Section):
    """Local weight paths. `None` means: train it in this pipeline (toy scales)."""

    teacher: Path | None = None
    base: Path | None = None
    causal_init: Path | None = None
    bidirectional_init: Path | None = Field(default=None, description="the ODE-initialised student of the "
                                            "bidirectional teacher's trajectories (CausVid-style init, ode_bidirectional)")
    raven: Path | None = None
    baselines: dict[str, BaselineWeights] = Field(
        default_factory=dict, description="row -> released checkpoint; such a row is sampled, not trained")

    def released_init(self, mode: str) -> Path | None:
        """The released student that replaces the ODE init of pairs mode `mode`: `causal_init` for chunkwise
        (Causal Forcing), `bidirectional_init` for bidirectional (CausVid-style); None: trained here."""
        return self.causal_init if mode == "chunkwise" else self.bidirectional_init


class LauncherSpec(Section):
    """How `raven launch` submits a stage through submitit."""

    name: LauncherName = "local"
    nodes: int = Field(default=1, gt=0)
    gpus_per_node: int = Field(default=0, ge=0)
    tasks_per_node: int | None = Field(default=None, gt=0, description="default: one task per GPU (one if no "
                                       "GPU); 1 for a job that uses every GPU of its node itself (VBench, judge)")
    cpus_per_task: int = Field(default=2, gt=0)
    mem_gb: float = Field(default=8, gt=0)
    timeout_min: int = Field(default=60, gt=0)
    partition: str | None = None
    account: str | None = None
    max_requeues: int = Field(default=3, ge=0)
    signal_delay_s: int = Field(default=120, ge=0, description="SLURM warns the job this long before its time limit")
    gpu_mem_gb: float | None = Field(default=None, gt=0, description="memory of one GPU of the partition; "
                                     "`raven preflight` checks each stage's estimated peak against it")
    extra_sbatch: dict[str, str] = Field(default_factory=dict)


class RunSpec(Section):
    """Everything one stage needs, resolved from config files; written next to the stage's outputs."""

    scale: str
    row: str | None = None
    seed: int = 0
    seeds: int = Field(default=1, ge=1, description="training seeds per trained row: replicas <row>@s1.. beside "
                       "<row>, each with seed + k * REPLICA_SEED_STRIDE (raven.config.load); tables report their spread")
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32", description="compute dtype on the device: trained models under FSDP2 (parameters in it, "
        "gradients reduced in fp32, fp32 master weights), frozen teacher/codec/text encoder/reward models and "
        "sampling in it; bf16 at paper scale, fp32 at the toy scales")
    results_dir: Path = Path("results")
    tracking_uri: str = "sqlite:///results/mlflow.db"
    video: VideoSpec
    codec: CodecSpec
    text_encoder: TextEncoderSpec
    transformer: TransformerSpec
    chunks: ChunkSpec = ChunkSpec()
    sampler: SamplerSpec = SamplerSpec()
    weights: WeightsSpec = WeightsSpec()
    launcher: LauncherSpec = LauncherSpec()
    launchers: dict[str, dict] = Field(
        default_factory=dict,
        description="Per-stage launcher overrides merged onto `launcher` by `raven launch --stage NAME`.",
    )
    stages: dict[str, dict] = Field(
        default_factory=dict,
        description="Per-stage options (base, ode_init, dmd, cmgrpo, eval...); each stage validates its own.",
    )

    @field_validator("scale")
    @classmethod
    def _scale_is_a_name(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"scale {value!r} must be a plain name such as 'tiny' (a file config/scales/<scale>.yaml)")
        return value

    @property
    def latent_frames(self) -> int:
        factor = self.codec.temporal_factor
        return 1 + (self.video.frames - 1) // factor if factor > 1 else self.video.frames

    @property
    def chunk_frames(self) -> list[int]:
        """Latent frames per chunk of one training-length video."""
        return chunk_frames(self.latent_frames, self.chunks.chunk_size, self.chunks.first_chunk_size)

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """(channels, latent frames, height, width) of one video latent."""
        factor = self.codec.spatial_factor
        return (self.codec.latent_channels, self.latent_frames, self.video.height // factor, self.video.width // factor)
