"""Training: the one loop (optimisers, EMA, TTUR, checkpoints, distributed, tracking), chunk weighting,
base pretraining, the causal ODE initialisation, DMD with history modes and CM-GRPO."""

from raven.training.weighting import chunk_weighted_loss, chunk_weights

__all__ = ["chunk_weighted_loss", "chunk_weights"]
