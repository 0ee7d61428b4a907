"""CM-GRPO formulas (docs/method.md §8): the policy-loss gradient, the KL term, the trained transitions, options."""

from __future__ import annotations

import pytest
import torch

from raven.config import ConfigError, resolve_spec, stage_options
from raven.diffusion.consistency import gaussian_log_prob, kernel_mean_std
from raven.training.cmgrpo import (
    CMGRPOOptions,
    cmgrpo_loss,
    kl_elementwise_loss,
    log_prob_gradient,
    policy_elementwise_loss,
    transition_choice,
)

SHAPE = (2, 3, 4, 2, 2)


def transition(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x0_hat = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    x_t = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    x_s = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    t = torch.tensor([[938] * 4, [833] * 4])
    s = torch.tensor([[833] * 4, [625] * 4])
    return x0_hat, x_t, x_s, t, s


def test_policy_gradient_is_minus_advantage_times_the_analytic_score():
    x0_hat, x_t, x_s, t, s = transition()
    advantages = torch.tensor([1.5, -0.7], dtype=torch.float64)
    x0 = x0_hat.clone().requires_grad_(True)
    gradient, _, _ = log_prob_gradient(x0, x_t, x_s, t, s, "consistency", 0.0, 0.938)
    policy_elementwise_loss(x0, advantages, gradient).sum().backward()
    a = (1 - s.double() / 1000).view(2, 1, 4, 1, 1)
    sigma = (s.double() / 1000).view(2, 1, 4, 1, 1)
    analytic_score = a * (x_s - a * x0_hat) / sigma**2  # ∇_x̂0 log N(x_s; A x̂0, σ²)
    expected = -advantages.view(2, 1, 1, 1, 1) * analytic_score
    assert torch.allclose(x0.grad, expected, rtol=1e-10, atol=1e-10)


def test_euler_maruyama_gradient_matches_autograd_of_the_log_density():
    x0_hat, x_t, x_s, t, s = transition(1)
    advantages = torch.tensor([0.3, 2.0], dtype=torch.float64)
    x0 = x0_hat.clone().requires_grad_(True)
    gradient, _, _ = log_prob_gradient(x0, x_t, x_s, t, s, "euler_maruyama", 0.4, 0.938)
    policy_elementwise_loss(x0, advantages, gradient).sum().backward()
    reference = x0_hat.clone().requires_grad_(True)
    mean, std = kernel_mean_std("euler_maruyama", x_t, reference, t, s, 0.4, 0.938)
    (-(advantages * gaussian_log_prob(x_s, mean, std)).sum()).backward()
    assert torch.allclose(x0.grad, reference.grad, rtol=1e-9, atol=1e-9)


def test_a_positive_advantage_step_raises_the_transition_log_probability():
    x0_hat, x_t, x_s, t, s = transition(2)
    for sign in (1.0, -1.0):
        x0 = x0_hat.clone().requires_grad_(True)
        gradient, mean, std = log_prob_gradient(x0, x_t, x_s, t, s, "consistency", 0.0, 0.938)
        policy_elementwise_loss(x0, torch.full((2,), sign, dtype=torch.float64), gradient).sum().backward()
        moved = x0_hat - 1e-4 * x0.grad
        after, _ = kernel_mean_std("consistency", x_t, moved, t, s)
        change = gaussian_log_prob(x_s, after, std) - gaussian_log_prob(x_s, mean, std)
        assert bool((sign * change > 0).all())


def test_zero_advantage_gives_zero_gradient():
    x0_hat, x_t, x_s, t, s = transition(3)
    x0 = x0_hat.clone().requires_grad_(True)
    gradient, _, _ = log_prob_gradient(x0, x_t, x_s, t, s, "consistency", 0.0, 0.938)
    policy_elementwise_loss(x0, torch.zeros(2, dtype=torch.float64), gradient).sum().backward()
    assert torch.count_nonzero(x0.grad) == 0


def test_kl_gradient_is_that_of_the_mean_distance_over_two_sigma_squared():
    generator = torch.Generator().manual_seed(4)
    mean = torch.randn(SHAPE, generator=generator, dtype=torch.float64, requires_grad=True)
    mean_ref = torch.randn(SHAPE, generator=generator, dtype=torch.float64)
    std = torch.full(SHAPE, 0.6, dtype=torch.float64)
    kl_elementwise_loss(mean, mean_ref, std).sum().backward()
    assert torch.allclose(mean.grad, (mean.detach() - mean_ref) / 0.36)


def test_the_kl_is_added_with_beta_beside_the_scaled_policy_loss():
    """docs/method.md §8: total = policy_loss_scaling·L_policy + β·L_KL; β is not multiplied by the scaling of 100."""
    assert cmgrpo_loss(torch.tensor(2.0), torch.tensor(3.0), 100.0, 0.004).item() == pytest.approx(200.012)
    policy = torch.tensor(0.5, requires_grad=True)
    kl = torch.tensor(1.5, requires_grad=True)
    cmgrpo_loss(policy, kl, 100.0, 0.004).backward()
    assert policy.grad.item() == pytest.approx(100.0) and kl.grad.item() == pytest.approx(0.004)
    assert cmgrpo_loss(torch.tensor(2.0), 0.0, 100.0, 0.0).item() == 200.0


def test_the_last_step_is_never_trained():
    k = transition_choice(10_000, 4, 1, torch.Generator().manual_seed(0))
    assert set(k.tolist()) == {0, 1, 2}
    assert set(transition_choice(1000, 4, 2, torch.Generator().manual_seed(0)).tolist()) == {0, 1}
    with pytest.raises(ValueError, match="no trainable step"):
        transition_choice(1, 4, 4, torch.Generator())


def test_options_default_to_the_paper_and_reject_unknown_rewards(repo_root):
    spec = resolve_spec(repo_root / "config", "paper", row="raven_cmgrpo")
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    assert options.reward_weights == {"videoalign_TA": 2.0, "raft_RAFT": 0.35, "ms_MS": 0.75, "aq_AES": 1.0, "iq_IMG": 1.0}
    assert (options.group_size, options.adv_clip_max, options.skip_timesteps, options.policy_loss_scaling) == (4, 5.0, 1, 100.0)
    assert options.kl_beta == 0 and options.history_mode == "raven" and options.weighting == -1
    spec = resolve_spec(repo_root / "config", "smoke", overrides={"stages": {"cmgrpo": {"reward_weights": {"clip_AES": 1.0}}}})
    with pytest.raises(ConfigError, match="clip_AES"):
        stage_options(spec, "cmgrpo", CMGRPOOptions)


def test_causal_forcing_row_uses_sf_and_no_weighting(repo_root):
    spec = resolve_spec(repo_root / "config", "smoke", row="causal_forcing_cmgrpo")
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    assert options.history_mode == "sf" and options.weighting == 0 and options.reward_weights["raft_RAFT"] == 2.35
