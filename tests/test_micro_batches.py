"""A batch in equal slices with accumulated gradients (the release's ablations: 8 videos per GPU in slices
of 1, docs/method.md §7): the gradient and the logged loss are the whole batch's."""

from __future__ import annotations

import pytest
import torch

from raven.config.spec import OptimSpec
from raven.training.distributed import World
from raven.training.dmd import DMDOptions, micro_batches
from raven.training.loop import Optimisers, TrainedModel


def linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1, bias=False)


def test_accumulated_slices_step_like_the_batch_mean():
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0], [0.0, 1.0, -1.0], [2.0, 2.0, 2.0]])
    whole, sliced = linear(0), linear(0)
    sgd = OptimSpec(lr=0.1, betas=(0.0, 0.0), eps=1e-8)
    one = Optimisers([TrainedModel("m", whole, sgd)], World())
    many = Optimisers([TrainedModel("m", sliced, sgd)], World())
    metrics = one.update("m", whole(x).pow(2).mean())
    parts = [slice(0, 2), slice(2, 4)]
    sliced_metrics = many.accumulate("m", (sliced(x[part]).pow(2).mean() for part in parts), len(parts))
    assert sliced_metrics["loss/m"] == pytest.approx(metrics["loss/m"])
    assert sliced_metrics["grad_norm/m"] == pytest.approx(metrics["grad_norm/m"])
    assert torch.allclose(whole.weight, sliced.weight)
    with pytest.raises(ValueError, match="1 micro-batch losses for 'm', expected 2"):
        many.accumulate("m", [sliced(x).pow(2).mean()], 2)


def test_micro_batches_are_equal_slices_checked_in_the_options():
    assert micro_batches(8, 1) == [slice(i, i + 1) for i in range(8)]
    assert micro_batches(8, 4) == [slice(0, 4), slice(4, 8)]
    assert micro_batches(3, None) == [slice(0, 3)]
    with pytest.raises(ValueError, match="micro_batch_size 3 does not divide batch_size 8"):
        DMDOptions(batch_size=8, micro_batch_size=3)
