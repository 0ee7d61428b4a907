"""Where the generator step's gradient flows with the real causal Wan (docs/method.md §3, §7), not a fixture:
RAVEN's last-chunk loss reaches the keys of the clean history (computed with gradient in the interleaved
forward) and never the other noisy chunks; Self Forcing's cache is built under no-grad, so nothing
before the last chunk's own forward gets gradient."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("raven.models", reason="raven.models (causal forwards) is written by the lead")

from raven.models import build_transformer, causal_forwards
from raven.diffusion.trajectory import Rollout
from raven.training.history import generator_x0

TIMES = [1000, 938, 833, 625]


@pytest.fixture
def student(smoke_spec):
    torch.manual_seed(0)
    return causal_forwards(build_transformer(smoke_spec), smoke_spec), smoke_spec


def captured_keys(forwards) -> list[torch.Tensor]:
    """Every output of the first block's key projection, kept with its gradient after backward."""
    keys: list[torch.Tensor] = []

    def keep(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
        keys.append(output)

    forwards.model.blocks[0].attn1.to_k.register_forward_hook(keep)
    return keys


def last_chunk_backward(mode, forwards, spec) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (2, *spec.latent_shape)
    rollout = Rollout(torch.randn(shape, generator=g), [torch.randn(shape, generator=g) for _ in TIMES], TIMES)
    text = torch.randn(2, 4, spec.text_encoder.d_model, generator=g)
    x0 = generator_x0(mode, forwards, rollout, torch.tensor([1, 3]), text, spec.chunk_frames, g)
    x0[:, :, -spec.chunk_frames[-1]:].pow(2).sum().backward()


def row_grad(key: torch.Tensor, rows: slice) -> float:
    return 0.0 if key.grad is None else key.grad[:, rows].abs().sum().item()


def test_raven_loss_reaches_the_clean_history_keys(student):
    forwards, spec = student
    keys = captured_keys(forwards)
    last_chunk_backward("raven", forwards, spec)
    (packed,) = keys
    per_chunk = packed.shape[1] // (2 * len(spec.chunk_frames) - 1)  # [N0 C0 N1 C1 … N(K−1)], equal chunks
    splits = [slice(i * per_chunk, (i + 1) * per_chunk) for i in range(2 * len(spec.chunk_frames) - 1)]
    clean, earlier_noisy = splits[1:-1:2], splits[0:-1:2]
    assert all(row_grad(packed, rows) > 0 for rows in clean)
    assert all(row_grad(packed, rows) == 0 for rows in earlier_noisy)


def test_self_forcing_loss_stops_at_the_cache(student):
    forwards, spec = student
    keys = captured_keys(forwards)
    last_chunk_backward("sf", forwards, spec)
    chunk_calls = [k for k in keys if k.requires_grad]
    cache_calls = [k for k in keys if not k.requires_grad]
    assert len(chunk_calls) == len(spec.chunk_frames) and len(cache_calls) == len(spec.chunk_frames) - 1
    assert all(row_grad(k, slice(None)) == 0 for k in chunk_calls[:-1])
    assert row_grad(chunk_calls[-1], slice(None)) > 0
