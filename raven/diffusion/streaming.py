"""Streaming (chunk-autoregressive) generation with a KV cache (docs/method.md §2, §3) and the baseline modes (docs/method.md §9).

Per chunk: the sampler's steps each forward only the chunk's tokens against [cached clean history ; chunk]
(`forwards.chunk`); then the clean chunk is run once more at t = 0 and its keys/values appended to the
cache (`forwards.extend_cache`), skipped for the last chunk. Sink and window eviction belong to the
forwards (`causal_forwards(model, spec, sink=..., window=...)`), so the same loop serves RAVEN, Self
Forcing, CausVid (an unwarped step list), Reward Forcing and LongLive (sink + window).

Rolling Forcing (`rolling_window=W`, W = number of steps): W consecutive chunks at staggered noise levels
(the oldest at the last sampling time, the newest pure noise) are denoised jointly in one forward; after
it the oldest chunk is clean, emitted and is the only one re-cached; the window then slides by a chunk.

Noise is drawn per sample from its own generator (seeded by `seeds[b]`) on the CPU, in the order the
chunks and steps consume it, so a sample's video depends only on its seed and prompt, never on its
batch neighbours or the device.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from raven.config.spec import chunk_layout, chunk_starts
from raven.diffusion.consistency import KERNELS, EmConvention, KernelKind, em_sigma_max, kernel_mean_std
from raven.diffusion.schedule import NUM_TRAIN_TIMESTEPS, cfg_combine, x0_from_velocity
from raven.diffusion.trajectory import CausalForwards, Rollout

ChunkCallback = Callable[[int, torch.Tensor], None]


@dataclass
class Generation:
    """One batched streaming generation: clean latents, optionally the trajectory, and its timings.

    `states[k]` is the full-video state fed to the model at step k (every chunk at time `times[k]`),
    `predictions[k]` the raw x̂0 of that step; the last step's prediction is `latents`.
    """

    latents: torch.Tensor
    states: list[torch.Tensor] | None
    predictions: list[torch.Tensor] | None
    times: list[int]
    first_chunk_s: float
    chunk_s: list[float] = field(default_factory=list)

    def rollout(self) -> Rollout:
        if self.states is None:
            raise ValueError("this generation has no trajectory: call generate(..., record=True)")
        return Rollout(x0=self.latents, states=self.states, times=self.times)


class SampleNoise:
    """Per-sample generators: sample b's noise comes only from seeds[b] (drawn on CPU, then moved)."""

    def __init__(self, seeds: Sequence[int], channels: int, height: int, width: int, like: torch.Tensor):
        self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
        self.channels, self.height, self.width, self.like = channels, height, width, like

    def draw(self, frames: int) -> torch.Tensor:
        shape = (self.channels, frames, self.height, self.width)
        noise = torch.stack([torch.randn(shape, generator=generator) for generator in self.generators])
        return noise.to(device=self.like.device, dtype=self.like.dtype)


@dataclass
class Sampler:
    """The forwards plus what every step needs: text (doubled under CFG), guidance and the kernel."""

    forwards: CausalForwards
    text: torch.Tensor
    guidance: float
    kernel: KernelKind
    eta: float
    sigma_max: float
    convention: EmConvention

    def predict_x0(self, x: torch.Tensor, t: torch.Tensor, start_frame: int, cache) -> torch.Tensor:
        """x̂0 of frames `x` at per-frame times t [B, f] against the cache; CFG on x̂0 when guidance ≠ 1."""
        if self.guidance == 1.0:
            return x0_from_velocity(x, self.forwards.chunk(x, t, start_frame, self.text, cache), t)
        x2, t2 = torch.cat([x, x]), torch.cat([t, t])
        cond, uncond = x0_from_velocity(x2, self.forwards.chunk(x2, t2, start_frame, self.text, cache), t2).chunk(2)
        return cfg_combine(cond, uncond, self.guidance)

    def step(self, x: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
             noise: SampleNoise) -> torch.Tensor:
        """x_s = μ + σ·ε' with fresh ε' (none drawn for a deterministic step, e.g. the consistency step to 0)."""
        mean, std = kernel_mean_std(self.kernel, x, x0_hat, t, s, self.eta, self.sigma_max, self.convention)
        if not bool((std != 0).any()):
            return mean
        return mean + std * noise.draw(x.shape[2])

    def cache_clean(self, clean: torch.Tensor, start_frame: int, cache) -> None:
        copies = clean if self.guidance == 1.0 else torch.cat([clean, clean])
        self.forwards.extend_cache(copies, start_frame, self.text, cache)

    def new_cache(self, batch: int):
        return self.forwards.new_cache(batch if self.guidance == 1.0 else 2 * batch)


class Recorder:
    """Trajectory in full-video layout: states fed at each step and raw x̂0 predictions."""

    def __init__(self, steps: int, like: torch.Tensor, enabled: bool):
        self.states = [torch.zeros_like(like) for _ in range(steps)] if enabled else None
        self.predictions = [torch.zeros_like(like) for _ in range(steps)] if enabled else None

    def write(self, step: int, start: int, x: torch.Tensor, x0_hat: torch.Tensor) -> None:
        if self.states is None:
            return
        frames = slice(start, start + x.shape[2])
        self.states[step][:, :, frames] = x
        self.predictions[step][:, :, frames] = x0_hat


class ChunkClock:
    """Wall time per finished chunk (CUDA synchronised); the first is measured from the start of generation."""

    def __init__(self, device: torch.device):
        self.device = device
        self.last = self._now()
        self.chunk_s: list[float] = []

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def tick(self) -> None:
        now = self._now()
        self.chunk_s.append(now - self.last)
        self.last = now

    @property
    def first_chunk_s(self) -> float:
        return self.chunk_s[0] if self.chunk_s else 0.0


def latent_geometry(forwards: CausalForwards) -> tuple[int, int, int, int]:
    """(C, F, h, w) of the video latents the forwards generate (`CausalWan.latent_shape`, from the spec)."""
    shape = getattr(forwards, "latent_shape", None)
    if shape is None:
        raise ValueError(f"{type(forwards).__name__} has no latent_shape: build the forwards with "
                         "raven.models.causal_forwards(model, spec), which takes it from spec.latent_shape")
    return tuple(shape)


def check_timesteps(timesteps: Sequence[int]) -> list[int]:
    times = [int(t) for t in timesteps]
    if not times or times[0] > NUM_TRAIN_TIMESTEPS or times[-1] <= 0 or any(a <= b for a, b in itertools.pairwise(times)):
        raise ValueError(f"timesteps must decrease strictly within (0, {NUM_TRAIN_TIMESTEPS}], got {times} "
                         "(sampler.timesteps or sampling_timesteps(num_steps, shift) in the run spec)")
    return times


def guided_text(text: torch.Tensor, guidance: float, negative_text: torch.Tensor | None) -> torch.Tensor:
    """Text for the batch: [text ; negative_text] under CFG (conditional first), else text."""
    if guidance == 1.0:
        return text
    if negative_text is None:
        raise ValueError(f"guidance {guidance} needs negative_text (the encoded negative prompt)")
    return torch.cat([text, negative_text.expand(text.shape[0], *negative_text.shape[1:])])


def generate(
    forwards: CausalForwards,
    text: torch.Tensor,
    seeds: Sequence[int],
    *,
    timesteps: Sequence[int],
    num_chunks: int | None = None,
    record: bool = False,
    guidance: float = 1.0,
    negative_text: torch.Tensor | None = None,
    rolling_window: int | None = None,
    on_chunk: ChunkCallback | None = None,
    kernel: KernelKind = "consistency",
    eta: float = 0.0,
    em_convention: EmConvention = "release",
) -> Generation:
    """Generate a batch of videos chunk by chunk with the KV cache (docs/method.md §2, §3, §9).

    `text` [B, L, D] is the text encoder's output (wherever it is: the generation runs on the forwards'
    device, in the text's dtype), `seeds[b]` seeds sample b's noise. `timesteps` is the
    step list without the final 0 (e.g. [1000, 938, 833, 625]); `num_chunks` may exceed the training
    horizon. `on_chunk(j, x0_chunk)` is called as soon as chunk j is clean. `kernel` is `consistency`
    (docs/method.md §2) or `euler_maruyama` with noise level `eta` in `em_convention` (docs/method.md §8).
    """
    times = check_timesteps(timesteps)
    if len(seeds) != text.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for a batch of {text.shape[0]} prompts: give one seed per sample")
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r} is not one of {KERNELS} (sampler.kind in the run spec)")
    sizes = list(forwards.chunk_frames) if num_chunks is None else chunk_layout(forwards.chunk_frames,
                                                                                  num_chunks=num_chunks)
    channels, _, height, width = latent_geometry(forwards)
    text = text.to(forwards.device)
    negative_text = None if negative_text is None else negative_text.to(text)
    like = torch.empty(text.shape[0], channels, sum(sizes), height, width, device=text.device, dtype=text.dtype)
    sampler = Sampler(forwards, guided_text(text, guidance, negative_text), guidance, kernel, eta,
                      em_sigma_max(times, em_convention), em_convention)
    noise = SampleNoise(seeds, channels, height, width, like)
    recorder = Recorder(len(times), like, record)
    clock = ChunkClock(like.device)
    if rolling_window is None:
        latents = _stream(sampler, sizes, times, noise, recorder, clock, on_chunk, like)
    else:
        latents = _rolling(sampler, sizes, times, rolling_window, noise, recorder, clock, on_chunk, like)
    return Generation(latents, recorder.states, recorder.predictions, times, clock.first_chunk_s, clock.chunk_s)


def _frame_times(time_value: int, batch: int, frames: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch, frames), time_value, dtype=torch.long, device=device)


def _stream(sampler: Sampler, sizes: list[int], times: list[int], noise: SampleNoise, recorder: Recorder,
            clock: ChunkClock, on_chunk: ChunkCallback | None, like: torch.Tensor) -> torch.Tensor:
    """Chunk by chunk: all steps on the chunk, then the t = 0 cache refresh (docs/method.md §3)."""
    batch, latents = like.shape[0], torch.empty_like(like)
    cache = sampler.new_cache(batch)
    for j, (start, size) in enumerate(zip(chunk_starts(sizes), sizes)):
        x = noise.draw(size)
        for k, (t, s) in enumerate(zip(times, times[1:] + [0])):
            t_frames, s_frames = _frame_times(t, batch, size, like.device), _frame_times(s, batch, size, like.device)
            x0_hat = sampler.predict_x0(x, t_frames, start, cache)
            recorder.write(k, start, x, x0_hat)
            x = sampler.step(x, x0_hat, t_frames, s_frames, noise)
        latents[:, :, start : start + size] = x
        if j < len(sizes) - 1:
            sampler.cache_clean(x, start, cache)
        clock.tick()
        if on_chunk is not None:
            on_chunk(j, x)
    return latents


@dataclass
class WindowChunk:
    index: int
    start: int
    state: torch.Tensor
    step: int = 0


def _rolling(sampler: Sampler, sizes: list[int], times: list[int], window: int, noise: SampleNoise,
             recorder: Recorder, clock: ChunkClock, on_chunk: ChunkCallback | None, like: torch.Tensor) -> torch.Tensor:
    """Rolling Forcing (docs/method.md §9): a window of chunks at staggered steps, denoised jointly, sliding by one."""
    if window != len(times):
        raise ValueError(f"rolling_window {window} must equal the number of sampling steps {len(times)}: each chunk "
                         "spends one window position per step (sampler.rolling_window / sampler.timesteps)")
    batch, latents = like.shape[0], torch.empty_like(like)
    starts = chunk_starts(sizes)
    cache, active = sampler.new_cache(batch), []
    next_times = times[1:] + [0]
    for entering in range(len(sizes) + window - 1):
        if entering < len(sizes):
            active.append(WindowChunk(entering, starts[entering], noise.draw(sizes[entering])))
        x = torch.cat([chunk.state for chunk in active], dim=2)
        t = torch.cat([_frame_times(times[c.step], batch, sizes[c.index], like.device) for c in active], dim=1)
        x0_hat = sampler.predict_x0(x, t, active[0].start, cache)
        offset = 0
        for chunk in active:
            size = sizes[chunk.index]
            chunk_x0 = x0_hat[:, :, offset : offset + size]
            recorder.write(chunk.step, chunk.start, chunk.state, chunk_x0)
            t_chunk = _frame_times(times[chunk.step], batch, size, like.device)
            s_chunk = _frame_times(next_times[chunk.step], batch, size, like.device)
            chunk.state = sampler.step(chunk.state, chunk_x0, t_chunk, s_chunk, noise)
            chunk.step += 1
            offset += size
        if active[0].step == window:
            done = active.pop(0)
            latents[:, :, done.start : done.start + sizes[done.index]] = done.state
            if done.index < len(sizes) - 1:
                sampler.cache_clean(done.state, done.start, cache)
            clock.tick()
            if on_chunk is not None:
                on_chunk(done.index, done.state)
    return latents
