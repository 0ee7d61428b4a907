"""History modes of the DMD generator step (docs/method.md §7): how the student's x̂0 with gradient is produced.

Every mode returns x̂0 [B, C, F, h, w] (with gradient into the student) for the DMD loss (docs/method.md §4):
- `raven`: the interleaved forward `[N0 | C0 | … | N(K−1)]` (docs/method.md §3); noisy = the rollout's trajectory
  state xt[k], clean history = the rollout's x0, whose keys/values are computed WITH gradient.
- `sf` (Self Forcing): chunk by chunk; after each chunk its detached x̂0 (same step) is written into a
  KV cache under no-grad, so no gradient reaches the history.
- `tf` (teacher forcing): noisy = A(t)·x0_real + B(t)·ε at a sampling time, clean history = real latents.
- `df` (diffusion forcing): block-causal over chunks, no clean copies; each chunk of the real latents
  noised independently to a random sampling time.
- `df_self_rollout`: as `df` on the rollout's x0, noised with the rollout's initial noise.

The causal forwards themselves live in `raven.models` (one attention processor); this module only
decides inputs, times and where gradient flows. They are reached through `CausalForwards`.
"""

from __future__ import annotations

from collections.abc import Sequence
import torch

from raven.config.spec import REAL_CLIP_MODES, HistoryMode, chunk_starts
from raven.diffusion.schedule import add_noise, x0_from_velocity
from raven.diffusion.trajectory import CausalForwards, Rollout, trajectory_states

HISTORY_MODES: tuple[str, ...] = ("raven", "sf", "df", "tf", "df_self_rollout")
REAL_LATENT_MODES = REAL_CLIP_MODES


def fresh_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """ε ~ N(0, I) shaped like `like`, drawn on the CPU from the iteration's generator (the same numbers on
    every device), then moved to `like`'s device."""
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def frame_times(per_sample: torch.Tensor, frames: int) -> torch.Tensor:
    """[B] integer times → [B, F]: one time shared by every frame of a sample."""
    return per_sample.long().view(-1, 1).expand(-1, frames)


def chunk_frame_times(per_chunk: torch.Tensor, chunk_frames: Sequence[int]) -> torch.Tensor:
    """[B, K] times per chunk → [B, F] times per latent frame."""
    sizes = torch.tensor(list(chunk_frames))
    return torch.repeat_interleave(per_chunk.long(), sizes, dim=1)


def self_forcing_x0(
    student: CausalForwards, noisy: torch.Tensor, t: torch.Tensor, text: torch.Tensor, chunk_frames: Sequence[int]
) -> torch.Tensor:
    """SF: chunk by chunk; the cache is filled under no-grad from each chunk's detached x̂0 (docs/method.md §7)."""
    cache = student.new_cache(noisy.shape[0])
    outputs = []
    for start, size in zip(chunk_starts(chunk_frames), chunk_frames):
        x_chunk, t_chunk = noisy[:, :, start : start + size], t[:, start : start + size]
        x0_chunk = x0_from_velocity(x_chunk, student.chunk(x_chunk, t_chunk, start, text, cache), t_chunk)
        outputs.append(x0_chunk)
        if start + size < noisy.shape[2]:
            with torch.no_grad():
                student.extend_cache(x0_chunk.detach(), start, text, cache)
    return torch.cat(outputs, dim=2)


def generator_x0(
    mode: HistoryMode,
    student: CausalForwards,
    rollout: Rollout,
    k: torch.Tensor,
    text: torch.Tensor,
    chunk_frames: Sequence[int],
    generator: torch.Generator,
    real: torch.Tensor | None = None,
    use_trajectory: bool = True,
) -> torch.Tensor:
    """The student's x̂0 with gradient for one generator step in history mode `mode` (docs/method.md §4, §7).

    `k` [B]: the sampler step per sample (k ~ U{0..3}); `real`: real clean latents (tf, df).
    """
    if mode in REAL_LATENT_MODES and real is None:
        raise ValueError(f"history mode {mode!r} needs real video latents: pass --clips (parquet shards of clips)")
    frames, device = rollout.x0.shape[2], rollout.x0.device
    sampling_times = torch.tensor(list(rollout.times), dtype=torch.long)
    if mode in ("raven", "sf"):
        if use_trajectory:
            noisy, t = trajectory_states(rollout, k)
        else:
            t = sampling_times[k]
            noisy = add_noise(rollout.x0, fresh_noise(rollout.x0, generator), t.to(device))
        t = frame_times(t, frames).to(device)
        if mode == "sf":
            return self_forcing_x0(student, noisy, t, text, chunk_frames)
        return x0_from_velocity(noisy, student.interleaved(noisy, t, rollout.x0.detach(), text), t)
    if mode == "tf":
        t = frame_times(sampling_times[k], frames).to(device)
        noisy = add_noise(real, fresh_noise(real, generator), t)
        return x0_from_velocity(noisy, student.interleaved(noisy, t, real, text), t)
    if mode in ("df", "df_self_rollout"):
        per_chunk = torch.randint(0, len(rollout.times), (rollout.x0.shape[0], len(chunk_frames)), generator=generator)
        t = chunk_frame_times(sampling_times[per_chunk], chunk_frames).to(device)
        if mode == "df":
            latents, noise = real, fresh_noise(real, generator)
        else:
            latents, noise = rollout.x0.detach(), rollout.states[0]
        noisy = add_noise(latents, noise, t)
        return x0_from_velocity(noisy, student.block_causal(noisy, t, text), t)
    raise ValueError(f"history_mode {mode!r} is not one of {HISTORY_MODES}")
