"""Exponential moving average of a model's trainable parameters (docs/method.md §4: decay 0.9675 after each
generator step; docs/method.md §8: over the LoRA weights only, which are the only trainable ones there)."""

from __future__ import annotations

import torch


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """The full tensor of an FSDP2 DTensor parameter (collective), or the tensor itself."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


class EMA:
    """shadow ← decay·shadow + (1 − decay)·param, for every parameter with requires_grad."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for name, param in module.named_parameters():
            if name in self.shadow:
                self.shadow[name].lerp_(param.detach(), 1 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Full (unsharded) CPU tensors; a collective under FSDP2."""
        return {name: _local(tensor).detach().cpu() for name, tensor in self.shadow.items()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            raise KeyError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, tensor in self.shadow.items():
            if hasattr(tensor, "full_tensor"):
                from torch.distributed.tensor import distribute_tensor

                tensor.copy_(distribute_tensor(state[name].to(tensor.device), tensor.device_mesh, tensor.placements))
            else:
                tensor.copy_(state[name])
