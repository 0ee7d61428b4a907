"""Reward aggregation and group-normalised advantages (docs/method.md §8).

- `normalize_then_sum`: z-score each reward within the same-prompt samples of one call,
  `(r − mean)/(std_biased.clamp_min(1e-4) + 1e-5)`, then `R = Σ w_m z_m / Σ |w_m|`.
- `sum_then_normalize`: `R = Σ w_m r_m / Σ |w_m|` (the advantage normalises it afterwards).
- `group_advantages`: per-prompt z-score of R, same std clamp, clipped to ±adv_clip_max; the
  `AdvantageTracker` pools it over every rank and call of one step (cleared each step).

A sample whose reward is NaN (the reward failed on it) is invalid: it is left out of its group's
statistics and gets a NaN aggregate and a zero advantage, so it is excluded from the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.distributed as dist

STD_FLOOR = 1e-4
STD_EPS = 1e-5
Aggregation = Literal["normalize_then_sum", "sum_then_normalize"]


def group_zscore(values: torch.Tensor, groups: Sequence) -> torch.Tensor:
    """z-score of `values` [B] within each group (equal keys in `groups`), float64; NaN entries are left
    out of their group's mean and biased std and stay NaN. A group of equal values gives zeros."""
    values = values.double()
    out = torch.full_like(values, float("nan"))
    for key in dict.fromkeys(groups):
        members = torch.tensor([g == key for g in groups]) & torch.isfinite(values)
        if not members.any():
            continue
        chosen = values[members]
        mean, std = chosen.mean(), chosen.std(correction=0)
        out[members] = (chosen - mean) / (std.clamp_min(STD_FLOOR) + STD_EPS)
    return out


def nonzero_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """The weights that count: a zero-weighted reward is never computed (the trainer builds only these)."""
    return {m: w for m, w in weights.items() if w != 0}


def active_weights(rewards: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> dict[str, float]:
    """The non-zero weights, each of a computed reward."""
    active = nonzero_weights(weights)
    if not active:
        raise ValueError(f"reward weights {dict(weights)} are all zero: give at least one reward a weight")
    missing = sorted(set(active) - set(rewards))
    if missing:
        raise KeyError(f"reward weights name {missing} but only {sorted(rewards)} were computed")
    return active


def normalize_then_sum(rewards: Mapping[str, torch.Tensor], weights: Mapping[str, float], groups: Sequence) -> torch.Tensor:
    """R = Σ_m w_m·z_m / Σ_m |w_m|, z_m the within-group z-score of reward m (docs/method.md §8). [B] float64."""
    weights = active_weights(rewards, weights)
    valid = valid_samples(rewards, weights)
    total = sum(abs(w) for w in weights.values())
    summed = sum(w * group_zscore(torch.where(valid, rewards[m].double(), float("nan")), groups)
                 for m, w in weights.items())
    return summed / total


def sum_then_normalize(rewards: Mapping[str, torch.Tensor], weights: Mapping[str, float], groups: Sequence) -> torch.Tensor:
    """R = Σ_m w_m·r_m / Σ_m |w_m| (docs/method.md §8); the advantage tracker normalises it. [B] float64."""
    weights = active_weights(rewards, weights)
    total = sum(abs(w) for w in weights.values())
    return sum(w * rewards[m].double() for m, w in weights.items()) / total


AGGREGATIONS = {"normalize_then_sum": normalize_then_sum, "sum_then_normalize": sum_then_normalize}


def aggregate_rewards(mode: Aggregation, rewards: Mapping[str, torch.Tensor], weights: Mapping[str, float],
                      groups: Sequence) -> torch.Tensor:
    if mode not in AGGREGATIONS:
        raise ValueError(f"reward aggregation {mode!r} is not one of {sorted(AGGREGATIONS)}")
    return AGGREGATIONS[mode](rewards, weights, groups)


def valid_samples(rewards: Mapping[str, torch.Tensor], weights: Mapping[str, float]) -> torch.Tensor:
    """[B] bool: every weighted reward of the sample is finite (zero-weighted ones are not computed)."""
    return torch.stack([torch.isfinite(rewards[m].double()) for m in nonzero_weights(weights)]).all(dim=0)


def group_advantages(rewards: torch.Tensor, prompts: Sequence[str], clip_max: float) -> torch.Tensor:
    """Per-prompt z-score of the aggregated rewards R [B], same std clamp, clipped to ±clip_max (docs/method.md §8).
    NaN rewards are left out of their prompt's statistics and get advantage 0. float64 [B]."""
    return group_zscore(rewards, prompts).nan_to_num(0.0).clamp(-clip_max, clip_max)


def gather_parts(local: list) -> list[list]:
    """Every rank's list, in rank order (just [local] without torch.distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [list(local)]
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(local))
    return parts


class AdvantageTracker:
    """Per-prompt advantages over every rank and call of one step (docs/method.md §8).

    `add(prompts, R)` after each rollout call; `advantages()` once per step returns `group_advantages` of
    this rank's samples (in call order) with each prompt's statistics pooled over all ranks, then clears.
    """

    def __init__(self, clip_max: float):
        self.clip_max = clip_max
        self.samples: list[tuple[str, float]] = []

    def add(self, prompts: Sequence[str], rewards: torch.Tensor) -> None:
        if len(prompts) != len(rewards):
            raise ValueError(f"{len(prompts)} prompts for {len(rewards)} rewards")
        self.samples.extend((p, float(r)) for p, r in zip(prompts, rewards))

    def advantages(self) -> torch.Tensor:
        parts = gather_parts(self.samples)
        rank = dist.get_rank() if len(parts) > 1 else 0
        offset = sum(len(part) for part in parts[:rank])
        pooled = [sample for part in parts for sample in part]
        values = torch.tensor([v for _, v in pooled], dtype=torch.float64)
        advantages = group_advantages(values, [p for p, _ in pooled], self.clip_max)
        self.samples = []
        return advantages[offset : offset + len(parts[rank])]
