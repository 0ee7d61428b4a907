"""Many-step Euler sampler of the flow-matching ODE with classifier-free guidance (docs/method.md §1, §6).

The denoiser is an x0-PREDICTING callable `denoise(x_t, t) -> x̂0` (t an integer tensor [B] or [B, F]);
a velocity model plugs in through `x0_from_velocity`. The ODE dx/dσ = v = (x_t − x̂0)/σ, one Euler step
from σ_t to σ_s: x_s = x_t + (σ_s − σ_t) v. The last step (s = 0) returns x̂0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from raven.diffusion.schedule import _broadcast, cfg_combine, sampling_timesteps, sigma_of

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def euler_timesteps(num_steps: int, shift: float) -> list[int]:
    """The shifted grid of `sampling_timesteps` with a final 0: num_steps + 1 times from 1000 to 0."""
    return sampling_timesteps(num_steps, shift) + [0]


def guided(cond: Denoiser, uncond: Denoiser | None, guidance: float) -> Denoiser:
    """CFG on x0 predictions: x̂0 = x̂0_u + w (x̂0_c − x̂0_u) (w = 1: conditional only)."""
    if guidance == 1.0:
        return cond
    if uncond is None:
        raise ValueError(f"guidance {guidance} needs an unconditional denoiser")

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return cfg_combine(cond(x_t, t), uncond(x_t, t), guidance)

    return denoise


def euler_step(x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """x_s = x_t + (σ_s − σ_t)(x_t − x̂0)/σ_t, i.e. x_s = x̂0 + (σ_s/σ_t)(x_t − x̂0); x̂0 where σ_t = 0."""
    sigma_t, sigma_s = _broadcast(sigma_of(t.double()), x_t), _broadcast(sigma_of(s.double()), x_t)
    ratio = torch.where(sigma_t > 0, sigma_s / sigma_t.clamp_min(1e-12), torch.zeros_like(sigma_t))
    return (x0_hat + ratio.to(x_t.dtype) * (x_t - x0_hat)).to(x_t.dtype)


def euler_sample(denoise: Denoiser, noise: torch.Tensor, timesteps: Sequence[int],
                 record: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Integrate from `noise` at timesteps[0] through every listed time down to timesteps[-1] (usually 0).

    With `record`, also return the state fed to the denoiser at each time {t: x_t} (ODE trajectories for
    the causal ODE initialisation, docs/method.md §6).
    """
    times = list(timesteps)
    if any(a <= b for a, b in zip(times, times[1:])):
        raise ValueError(f"timesteps must decrease strictly, got {times}")
    x = noise
    states: dict[int, torch.Tensor] = {}
    batch = noise.shape[0]
    for t, s in zip(times[:-1], times[1:]):
        if record:
            states[t] = x
        t_vec = torch.full((batch,), t, dtype=torch.long, device=noise.device)
        s_vec = torch.full((batch,), s, dtype=torch.long, device=noise.device)
        x = euler_step(x, denoise(x, t_vec), t_vec, s_vec)
    return (x, states) if record else x
