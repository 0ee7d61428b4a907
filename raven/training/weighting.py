"""Chunk-wise loss weighting (docs/method.md §5): per-chunk weights from a weighting spec and the weighted reduction.

A weighting spec is a number α (`1`, `0`, `-1`, ...) or a string `ln_<m>_<s>` / `mode_<s>`.
Note: the paper's prose motivates the weights by "earlier chunks influence more future frames", but the
released code's α = −1 (RAVEN's choice) weighs LATER chunks more; this module implements the code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from typing import TYPE_CHECKING

import torch

from raven.config.spec import WeightingSpec
from raven.diffusion.schedule import mode_curve, shift_warp

if TYPE_CHECKING:
    from raven.training.distributed import World

CLAMP = 1e-6
BISECTION_STEPS = 200


def participation(chunk_numel: Sequence[int]) -> list[float]:
    """p_k = Σ_{j≥k} n_j / Σ_j n_j for k = 1…K, followed by p_(K+1) = 0 (docs/method.md §5)."""
    if not chunk_numel or any(int(n) <= 0 for n in chunk_numel):
        raise ValueError(f"chunk element counts must be positive, got {list(chunk_numel)}")
    total = float(sum(chunk_numel))
    tails = [float(sum(chunk_numel[k:])) / total for k in range(len(chunk_numel))]
    return tails + [0.0]


def shift_weights(p: Sequence[float], alpha: float) -> list[float]:
    """Numeric α: ŵ = α p / (1 + (α − 1) p) for α > 0, uniform for α = 0, and for α < 0 the same
    on the reverse participation r_k = p_K / p_k with |α| (docs/method.md §5)."""
    if alpha == 0:
        return [1.0] * len(p)
    if alpha < 0:
        p = [p[-1] / value for value in p]
    return [shift_warp(value, abs(alpha)) for value in p]


def _logit(p: float) -> float:
    p = min(max(p, CLAMP), 1 - CLAMP)
    return math.log(p / (1 - p))


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def logit_normal_weights(p: Sequence[float], mean: float, std: float) -> list[float]:
    """`ln_<m>_<s>`: the logit-normal(m, s) density averaged over [p_(k+1), p_k] (docs/method.md §5)."""
    if std <= 0:
        raise ValueError(f"weighting spec ln_{mean}_{std}: the std must be positive")
    cdf = [_normal_cdf((_logit(value) - mean) / std) for value in p]
    return [(cdf[k] - cdf[k + 1]) / (p[k] - p[k + 1]) for k in range(len(p) - 1)]


def mode_inverse(value: float, scale: float) -> float:
    """f_s⁻¹(value) on [0, 1] by bisection (f_s decreases from 1 to 0 for −1 < s < 1/(π/2 − 1))."""
    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if mode_curve(middle, scale) > value:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def mode_weights(p: Sequence[float], scale: float) -> list[float]:
    """`mode_<s>`: ŵ_k = [f_s⁻¹(p_(k+1)) − f_s⁻¹(p_k)] / (p_k − p_(k+1)) (docs/method.md §5)."""
    if not -1 < scale < 1 / (math.pi / 2 - 1):
        raise ValueError(
            f"weighting spec mode_{scale}: f_s is monotone only for -1 < s < {1 / (math.pi / 2 - 1):.4f}; "
            "pick a scale in that range (the release uses 0.81 and -0.54)"
        )
    inverse = [mode_inverse(value, scale) for value in p]
    return [(inverse[k + 1] - inverse[k]) / (p[k] - p[k + 1]) for k in range(len(p) - 1)]


def _parse_numbers(spec: str, prefix: str, count: int) -> list[float]:
    parts = spec[len(prefix):].split("_")
    try:
        if len(parts) != count:
            raise ValueError
        return [float(part) for part in parts]
    except ValueError:
        raise ValueError(
            f"weighting spec {spec!r}: expected {prefix}" + "_".join(["<number>"] * count)
            + " (e.g. ln_0_1, mode_0.81, mode_-0.54)"
        ) from None


def raw_weights(chunk_numel: Sequence[int], spec: WeightingSpec) -> list[float]:
    """Unnormalised ŵ_k of a weighting spec (docs/method.md §5)."""
    p = participation(chunk_numel)
    if isinstance(spec, str):
        text = spec.strip()
        try:
            return shift_weights(p[:-1], float(text))
        except ValueError:
            pass
        if text.startswith("ln_"):
            return logit_normal_weights(p, *_parse_numbers(text, "ln_", 2))
        if text.startswith("mode_"):
            return mode_weights(p, *_parse_numbers(text, "mode_", 1))
        raise ValueError(f"weighting spec {spec!r}: expected a number (-1, 0, 1, ...), ln_<m>_<s> or mode_<s>")
    return shift_weights(p[:-1], float(spec))


def chunk_weights(chunk_numel: Sequence[int], spec: WeightingSpec) -> torch.Tensor:
    """Normalised chunk weights w_k = ŵ_k · Σ n_j / Σ ŵ_j n_j (mean per-element weight 1), float64 [K] (docs/method.md §5).

    `chunk_numel`: elements n_k of each chunk of one sample; `spec`: a weighting spec. Negative raw
    weights are an error.
    """
    raw = raw_weights(chunk_numel, spec)
    if any(not math.isfinite(w) or w < 0 for w in raw):
        raise ValueError(f"weighting spec {spec!r} gives negative or non-finite chunk weights {raw}: choose another spec")
    total = sum(raw[k] * chunk_numel[k] for k in range(len(raw)))
    if total <= 0:
        raise ValueError(f"weighting spec {spec!r} gives all-zero chunk weights for chunks {list(chunk_numel)}")
    scale = float(sum(chunk_numel)) / total
    return torch.tensor([w * scale for w in raw], dtype=torch.float64)


def chunk_weighted_loss(
    per_element: torch.Tensor,
    chunk_frames: Sequence[int],
    spec: WeightingSpec,
    sample_weights: torch.Tensor | None = None,
    world: "World | None" = None,
) -> torch.Tensor:
    """L = Σ_b s_b Σ_k w_k ℓ_bk / Σ_b Σ_k w_k n_k, the denominator summed over all ranks (docs/method.md §5).

    `per_element` [B, C, F, h, w]: per-element losses; `chunk_frames`: latent frames per chunk (split of F);
    ℓ_bk the chunk's summed loss; `sample_weights` [B] optional per-sample factors s_b (Re-DMD).
    `world`: the distributed context (None: one process). The returned value is multiplied by the world
    size so that the loop's gradient AVERAGE over ranks (DDP/FSDP convention) is exactly the gradient of
    the global L, also when ranks hold different numbers of samples.
    """
    if sum(chunk_frames) != per_element.shape[2]:
        raise ValueError(f"chunk frames {list(chunk_frames)} do not add up to {per_element.shape[2]} latent frames")
    per_frame = per_element[0, :, 0].numel()
    numels = [per_frame * frames for frames in chunk_frames]
    weights = chunk_weights(numels, spec).to(per_element)
    chunk_sums = torch.stack([part.flatten(1).sum(1) for part in per_element.split(list(chunk_frames), dim=2)], dim=1)
    per_sample = (chunk_sums * weights).sum(dim=1)
    if sample_weights is not None:
        per_sample = per_sample * sample_weights.to(per_sample)
    denominator = (per_element.shape[0] * (weights * torch.tensor(numels).to(weights)).sum()).detach()
    if world is None:
        return per_sample.sum() / denominator
    return world.world_size * per_sample.sum() / world.all_reduce_sum(denominator)
