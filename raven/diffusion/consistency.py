"""The student's samplers as Gaussian Markov kernels (docs/method.md §2, §8).

Every step from time t to time s draws `x_s = μ + σ·ε'` with FRESH noise ε' ~ N(0, I):
- `consistency` (docs/method.md §2): `μ = A(s)·x̂0`, `σ = B(s) = s/1000`, A(s) = 1 − s/1000. Not DDIM: the
  predicted noise is not reused.
- `euler_maruyama` (the Flow-GRPO comparison, docs/method.md §8): the SDE step with noise level η, in the release's
  convention or Flow-GRPO's, see `euler_maruyama_mean_std`.
The step to s = 0 is deterministic (returns x̂0) for the consistency kernel and Flow-GRPO's convention; the
release's Euler–Maruyama keeps its noise there. CM-GRPO never trains that step (`skip_timesteps = 1`).
Times t, s are ints or integer tensors [B] or [B, F] (one time per latent frame).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from raven.diffusion.schedule import _broadcast, noise_from_velocity, sigma_of

KernelKind = Literal["consistency", "euler_maruyama"]
KERNELS: tuple[str, ...] = ("consistency", "euler_maruyama")
EmConvention = Literal["release", "flow_grpo"]
EM_CONVENTIONS: tuple[str, ...] = ("release", "flow_grpo")
BOUNDARY_EPS = 1e-6  # the release's clamp of A(σ') and its test for σ_t = 1
Time = int | torch.Tensor


def _sigma(time: Time, like: torch.Tensor) -> torch.Tensor:
    """σ = time/1000 as a tensor that broadcasts against the latent `like`."""
    sigma = _broadcast(sigma_of(torch.as_tensor(time, dtype=torch.float64, device=like.device)), like)
    return torch.as_tensor(sigma, device=like.device).to(like.dtype)


def transition_mean_std(x0_hat: torch.Tensor, s: Time) -> tuple[torch.Tensor, torch.Tensor]:
    """The consistency kernel p(x_s | x_t) = N(μ, σ²I): μ = A(s)·x̂0, σ = B(s) = s/1000 (docs/method.md §2).

    σ is returned broadcastable against x̂0 (zero where s = 0: the deterministic last step).
    """
    sigma = _sigma(s, x0_hat)
    return (1 - sigma) * x0_hat, sigma


def em_sigma_max(timesteps: Sequence[int], convention: EmConvention) -> float:
    """The σ that stands in for σ_t = 1 in the Euler–Maruyama noise scale g_t (docs/method.md §8): 1 in the release
    (its A(σ_max) = 0 is then clamped to 1e-6), the first sampling time below 1000 in Flow-GRPO (e.g. 0.938)."""
    if convention == "release" or len(timesteps) < 2:
        return 1.0
    return sigma_of(float(timesteps[1]))


def euler_maruyama_mean_std(
    x_t: torch.Tensor, x0_hat: torch.Tensor, t: Time, s: Time, eta: float, sigma_max: float,
    convention: EmConvention = "release",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Euler–Maruyama kernel of the Flow-GRPO comparison with noise level η (docs/method.md §8).

    With σ_t = t/1000, σ_s = s/1000, Δ = σ_s − σ_t < 0, velocity v = (x_t − x̂0)/σ_t and predicted noise
    ε̂ = x_t + (1 − σ_t)·v, the reverse SDE of the flow x_t = (1 − σ)x0 + σε discretised by Euler–Maruyama:

        μ = x_t + Δ·(v + g_t²/(2σ_t)·ε̂),   σ = g_t·sqrt(−Δ),

    where σ_t = 1 is replaced by `sigma_max` (`em_sigma_max`) inside g_t's singular denominator:
    - `release` (the release's `euler_maruyama.py`, its bridge form): g_t² = η²·σ_t·(1 + σ_t/max(1 − σ', 1e-6))
      with σ' = σ_max at t = 1000 (σ_max = 1: a very wide first step), else σ_t, which is η²·σ_t/(1 − σ_t)
      inside (0, 1); the step to s = 0 keeps its noise.
    - `flow_grpo` (Flow-GRPO's `sde_step_with_logprob`): g_t² = η²·σ_t/(1 − σ'); the step to s = 0 is
      deterministic and returns x̂0.
    η = 0 gives the deterministic Euler (ODE) step.
    """
    if convention not in EM_CONVENTIONS:
        raise ValueError(f"Euler–Maruyama convention {convention!r} is not one of {EM_CONVENTIONS} "
                         "(sampler.em_convention in the run spec)")
    sigma_t, sigma_s = _sigma(t, x_t), _sigma(s, x_t)
    delta = sigma_s - sigma_t
    velocity = (x_t - x0_hat) / sigma_t
    noise_hat = noise_from_velocity(x_t, velocity, t)
    boundary = torch.where(sigma_t >= 1 - BOUNDARY_EPS, torch.full_like(sigma_t, sigma_max), sigma_t)
    if convention == "release":
        g2 = eta**2 * sigma_t * (1 + sigma_t / (1 - boundary).clamp_min(BOUNDARY_EPS))
    else:
        g2 = eta**2 * sigma_t / (1 - boundary)
    mean = x_t + delta * (velocity + g2 / (2 * sigma_t) * noise_hat)
    std = torch.sqrt(g2 * -delta)
    if convention == "release":
        return mean, std
    final = sigma_s == 0
    return torch.where(final, x0_hat, mean), torch.where(final, torch.zeros_like(std), std)


def kernel_mean_std(
    kind: KernelKind, x_t: torch.Tensor, x0_hat: torch.Tensor, t: Time, s: Time, eta: float = 0.0,
    sigma_max: float = 1.0, convention: EmConvention = "release",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) of the sampler step t → s of kernel `kind` (`consistency`, or `euler_maruyama` with η, σ_max
    and `convention`)."""
    if kind == "consistency":
        return transition_mean_std(x0_hat, s)
    if kind == "euler_maruyama":
        return euler_maruyama_mean_std(x_t, x0_hat, t, s, eta, sigma_max, convention)
    raise ValueError(f"kernel {kind!r} is not one of {KERNELS} (sampler.kind in the run spec)")


def consistency_step(x0_hat: torch.Tensor, s: Time, noise: torch.Tensor) -> torch.Tensor:
    """One consistency step to time s: `x_s = (1 − s/1000)·x̂0 + (s/1000)·ε'`, ε' fresh noise (docs/method.md §2)."""
    mean, std = transition_mean_std(x0_hat, s)
    return mean + std * noise


def euler_maruyama_step(
    x_t: torch.Tensor, x0_hat: torch.Tensor, t: Time, s: Time, noise: torch.Tensor, eta: float, sigma_max: float,
    convention: EmConvention = "release",
) -> torch.Tensor:
    """One Euler–Maruyama step to time s: `x_s = μ + σ·ε'` with (μ, σ) of `euler_maruyama_mean_std`."""
    mean, std = euler_maruyama_mean_std(x_t, x0_hat, t, s, eta, sigma_max, convention)
    return mean + std * noise


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """Per-sample log N(x; μ, σ²I), summed over every element of a sample: [B] (docs/method.md §8).

    `std` broadcasts against x and must be positive (CM-GRPO clamps it to at least 1e-6). Its gradient
    with respect to μ is (x − μ)/σ².
    """
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device).expand_as(mean)
    if bool((std <= 0).any()):
        raise ValueError("gaussian_log_prob needs std > 0; the deterministic last step (s = 0) has no density")
    log_density = -((x - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return log_density.flatten(1).sum(dim=1)
