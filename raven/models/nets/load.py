"""Strict loading of a released network's state dict from a local torch file."""

from __future__ import annotations

from pathlib import Path

import torch

from raven.models.checkpoints import CheckpointError, read_torch_file, unwrap

SHOWN = 5


def read_published(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """The state dict in `path` (torch.save, weights only; possibly under `state_dict`), without the
    `module.` prefix DataParallel adds."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected {what}")
    return {k.removeprefix("module."): v for k, v in unwrap(read_torch_file(path), None, path).items()}


def load_published(model: torch.nn.Module, path: str | Path, what: str,
                   state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    """Load `path` (or its already read `state`) into `model` with strict=True; errors name the file and a
    few missing, unexpected or mis-shaped keys."""
    state = read_published(path, what) if state is None else state
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path}: not {what}: {len(missing)} missing keys {missing[:SHOWN]}, {len(unexpected)} "
                              f"unexpected keys {unexpected[:SHOWN]}, {len(wrong)} shapes differ {wrong[:SHOWN]}")
    model.load_state_dict(state, strict=True)
    return model.eval()
