"""History modes of the DMD generator step (docs/method.md §7): inputs per mode and where gradient flows.

`FrameAttention` is a one-layer attention network over latent-frame tokens that implements the
`CausalForwards` masks of docs/method.md §3 with SDPA boolean masks; it lets these tests see gradients per
history frame (its position table has one row per latent frame).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from raven.diffusion.schedule import add_noise
from raven.diffusion.trajectory import Rollout
from raven.training.history import generator_x0

C, FRAMES, H, W = 2, 6, 2, 2
CHUNKS = [3, 3]
TIMES = [1000, 938, 833, 625]


class FrameAttention(torch.nn.Module):
    def __init__(self, dim: int = 8):
        super().__init__()
        numel = C * H * W
        self.inp, self.time, self.pos = torch.nn.Linear(numel, dim), torch.nn.Linear(1, dim), torch.nn.Embedding(FRAMES, dim)
        self.qkv, self.out = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, numel)
        self.calls: list[tuple[str, torch.Tensor, torch.Tensor]] = []

    def qkv_of(self, x, t, frames):
        tokens = x.permute(0, 2, 1, 3, 4).flatten(2)
        h = self.inp(tokens) + self.time(t.float().unsqueeze(-1) / 1000) + self.pos(frames)
        return self.qkv(h).chunk(3, dim=-1)

    def to_video(self, h, like):
        b, _, f, hh, ww = like.shape
        return self.out(h).view(b, f, C, hh, ww).permute(0, 2, 1, 3, 4)

    def interleaved(self, noisy, t, clean, text):
        self.calls.append(("interleaved", noisy, t, clean))
        pieces, splits, frames, start = [], [], [], 0
        for j, size in enumerate(CHUNKS):
            sl = slice(start, start + size)
            pieces.append((noisy[:, :, sl], t[:, sl]))
            splits += [(j, True)] * size
            if j < len(CHUNKS) - 1:
                pieces.append((clean[:, :, sl], torch.zeros_like(t[:, sl])))
                splits += [(j, False)] * size
            frames += [list(range(start, start + size))] * (2 if j < len(CHUNKS) - 1 else 1)
            start += size
        x = torch.cat([p[0] for p in pieces], dim=2)
        tt = torch.cat([p[1] for p in pieces], dim=1)
        q, k, v = self.qkv_of(x, tt, torch.tensor([f for group in frames for f in group]))
        # N_j sees {N_j, C_0..C_(j-1)}; C_j sees {C_j, C_0..C_(j-1)} (docs/method.md §3)
        mask = torch.tensor([[(kj < qj and not kn) or (kj == qj and kn == qn) for kj, kn in splits] for qj, qn in splits])
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        noisy_rows = torch.tensor([n for _, n in splits])
        return self.to_video(h[:, noisy_rows], noisy)

    def block_causal(self, x, t, text):
        self.calls.append(("block_causal", x, t, None))
        chunk_of = torch.repeat_interleave(torch.arange(len(CHUNKS)), torch.tensor(CHUNKS))
        q, k, v = self.qkv_of(x, t, torch.arange(FRAMES))
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=chunk_of[None, :] <= chunk_of[:, None])
        return self.to_video(h, x)

    def new_cache(self, batch):
        return []

    def chunk(self, x, t, start_frame, text, cache):
        q, k, v = self.qkv_of(x, t, torch.arange(start_frame, start_frame + x.shape[2]))
        keys = torch.cat([c[0] for c in cache] + [k], dim=1)
        values = torch.cat([c[1] for c in cache] + [v], dim=1)
        return self.to_video(F.scaled_dot_product_attention(q, keys, values), x)

    def extend_cache(self, clean, start_frame, text, cache):
        t = torch.zeros(clean.shape[0], clean.shape[2])
        _, k, v = self.qkv_of(clean, t, torch.arange(start_frame, start_frame + clean.shape[2]))
        cache.append((k, v))


def make_rollout(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    states = [torch.randn(batch, C, FRAMES, H, W, generator=g) for _ in TIMES]
    return Rollout(x0=torch.randn(batch, C, FRAMES, H, W, generator=g), states=states, times=TIMES)


def last_chunk_loss(mode, student, rollout, real=None):
    x0 = generator_x0(mode, student, rollout, torch.tensor([1, 3]), None, CHUNKS, torch.Generator().manual_seed(1), real)
    return x0[:, :, CHUNKS[0]:].pow(2).sum()


def history_position_grad(mode, real=None):
    torch.manual_seed(0)
    student = FrameAttention()
    last_chunk_loss(mode, student, make_rollout(), real).backward()
    return student.pos.weight.grad[: CHUNKS[0]].abs().sum().item()


def test_raven_sends_gradient_into_history():
    assert history_position_grad("raven") > 1e-6


def test_sf_sends_no_gradient_into_history():
    assert history_position_grad("sf") == 0.0


def test_raven_feeds_trajectory_states_and_rollout_history():
    student, rollout = FrameAttention(), make_rollout()
    generator_x0("raven", student, rollout, torch.tensor([1, 3]), None, CHUNKS, torch.Generator())
    _, noisy, t, clean = student.calls[0]
    assert torch.equal(noisy[0], rollout.states[1][0]) and torch.equal(noisy[1], rollout.states[3][1])
    assert t[0].tolist() == [938] * FRAMES and t[1].tolist() == [625] * FRAMES
    assert torch.equal(clean, rollout.x0)


def test_tf_uses_real_history_and_df_self_rollout_uses_initial_noise():
    student, rollout = FrameAttention(), make_rollout()
    real = torch.randn(2, C, FRAMES, H, W)
    generator_x0("tf", student, rollout, torch.tensor([0, 2]), None, CHUNKS, torch.Generator(), real)
    _, noisy, t, clean = student.calls[-1]
    assert torch.equal(clean, real) and t[1].tolist() == [833] * FRAMES
    generator_x0("df_self_rollout", student, rollout, torch.tensor([0, 2]), None, CHUNKS, torch.Generator())
    _, noisy, t, _ = student.calls[-1]
    assert set(t.unique().tolist()) <= set(TIMES)
    assert torch.equal(t[:, :3], t[:, :1].expand(-1, 3)) and torch.equal(t[:, 3:], t[:, 3:4].expand(-1, 3))
    assert torch.allclose(noisy, add_noise(rollout.x0, rollout.states[0], t))


def test_real_latent_modes_without_clips_are_a_clear_error():
    for mode in ("tf", "df"):
        with pytest.raises(ValueError, match=f"history mode '{mode}' needs real video latents: pass --clips"):
            generator_x0(mode, FrameAttention(), make_rollout(), torch.tensor([0, 0]), None, CHUNKS, torch.Generator())


def test_fixture_interleaved_equals_streaming_with_the_same_history():
    # docs/method.md §3 consequence: noisy-split outputs equal streaming with a cache built from the same clean chunks.
    torch.manual_seed(0)
    student, rollout = FrameAttention(), make_rollout()
    noisy, t = rollout.states[2], torch.full((2, FRAMES), 833)
    packed = student.interleaved(noisy, t, rollout.x0, None)
    cache = student.new_cache(2)
    student.extend_cache(rollout.x0[:, :, :3], 0, None, cache)
    streamed = torch.cat([student.chunk(noisy[:, :, :3], t[:, :3], 0, None, []), student.chunk(noisy[:, :, 3:], t[:, 3:], 3, None, cache)], dim=2)
    assert torch.allclose(packed, streamed, atol=1e-6)
