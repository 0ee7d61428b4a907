"""Options of the data stage (`stages.data` in a scale file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from raven.config import Section

VIDPROM_SAFETY_COLUMNS = ["toxicity", "obscene", "identity_attack", "insult", "threat", "sexual_explicit"]
MOTION_KEYWORDS = [
    "walk", "walks", "walking", "run", "runs", "running", "jump", "jumps", "jumping", "dance", "dances",
    "dancing", "fly", "flies", "flying", "swim", "swims", "swimming", "ride", "rides", "riding", "move",
    "moves", "moving", "drive", "drives", "driving", "spin", "spins", "spinning", "fall", "falls", "falling",
    "play", "plays", "playing", "chase", "chasing", "climb", "climbing", "wave", "waves", "waving", "rolling",
]
SUBJECT_KEYWORDS = [
    "man", "woman", "person", "people", "child", "girl", "boy", "dog", "cat", "horse", "bird", "car", "robot",
    "fish", "animal", "astronaut", "dancer", "player", "train", "boat", "ship", "dragon", "bear", "lion",
]


class DataOptions(Section):
    """`stages.data`: where prompts and clips come from and how many."""

    prompt_source: Literal["toy", "vidprom", "file"] = "toy"
    train_prompts: int = Field(default=256, gt=0)
    heldout_prompts: int = Field(default=64, ge=0)
    seed: int = 0
    two_object_fraction: float = Field(default=0.3, ge=0, le=1)
    vidprom_path: Path | None = None
    prompt_file: Path | None = None
    prompt_column: str = "prompt"
    safety_columns: list[str] = Field(default_factory=lambda: list(VIDPROM_SAFETY_COLUMNS))
    safety_max: float = Field(default=0.2, ge=0, le=1)
    min_words: int = Field(default=3, gt=0)
    max_words: int = Field(default=120, gt=0)
    motion_keywords: list[str] = Field(default_factory=lambda: list(MOTION_KEYWORDS))
    subject_keywords: list[str] = Field(default_factory=lambda: list(SUBJECT_KEYWORDS))
    max_line_chars: int = Field(default=2000, gt=0)
    clip_source: Literal["toy", "openvid"] = "toy"
    clips_per_prompt: int = Field(default=4, gt=0)
    render_fps: float = Field(default=4.0, gt=0)
    shard_size: int = Field(default=256, gt=0)
    openvid_path: Path | None = None
    openvid_csv: str = "OpenVid-1M.csv"
    interpolator: Literal["flow", "rife"] = "flow"  # OpenVid upsampling: Farneback (CPU) or Practical-RIFE
    rife_path: Path | None = None  # Practical-RIFE v4.25/v4.26 flownet.pkl (interpolator: rife)
    max_clips: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _sources_have_paths(self) -> "DataOptions":
        if self.prompt_source == "vidprom" and self.vidprom_path is None:
            raise ValueError("prompt_source 'vidprom' needs vidprom_path: VidProM's metadata (parquet or CSV)")
        if self.prompt_source == "file" and self.prompt_file is None:
            raise ValueError("prompt_source 'file' needs prompt_file: a UTF-8 file with one prompt per line")
        if self.clip_source == "openvid" and self.openvid_path is None:
            raise ValueError("clip_source 'openvid' needs openvid_path: a folder with the OpenVid CSV and mp4 files")
        if self.interpolator == "rife" and self.rife_path is None:
            raise ValueError("interpolator 'rife' needs rife_path: Practical-RIFE's flownet.pkl (v4.25/v4.26)")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words {self.min_words} > max_words {self.max_words}")
        return self
