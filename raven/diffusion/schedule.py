"""Flow-matching schedule and timestep samplers (docs/method.md §1) and the sampler's step list (docs/method.md §2).

Time is an integer t in [0, 1000]; sigma = t / 1000. The network predicts velocity v = eps - x0.
"""

from __future__ import annotations

import math

import torch

NUM_TRAIN_TIMESTEPS = 1000


def sigma_of(t: torch.Tensor | float) -> torch.Tensor | float:
    return t / NUM_TRAIN_TIMESTEPS


def _broadcast(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """Reshape a per-sample or per-frame sigma so it broadcasts against a [B, C, F, H, W] latent."""
    if not isinstance(sigma, torch.Tensor) or sigma.ndim == 0:
        return sigma
    if sigma.ndim == 1:
        return sigma.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))
    if sigma.ndim == 2 and like.ndim == 5:  # [B, F]: one time per latent frame
        return sigma.to(like.dtype)[:, None, :, None, None]
    raise ValueError(f"sigma of shape {tuple(sigma.shape)} does not broadcast against {tuple(like.shape)}")


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - sigma) x0 + sigma eps."""
    sigma = _broadcast(sigma_of(t), x0)
    return (1 - sigma) * x0 + sigma * noise


def x0_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """x0_hat = x_t - sigma v."""
    return x_t - _broadcast(sigma_of(t), x_t) * velocity


def noise_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """eps_hat = x_t + (1 - sigma) v."""
    return x_t + (1 - _broadcast(sigma_of(t), x_t)) * velocity


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def cfg_combine(cond: torch.Tensor, negative: torch.Tensor, guidance: float) -> torch.Tensor:
    """Classifier-free guidance (docs/method.md §4, §8): negative + g·(cond − negative); g = 1 gives cond.

    The one combination every guided prediction uses (x̂0 or velocity: the map between them is affine
    in the prediction, so guiding either gives the same x̂0).
    """
    return negative + guidance * (cond - negative)


def shift_warp(u: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """u' = s u / (1 + (s - 1) u): the time shift of SD3/Wan."""
    return shift * u / (1 + (shift - 1) * u)


def sampling_timesteps(num_steps: int, shift: float, warp: bool = True) -> list[int]:
    """The few-step sampler's times: u = 1, 1 - 1/n, ..., 1/n, warped by `shift` and rounded.

    (4, 5.0) gives [1000, 938, 833, 625]; CausVid's unwarped 3 steps use an explicit list instead.
    """
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    times = []
    for k in range(num_steps):
        u = 1 - k / num_steps
        u = shift_warp(u, shift) if warp else u
        times.append(int(round(NUM_TRAIN_TIMESTEPS * u)))
    return times


def uniform_shift_timesteps(
    batch: int, shift: float, low: float, high: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """t = round(1000 (a + (b - a) u')), u' the shifted uniform (docs/method.md §1). RAVEN: s = 5 on [0.02, 0.98]."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    warped = shift_warp(u, shift)
    return torch.round(NUM_TRAIN_TIMESTEPS * (low + (high - low) * warped)).long()


def logit_normal_timesteps(
    batch: int, mean: float, std: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """t = round(1000 sigmoid(m + s z)), z ~ N(0, 1)."""
    z = torch.randn(batch, generator=generator, dtype=torch.float64)
    return torch.round(NUM_TRAIN_TIMESTEPS * torch.sigmoid(mean + std * z)).long()


def mode_curve(u: torch.Tensor | float, scale: float) -> torch.Tensor | float:
    """f_s(u) = 1 − u − s·(cos²(πu/2) − 1 + u), SD3's mode sampling curve (docs/method.md §5's `mode_<s>`)."""
    cos = torch.cos if isinstance(u, torch.Tensor) else math.cos
    return 1 - u - scale * (cos(math.pi * u / 2) ** 2 - 1 + u)


def mode_timesteps(batch: int, scale: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """SD3's mode sampling: t = 1000 f_s(u), u ~ U(0, 1)."""
    u = torch.rand(batch, generator=generator, dtype=torch.float64)
    return torch.round(NUM_TRAIN_TIMESTEPS * mode_curve(u, scale).clamp(0, 1)).long()


def student_timesteps(spec) -> list[int]:
    """The student's sampling times of a run spec (docs/method.md §2, §9): `sampler.timesteps` when given, else the
    grid of `sampler.num_steps` warped by `sampler.shift` (unless `sampler.warp` is false)."""
    sampler = spec.sampler
    if sampler.timesteps is not None:
        return list(sampler.timesteps)
    return sampling_timesteps(sampler.num_steps, sampler.shift, sampler.warp)
