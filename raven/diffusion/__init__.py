"""Flow-matching schedule, samplers, transition kernels and the streaming generator (docs/method.md §1–§3, §8, §9)."""

from raven.diffusion.schedule import sampling_timesteps

__all__ = ["sampling_timesteps"]
