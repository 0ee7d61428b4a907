"""DMD formulas of docs/method.md §4 on hand-computed cases, and autograd against the analytic gradient."""

from __future__ import annotations

import math

import pytest
import torch

from raven.training.dmd import (
    critic_flow_loss,
    dmd_elementwise_loss,
    dmd_gradient,
    dmd_normaliser,
    reward_sample_weights,
)


def test_critic_flow_loss_hand_computed():
    v_fake = torch.tensor([[1.0, 1.0]])
    x0 = torch.tensor([[0.0, 1.0]])
    noise = torch.tensor([[1.0, 0.0]])
    # target eps - x0 = [1, -1]; squared errors [0, 4]; mean 2
    assert critic_flow_loss(v_fake, x0, noise).item() == 2.0


def test_normaliser_is_per_sample_float64_with_floor():
    x0_hat = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    x0_real = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    n = dmd_normaliser(x0_hat, x0_real)
    assert n.dtype == torch.float64
    assert n.tolist() == [1.5, 1e-5]


def test_dmd_gradient_hand_computed():
    x0_hat = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    x0_real = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    x0_fake = torch.tensor([[3.0, 0.0], [1.0, 1.0 + 2e-5]], dtype=torch.float64)
    grad = dmd_gradient(x0_hat, x0_fake, x0_real)
    # sample 0: n = 1.5 -> [3/1.5, 0]; sample 1: n = 1e-5 (floor) -> [0, 2e-5/1e-5]
    assert torch.allclose(grad, torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64))


def test_autograd_of_elementwise_loss_equals_analytic_gradient():
    generator = torch.Generator().manual_seed(0)
    shape = (2, 4, 6, 2, 2)
    x0_hat = torch.randn(shape, generator=generator, requires_grad=True)
    x0_fake = torch.randn(shape, generator=generator)
    x0_real = torch.randn(shape, generator=generator)
    dmd_elementwise_loss(x0_hat, x0_fake, x0_real).sum().backward()
    n = (x0_hat.detach().double() - x0_real.double()).abs().mean(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1)
    analytic = (x0_fake.double() - x0_real.double()) / n
    assert torch.allclose(x0_hat.grad.double(), analytic, atol=1e-6)
    assert torch.allclose(dmd_gradient(x0_hat, x0_fake, x0_real), analytic)


def test_loss_value_is_half_squared_gradient():
    x0_hat = torch.tensor([[1.0, 2.0]])
    x0_real = torch.tensor([[0.0, 0.0]])
    x0_fake = torch.tensor([[3.0, 0.0]])
    # gradient [2, 0] -> 0.5 * [4, 0]
    assert dmd_elementwise_loss(x0_hat, x0_fake, x0_real).tolist() == [[2.0, 0.0]]


def test_reward_weights_are_exp_beta_reward():
    weights = reward_sample_weights(torch.tensor([0.0, math.log(2.0)]), beta=1.0)
    assert torch.allclose(weights, torch.tensor([1.0, 2.0], dtype=torch.float64))
    weights = reward_sample_weights(torch.tensor([0.0, math.log(2.0)]), beta=2.0)
    assert torch.allclose(weights, torch.tensor([1.0, 4.0], dtype=torch.float64))


def test_checkpoint_from_another_architecture_is_named(tmp_path, smoke_spec, tiny_spec):
    from diffusers import WanTransformer3DModel

    from raven.config import ConfigError
    from raven.training.dmd import require_matching_architecture

    t = tiny_spec.transformer
    WanTransformer3DModel(
        patch_size=t.patch_size, num_attention_heads=t.num_attention_heads, attention_head_dim=t.attention_head_dim,
        in_channels=12, out_channels=12, text_dim=tiny_spec.text_encoder.d_model, freq_dim=t.freq_dim,
        ffn_dim=t.ffn_dim, num_layers=t.num_layers,
    ).save_pretrained(tmp_path / "student")
    assert require_matching_architecture(tmp_path / "student", tiny_spec, "--init") == tmp_path / "student"
    with pytest.raises(ConfigError, match=r"--init .*config.json: num_layers = 4 but the run spec \(scale 'smoke'\) needs 2"):
        require_matching_architecture(tmp_path / "student", smoke_spec, "--init")
    with pytest.raises(FileNotFoundError, match="--critic-init .*: no config.json"):
        require_matching_architecture(tmp_path, smoke_spec, "--critic-init")


def test_ttur_two_steps_the_generator_every_second_iteration():
    from raven.training.dmd import DMDOptions, DMDStep

    step = DMDStep(DMDOptions(ttur=2), None, None, None, [3, 3, 3])
    assert [step.trains_generator(i) for i in range(6)] == [False, True, False, True, False, True]
    step = DMDStep(DMDOptions(ttur=1), None, None, None, [3, 3, 3])
    assert all(step.trains_generator(i) for i in range(4))


def test_score_times_and_trajectory_choice_ranges():
    from raven.training.dmd import DMDOptions, score_times, trajectory_step_choice

    t = score_times(2000, DMDOptions(), torch.Generator().manual_seed(0))
    assert t.min() >= 20 and t.max() <= 980
    k = trajectory_step_choice(2000, 4, torch.Generator().manual_seed(0))
    assert sorted(k.unique().tolist()) == [0, 1, 2, 3]
