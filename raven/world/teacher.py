"""The toy world's EXACT teacher: E[x0 | x_t, prompt] in closed form (docs/method.md §1 forward process).

Per prompt the data distribution is a finite uniform mixture of videos {x0_i} (`render.mixture`), so
with x_t = (1 − σ) x0 + σ ε the posterior over items is a softmax,

    w_i ∝ π_i · exp(− Σ_f ‖x_t[f] − a_f x0_i[f]‖² / (2 s_f²)),    E[x0 | x_t] = Σ_i w_i x0_i,

with a_f = 1 − σ_f, s_f = σ_f per frame f (σ per sample [B] or per frame [B, T]). Expanding the square,
only a_f x_t·x0_i / s_f² − a_f² ‖x0_i‖² / (2 s_f²) depends on i: one matmul per frame, in float64.

The exact causal teacher: frames with t = 0 are clean history. They are returned unchanged and weigh
the posterior by the likelihood of a noisy observation of the item's frame with a = 1 and
s = `history_sigma`. This is the exact posterior when the history is an item's frame (the true item's
weight dominates as history_sigma → 0) and, for an off-mixture history (a student's rollout), a
Gaussian soft match: items whose earlier frames are nearest the given history win. Frames not yet
generated (later chunks) are passed at t = 1000: a = 0, so they carry no information, as they should.

CFG (docs/method.md §4): x̂0 = x̂0_u + w (x̂0_c − x̂0_u), the unconditional x̂0_u the posterior mean under the
mixture of all `uncond_prompts` (the training prompts; each prompt weight 1/P, items 1/(P M_p)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from raven.config import RunSpec
from raven.diffusion.schedule import cfg_combine, sigma_of
from raven.world.render import mixture

ITEM_CHUNK = 512


@dataclass
class _Items:
    """Mixture items as uint8 (exact) with their log prior and per-frame squared norms (float64)."""

    videos: torch.Tensor  # uint8 [M, T, 3*H*W] (frame-major)
    log_prior: torch.Tensor  # float64 [M]
    norms: torch.Tensor  # float64 [M, T]: ‖x0_i[f]‖² in model range


def _model_range(videos_u8: torch.Tensor) -> torch.Tensor:
    return videos_u8.to(torch.float64) / 127.5 - 1.0


def _frame_major(videos: np.ndarray) -> torch.Tensor:
    """uint8 [M, T, H, W, 3] -> [M, T, 3*H*W] in the channel order of [3, H, W] per frame."""
    tensor = torch.from_numpy(np.ascontiguousarray(videos)).permute(0, 1, 4, 2, 3)
    return tensor.reshape(tensor.shape[0], tensor.shape[1], -1).contiguous()


def _items(videos: torch.Tensor, log_prior: torch.Tensor) -> _Items:
    norms = torch.cat([_model_range(chunk).pow(2).sum(-1) for chunk in videos.split(ITEM_CHUNK)])
    return _Items(videos, log_prior, norms)


def observation(t: torch.Tensor, frames: int, history_sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-frame (a, s, clean) [B, T] of x_t[f] = a x0[f] + s ε: (1 − σ, σ); clean frames (t = 0):
    (1, history_sigma)."""
    t = torch.as_tensor(t)
    if t.ndim == 1:
        t = t[:, None].expand(-1, frames)
    if t.ndim != 2 or t.shape[1] != frames:
        raise ValueError(f"t must be [B] or [B, {frames}] integer times, got shape {tuple(t.shape)}")
    sigma = sigma_of(t.to(torch.float64))
    clean = t == 0
    a = torch.where(clean, 1.0, 1.0 - sigma)
    s = torch.where(clean, torch.full_like(sigma, history_sigma), sigma)
    return a, s, clean


def posterior_mean(x_t: torch.Tensor, a: torch.Tensor, s: torch.Tensor, items: _Items) -> torch.Tensor:
    """E[x0 | x_t] under one mixture. x_t float64 [B, T, D]; a, s [B, T]. Returns [B, T, D] float64."""
    linear, quadratic = (a / s**2)[:, None], (0.5 * a**2 / s**2)[:, None]  # [B, 1, T]
    parts = []
    for chunk, norms in zip(items.videos.split(ITEM_CHUNK), items.norms.split(ITEM_CHUNK)):
        dots = torch.einsum("btd,mtd->bmt", x_t, _model_range(chunk))
        parts.append((linear * dots - quadratic * norms[None]).sum(-1))
    weights = torch.softmax(items.log_prior[None] + torch.cat(parts, dim=1), dim=1)
    mean = torch.zeros_like(x_t)
    for chunk, w in zip(items.videos.split(ITEM_CHUNK), weights.split(ITEM_CHUNK, dim=1)):
        mean += torch.einsum("bm,mtd->btd", w, _model_range(chunk))
    return mean


class ExactTeacher:
    """`teacher(x_t, t, prompts, guidance) -> x̂0`: pixels float [B, 3, T, H, W] in [-1, 1], t [B] or [B, T].

    Items are cached per prompt. `uncond_prompts` (the training prompts) are needed for guidance ≠ 1.
    """

    def __init__(self, height: int, width: int, frames: int, uncond_prompts: Sequence[str] | None = None,
                 history_sigma: float = 0.05, fps: float = 8):
        if history_sigma <= 0:
            raise ValueError(f"history_sigma must be positive, got {history_sigma}")
        self.geometry = (height, width, frames, fps)
        self.history_sigma = history_sigma
        self.uncond_prompts = list(uncond_prompts) if uncond_prompts else []
        self._cache: dict[str, _Items] = {}
        self._uncond: _Items | None = None

    @classmethod
    def from_spec(cls, spec: RunSpec, uncond_prompts: Sequence[str] | None = None,
                  history_sigma: float = 0.05) -> "ExactTeacher":
        """The teacher at the spec's video geometry (`video.height/width/frames/fps`)."""
        video = spec.video
        return cls(video.height, video.width, video.frames, uncond_prompts, history_sigma, video.fps)

    def items(self, prompt: str) -> _Items:
        if prompt not in self._cache:
            videos = _frame_major(mixture(prompt, *self.geometry))
            self._cache[prompt] = _items(videos, torch.full((len(videos),), -np.log(len(videos)), dtype=torch.float64))
        return self._cache[prompt]

    def uncond_items(self) -> _Items:
        if not self.uncond_prompts:
            raise ValueError("classifier-free guidance with the exact teacher needs uncond_prompts "
                             "(the training prompts whose mixture is the unconditional distribution)")
        if self._uncond is None:
            parts = [self.items(p) for p in self.uncond_prompts]
            videos = torch.cat([p.videos for p in parts])
            log_prior = torch.cat([p.log_prior for p in parts]) - np.log(len(parts))
            self._uncond = _Items(videos, log_prior, torch.cat([p.norms for p in parts]))
        return self._uncond

    def conditional(self, x_t: torch.Tensor, a: torch.Tensor, s: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
        out = torch.empty_like(x_t)
        for prompt in dict.fromkeys(prompts):
            rows = torch.tensor([i for i, p in enumerate(prompts) if p == prompt])
            out[rows] = posterior_mean(x_t[rows], a[rows], s[rows], self.items(prompt))
        return out

    @torch.no_grad()
    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, prompts: Sequence[str], guidance: float = 1.0) -> torch.Tensor:
        batch, channels, frames, height, width = x_t.shape
        if (height, width, frames) != self.geometry[:3] or channels != 3:
            raise ValueError(f"exact teacher built for [B, 3, {self.geometry[2]}, {self.geometry[0]}, "
                             f"{self.geometry[1]}] pixels, got {tuple(x_t.shape)}")
        if len(prompts) != batch:
            raise ValueError(f"{len(prompts)} prompts for a batch of {batch}")
        a, s, clean = observation(torch.as_tensor(t, device="cpu"), frames, self.history_sigma)
        flat = x_t.detach().to("cpu", torch.float64).permute(0, 2, 1, 3, 4).reshape(batch, frames, -1)
        x0 = self.conditional(flat, a, s, list(prompts))
        if guidance != 1.0:
            x0_u = posterior_mean(flat, a, s, self.uncond_items())
            x0 = cfg_combine(x0, x0_u, guidance)
        x0 = torch.where(clean[..., None], flat, x0)
        x0 = x0.reshape(batch, frames, channels, height, width).permute(0, 2, 1, 3, 4)
        return x0.to(x_t.dtype).to(x_t.device)
