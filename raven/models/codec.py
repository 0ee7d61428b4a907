"""Pixel videos [B, 3, T, H, W] in [-1, 1] <-> latents [B, C, F, h, w].

`pixel`: exact space-to-depth (toy scales): a permutation of pixels, so noise in latent space is noise
in pixel space and the toy world's exact teacher stays exact. `wan_vae`: diffusers AutoencoderKLWan
from a local folder, latents normalised per channel with the VAE's `latents_mean`/`latents_std`, as Wan.
"""

from __future__ import annotations

from pathlib import Path

import torch

from raven.config import ConfigError, RunSpec


class PixelCodec:
    def __init__(self, factor: int):
        self.factor = factor

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = pixels.shape
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"pixel codec: frame size {h}x{w} is not divisible by codec.spatial_factor {f}")
        blocks = pixels.reshape(b, c, t, h // f, f, w // f, f)
        return blocks.permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * f * f, t, h // f, w // f)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, channels, t, h, w = latents.shape
        f = self.factor
        blocks = latents.reshape(b, channels // (f * f), f, f, t, h, w)
        return blocks.permute(0, 1, 4, 5, 2, 6, 3).reshape(b, channels // (f * f), t, h * f, w * f)


class WanVAECodec:
    """The VAE computes on its own device and dtype; results come back fp32 on the input's device."""

    def __init__(self, vae):
        self.vae = vae.eval().requires_grad_(False)

    def statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel latent mean and std of the VAE's config, [1, C, 1, 1, 1] like `like`."""
        config = self.vae.config
        return tuple(torch.tensor(values, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
                     for values in (config.latents_mean, config.latents_std))

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        latents = self.vae.encode(pixels.to(self.vae.device, self.vae.dtype)).latent_dist.mode()
        mean, std = self.statistics(latents)
        return ((latents - mean) / std).to(pixels.device, torch.float32)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        normalised = latents.to(self.vae.device, self.vae.dtype)
        mean, std = self.statistics(normalised)
        return self.vae.decode(normalised * std + mean).sample.clamp(-1, 1).to(latents.device, torch.float32)


def load_wan_vae(path: str | Path) -> WanVAECodec:
    from diffusers import AutoencoderKLWan

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"codec.path = {path}: no config.json there; expected a diffusers AutoencoderKLWan folder "
            "(the vae/ folder of Wan2.1-T2V-1.3B-Diffusers, copied to local disk)")
    from raven.models.checkpoints import check_weight_files

    check_weight_files(path)
    return WanVAECodec(AutoencoderKLWan.from_pretrained(path, local_files_only=True, torch_dtype=torch.float32))


def build_codec(spec: RunSpec) -> PixelCodec | WanVAECodec:
    codec = spec.codec
    if codec.kind == "wan_vae":
        return load_wan_vae(codec.path)
    if codec.temporal_factor != 1 or codec.latent_channels != 3 * codec.spatial_factor**2:
        raise ConfigError(
            f"codec.kind 'pixel' is space-to-depth: it needs codec.temporal_factor 1 and codec.latent_channels "
            f"3·spatial_factor² = {3 * codec.spatial_factor**2} (got {codec.temporal_factor}, {codec.latent_channels})")
    return PixelCodec(codec.spatial_factor)
