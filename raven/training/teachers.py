"""The DMD teacher ("real score", docs/method.md §4): one interface giving x̂0_real in latent space with CFG.

- `WanTeacher`: a frozen bidirectional diffusers `WanTransformer3DModel` loaded from a local folder
  (Wan2.1-T2V-14B at paper scale), CFG 3.0 against the release's negative prompt (Wan's, led by
  "slow motion, time dilation, 高帧率"; `stages.dmd.teacher_negative: wan` gives Wan's own).
- `ToyTeacher`: the toy world's exact denoiser (`raven.world.teacher`) seen through the pixel codec.
  The pixel codec is an exact permutation of pixels, so noising in latent space is noising in pixel
  space and the teacher stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from raven.diffusion.schedule import cfg_combine, x0_from_velocity

# Wan2.1's default negative prompt (shared_config.sample_neg_prompt of the Wan2.1 release).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，"
    "手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# The release's teacher negative (`default_neg_prompt` of its causal Wan meta-model, docs/method.md §4): Wan's, led by
# "slow motion, time dilation, high frame rate".
RELEASE_NEGATIVE_PROMPT = "slow motion, time dilation, 高帧率，" + WAN_NEGATIVE_PROMPT
NEGATIVE_PROMPTS = {"release": RELEASE_NEGATIVE_PROMPT, "wan": WAN_NEGATIVE_PROMPT}


class Teacher(Protocol):
    """x̂0_real(x_t, t, prompts): latents [B, C, F, h, w], integer times [B], one prompt per sample."""

    def x0(self, x_t: torch.Tensor, t: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


class Codec(Protocol):
    """Pixel videos [B, 3, T, H, W] in [-1, 1] <-> latents [B, C, F, h, w] (raven.models)."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


def require_teacher_path(path: str | Path | None) -> Path:
    """The teacher's local diffusers folder, or an error naming the config key and the fix."""
    if path is None:
        raise FileNotFoundError(
            "weights.teacher is not set: the DMD teacher needs a local diffusers WanTransformer3DModel folder "
            "(config.json + diffusion_pytorch_model*.safetensors); set weights.teacher in config/config.yaml "
            "or use a toy scale (teacher.kind: toy)"
        )
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"weights.teacher = {path}: no config.json there; expected a diffusers WanTransformer3DModel folder "
            "written by save_pretrained (e.g. the transformer/ folder of Wan2.1-T2V-14B-Diffusers)"
        )
    return path


@dataclass
class WanTeacher:
    """A frozen bidirectional Wan transformer with CFG against a negative prompt (docs/method.md §4)."""

    transformer: torch.nn.Module
    encode_text: Callable[[Sequence[str]], torch.Tensor]
    guidance: float = 3.0
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT

    @classmethod
    def from_path(
        cls,
        path: str | Path | None,
        encode_text: Callable[[Sequence[str]], torch.Tensor],
        guidance: float = 3.0,
        negative_prompt: str = RELEASE_NEGATIVE_PROMPT,
        dtype: torch.dtype = torch.float32,
    ) -> WanTeacher:
        from diffusers import WanTransformer3DModel

        from raven.models.checkpoints import check_weight_files

        folder = require_teacher_path(path)
        check_weight_files(folder)
        transformer = WanTransformer3DModel.from_pretrained(folder, torch_dtype=dtype, local_files_only=True)
        transformer.eval().requires_grad_(False)
        return cls(transformer, encode_text, guidance, negative_prompt)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        dtype = next(self.transformer.parameters()).dtype
        out = self.transformer(x_t.to(dtype), t, text.to(x_t.device, dtype), return_dict=False)[0]
        return out.to(x_t.dtype)

    @torch.no_grad()
    def x0(self, x_t: torch.Tensor, t: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        cond = self.velocity(x_t, t, self.encode_text(list(prompts)))
        if self.guidance == 1.0:
            return x0_from_velocity(x_t, cond, t)
        negative = self.velocity(x_t, t, self.encode_text([self.negative_prompt] * len(prompts)))
        return x0_from_velocity(x_t, cfg_combine(cond, negative, self.guidance), t)


@dataclass
class ToyTeacher:
    """The toy world's exact denoiser in latent space through the pixel codec (an exact permutation).

    `denoise(x_t_pixels, t, prompts, guidance) -> x̂0_pixels` is `raven.world`'s exact teacher; its CFG
    is against the all-prompt mixture, the toy world's negative prompt.
    """

    denoise: Callable[[torch.Tensor, torch.Tensor, Sequence[str], float], torch.Tensor]
    codec: Codec
    guidance: float = 3.0

    @torch.no_grad()
    def x0(self, x_t: torch.Tensor, t: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        pixels = self.codec.decode(x_t)
        return self.codec.encode(self.denoise(pixels, t, list(prompts), self.guidance))


def build_teacher(
    kind: str,
    guidance: float,
    path: str | Path | None,
    encode_text: Callable[[Sequence[str]], torch.Tensor],
    codec: Codec,
    toy_denoise: Callable[[torch.Tensor, torch.Tensor, Sequence[str], float], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float32,
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT,
) -> Teacher:
    """`stages.dmd.teacher`: `wan` loads `weights.teacher` (in `dtype`, CFG against `negative_prompt`); `toy`
    wraps the toy world's exact denoiser."""
    if kind == "wan":
        return WanTeacher.from_path(path, encode_text, guidance, negative_prompt, dtype)
    if toy_denoise is None:
        raise ValueError("stages.dmd.teacher 'toy' needs the toy world's exact denoiser (raven.world.teacher)")
    return ToyTeacher(toy_denoise, codec, guidance)
