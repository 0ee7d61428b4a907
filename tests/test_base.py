"""The base model's flow-matching pieces (docs/method.md §1): loss, text table, batches from clips and from the toy
world's mixture."""

from __future__ import annotations

import pytest
import torch

from raven.config import ConfigError, stage_options
from raven.training.base import BaseOptions, MixtureBatches, TextTable, base_loss
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.render import mixture, to_model_range
from raven.world.teacher import ExactTeacher


def test_flow_loss_hand_computed():
    # x0 = 1, ε = 3, t = 500: x_t = 2, target v = ε − x0 = 2; prediction 1 -> squared error 1, x0-weighted σ² = 1/4
    x0, noise, t = torch.ones(1, 1, 1, 1, 1), torch.full((1, 1, 1, 1, 1), 3.0), torch.tensor([500])
    x_t, v = torch.full_like(x0, 2.0), torch.ones_like(x0)
    assert float(base_loss(v, x_t, t, x0, noise, "velocity")) == pytest.approx(1.0)
    assert float(base_loss(v, x_t, t, x0, noise, "x0")) == pytest.approx(0.25)
    # a denoiser target x̂0* = 1 gives the same velocity target (x_t − x̂0*)/σ = 2
    assert float(base_loss(v, x_t, t, x0, None, "velocity")) == pytest.approx(1.0)


def test_flow_loss_with_per_frame_times():
    # two frames at t = 0 and 1000: x0-weighting σ² keeps only the second frame's error (4) -> mean 2
    v, x_t, x0, noise = torch.zeros(1, 1, 2, 1, 1), torch.zeros(1, 1, 2, 1, 1), torch.zeros(1, 1, 2, 1, 1), torch.full((1, 1, 2, 1, 1), 2.0)
    assert float(base_loss(v, x_t, torch.tensor([[0, 1000]]), x0, noise, "x0")) == pytest.approx(2.0)


def test_options_validate(smoke_spec):
    with pytest.raises(ConfigError, match="time_range"):
        stage_options(smoke_spec.model_copy(update={"stages": {"base": {"time_range": [0.5, 0.2]}}}), "base", BaseOptions)
    exact_velocity = {"base": {"objective": "exact", "prediction_loss": "velocity"}}
    with pytest.raises(ConfigError, match="divides"):
        stage_options(smoke_spec.model_copy(update={"stages": exact_velocity}), "base", BaseOptions)
    assert stage_options(smoke_spec, "base", BaseOptions).budget_s is not None


def test_text_table_rows_and_empty_prompt_read_per_batch():
    calls = []

    def encode(prompts):
        calls.append(list(prompts))
        return torch.tensor([[[float(len(p))]] for p in prompts])

    table = TextTable.build(encode, ["ab", "c", "ab"])
    assert table.prompts == ["ab", "c"] and not calls  # nothing is encoded up front: no table in memory
    assert table.embeddings[:].flatten().tolist() == [0.0, 2.0, 1.0]
    assert table.rows(["c", "ab"]).tolist() == [2, 1]
    assert table.embeddings[table.rows(["c"])].flatten().tolist() == [1.0] and calls[-1] == ["c"]


def test_mixture_batches_are_items_of_the_prompts_mixture():
    prompts = [prompt_text(p) for p in sample_prompts(2, "train", seed=0)]
    batches = MixtureBatches(prompts, ExactTeacher(16, 16, 9), encode=lambda pixels: pixels)
    x0, drawn = batches.draw(4, torch.Generator().manual_seed(1))
    assert x0.shape == (4, 3, 9, 16, 16)
    for video, prompt in zip(x0, drawn):
        items = torch.from_numpy(to_model_range(mixture(prompt, 16, 16, 9))).float()
        assert float((items - video).flatten(1).abs().max(1).values.min()) < 1e-6
