"""What a sampler hands to training (docs/method.md §2, §3): the causal forwards it drives and the rollout it records.

`CausalForwards` is the interface of the causal student's forwards (implemented in `raven.models.causal`);
`Rollout` is one streaming generation's trajectory; `trajectory_states` gathers a per-sample step from it.
They live here, below training, because the streaming generator produces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch


class CausalForwards(Protocol):
    """The causal student's forwards (docs/method.md §3). Times are per latent frame, [B, F]; outputs are velocities."""

    def interleaved(self, noisy: torch.Tensor, t: torch.Tensor, clean: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """RAVEN's packed `[N0 | C0 | … | N(K−1)]` forward; returns the noisy splits' outputs, full length."""

    def block_causal(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Chunk j attends to chunks 0…j of `x` itself (no clean copies)."""

    @property
    def device(self) -> torch.device:
        """Where the forwards compute; generation keeps its state there."""

    def new_cache(self, batch: int) -> Any:
        """An empty streaming KV cache."""

    def chunk(self, x: torch.Tensor, t: torch.Tensor, start_frame: int, text: torch.Tensor, cache: Any) -> torch.Tensor:
        """One chunk's forward attending to [cache ; chunk] (streaming inference, docs/method.md §3)."""

    def extend_cache(self, clean: torch.Tensor, start_frame: int, text: torch.Tensor, cache: Any) -> None:
        """Append the clean chunk's keys/values from a t = 0 pass."""


@dataclass(frozen=True)
class Rollout:
    """What the generator step needs from a rollout (docs/method.md §2): states fed at each step, their times, x0."""

    x0: torch.Tensor
    states: Sequence[torch.Tensor]
    times: Sequence[int]


def trajectory_states(rollout: Rollout, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample b, the state xt[k_b] of the rollout and its time [B] (docs/method.md §4 step 3, docs/method.md §8)."""
    states = torch.stack([rollout.states[int(kb)][b] for b, kb in enumerate(k)])
    times = torch.tensor([rollout.times[int(kb)] for kb in k], dtype=torch.long, device=states.device)
    return states, times
