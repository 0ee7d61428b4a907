"""The sampler kernels of docs/method.md §2 and §8 on hand-computed cases; log-density gradients against autograd."""

import math

import pytest
import torch

from raven.diffusion import sampling_timesteps
from raven.diffusion.consistency import (
    EM_CONVENTIONS,
    consistency_step,
    em_sigma_max,
    euler_maruyama_mean_std,
    euler_maruyama_step,
    gaussian_log_prob,
    kernel_mean_std,
    transition_mean_std,
)
from raven.diffusion.ode import euler_step

TIMES = [1000, 938, 833, 625]


def test_the_students_sampling_times_are_spec_section_2():
    assert sampling_timesteps(4, 5.0) == [1000, 938, 833, 625]
    assert sampling_timesteps(5, 5.0) == [1000, 952, 882, 769, 556]  # Rolling Forcing's 5 warped steps
    assert sampling_timesteps(4, 5.0, warp=False) == [1000, 750, 500, 250]


def test_consistency_step_uses_fresh_noise_not_the_predicted_noise():
    x0_hat = torch.ones(1, 1, 2, 1, 1)
    noise = torch.full_like(x0_hat, 2.0)
    # x_s = (1 − 0.25)·1 + 0.25·2 = 1.25, whatever x_t was
    assert torch.allclose(consistency_step(x0_hat, 250, noise), torch.full_like(x0_hat, 1.25))
    assert torch.equal(consistency_step(x0_hat, 0, noise), x0_hat)


def test_transition_kernel_mean_and_std_per_sample_and_per_frame():
    x0_hat = torch.full((2, 1, 3, 1, 1), 4.0)
    mean, std = transition_mean_std(x0_hat, torch.tensor([938, 0]))
    assert torch.allclose(mean.flatten(), torch.tensor([0.248] * 3 + [4.0] * 3))
    assert torch.allclose(std.flatten(), torch.tensor([0.938, 0.0]))
    mean, std = transition_mean_std(x0_hat, torch.tensor([[1000, 500, 0], [250, 250, 250]]))
    assert torch.allclose(mean.flatten(), torch.tensor([0.0, 2.0, 4.0, 3.0, 3.0, 3.0]))
    assert torch.allclose(std.flatten(), torch.tensor([1.0, 0.5, 0.0, 0.25, 0.25, 0.25]))


def test_gaussian_log_prob_is_the_summed_normal_density():
    generator = torch.Generator().manual_seed(0)
    x, mean = torch.randn(3, 2, 4, 2, 2, generator=generator), torch.randn(3, 2, 4, 2, 2, generator=generator)
    std = torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1, 1)
    expected = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x).flatten(1).sum(1)
    assert gaussian_log_prob(x, mean, std).shape == (3,)
    assert torch.allclose(gaussian_log_prob(x, mean, std), expected, atol=1e-4)
    # at the mean: −n·(log σ + ½ log 2π)
    n = 2 * 4 * 2 * 2
    assert math.isclose(gaussian_log_prob(mean, mean, 0.5)[0].item(), -n * (math.log(0.5) + 0.5 * math.log(2 * math.pi)),
                        rel_tol=1e-6)


def test_log_prob_gradient_matches_autograd_for_mean_and_prediction():
    generator = torch.Generator().manual_seed(1)
    x0_hat = torch.randn(2, 3, 6, 2, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([833, 625])
    mean, std = transition_mean_std(x0_hat, s)
    x_s = (mean + std * torch.randn(mean.shape, generator=generator, dtype=torch.float64)).detach()
    mean.retain_grad()
    gaussian_log_prob(x_s, mean, std).sum().backward()
    assert torch.allclose(mean.grad, (x_s - mean) / std**2)  # ∇_μ log N = (x − μ)/σ²
    a = 1 - s.double() / 1000
    assert torch.allclose(x0_hat.grad, a.view(-1, 1, 1, 1, 1) * (x_s - mean) / std**2)  # chain rule through μ = A·x̂0


def test_cm_grpo_target_gives_minus_advantage_times_the_log_prob_gradient():
    """docs/method.md §8: loss (x̂0 − sg(x̂0 + Â·A/(2σ²)·(x_s − μ)))² has gradient −Â·∇_x̂0 log N(x_s; μ, σ²)."""
    generator = torch.Generator().manual_seed(2)
    x0_hat = torch.randn(2, 3, 3, 2, 2, generator=generator, dtype=torch.float64, requires_grad=True)
    advantage = torch.tensor([1.5, -0.5], dtype=torch.float64).view(-1, 1, 1, 1, 1)
    s = 833
    mean, std = transition_mean_std(x0_hat, s)
    x_s = (mean + std * torch.randn(mean.shape, generator=generator, dtype=torch.float64)).detach()
    target = (x0_hat + advantage * (1 - s / 1000) / (2 * std**2) * (x_s - mean)).detach()
    (grad_loss,) = torch.autograd.grad((x0_hat - target).pow(2).sum(), x0_hat)
    log_prob = (advantage.flatten() * gaussian_log_prob(x_s, *transition_mean_std(x0_hat, s))).sum()
    (grad_log_prob,) = torch.autograd.grad(log_prob, x0_hat)
    assert torch.allclose(grad_loss, -grad_log_prob)


def test_log_prob_refuses_the_deterministic_last_step():
    x = torch.zeros(1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="std > 0"):
        gaussian_log_prob(x, x, transition_mean_std(x, 0)[1])


def test_euler_maruyama_hand_computed_step():
    # x̂0 = 0, x_t = 1 at σ_t = 0.5: v = 2, ε̂ = 2; to σ_s = 0.25 (Δ = −0.25) with η = 0.5:
    # g = 0.5·sqrt(0.5/0.5) = 0.5, μ = 1 − 0.25·(2 + 0.25/1·2) = 0.375, σ = 0.5·sqrt(0.25) = 0.25
    x_t, x0_hat = torch.ones(1, 1, 1, 1, 1), torch.zeros(1, 1, 1, 1, 1)
    mean, std = euler_maruyama_mean_std(x_t, x0_hat, 500, 250, eta=0.5, sigma_max=0.938, convention="flow_grpo")
    assert torch.allclose(mean, torch.tensor(0.375)) and torch.allclose(std, torch.tensor(0.25))
    noise = torch.full_like(x_t, -1.0)
    assert torch.allclose(euler_maruyama_step(x_t, x0_hat, 500, 250, noise, 0.5, 0.938), torch.tensor(0.125))


@pytest.mark.parametrize("convention", EM_CONVENTIONS)
def test_euler_maruyama_at_eta_zero_is_the_euler_ode_step(convention):
    generator = torch.Generator().manual_seed(3)
    x_t, x0_hat = torch.randn(2, 3, 3, 2, 2, generator=generator), torch.randn(2, 3, 3, 2, 2, generator=generator)
    t, s = torch.tensor([938, 833]), torch.tensor([833, 625])
    mean, std = euler_maruyama_mean_std(x_t, x0_hat, t, s, 0.0, em_sigma_max(TIMES, convention), convention)
    assert torch.allclose(mean, euler_step(x_t, x0_hat, t, s), atol=1e-6) and float(std.abs().max()) == 0.0


def test_flow_grpo_convention_uses_the_first_step_below_1000_and_a_deterministic_last_step():
    generator = torch.Generator().manual_seed(3)
    x_t, x0_hat = torch.randn(2, 3, 3, 2, 2, generator=generator), torch.randn(2, 3, 3, 2, 2, generator=generator)
    sigma_max = em_sigma_max(TIMES, "flow_grpo")
    assert sigma_max == 0.938
    # t = 1000: the denominator 1 − σ_t uses σ_max, g = η·sqrt(1/(1 − 0.938)), σ = g·sqrt(0.062) = η
    _, std = euler_maruyama_mean_std(x_t, x0_hat, 1000, 938, 0.4, sigma_max, "flow_grpo")
    assert torch.allclose(std, torch.tensor(0.4))
    mean, std = euler_maruyama_mean_std(x_t, x0_hat, 625, 0, 0.4, sigma_max, "flow_grpo")
    assert torch.equal(mean, x0_hat) and float(std.abs().max()) == 0.0


def test_release_convention_hand_computed_first_and_last_steps():
    """The release's kernel (docs/method.md §8): σ_max = 1 at t = 1000, A = 0 clamped to 1e-6; noise kept at s = 0."""
    x_t, x0_hat = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64), torch.full((1, 1, 1, 1, 1), 0.5, dtype=torch.float64)
    assert em_sigma_max(TIMES, "release") == 1.0
    # t = 1000 → 938, η = 0.4: v = 0.5, ε̂ = x_t = 1, g² = 0.16·(1 + 1/1e-6) = 160000.16, Δ = −0.062:
    # μ = 1 − 0.062·(0.5 + 80000.08) = −4959.03596, σ = sqrt(160000.16·0.062) = 99.599247
    mean, std = euler_maruyama_mean_std(x_t, x0_hat, 1000, 938, 0.4, 1.0, "release")
    assert mean.item() == pytest.approx(-4959.03596, abs=1e-5) and std.item() == pytest.approx(99.599247, abs=1e-5)
    # t = 625 → 0: v = 0.8, ε̂ = 1 + 0.375·0.8 = 1.3, g² = 0.16·0.625/0.375 = 0.26667, Δ = −0.625:
    # μ = 1 − 0.625·(0.8 + 0.26667/1.25·1.3) = 0.326667, σ = sqrt(0.26667·0.625) = 0.408248 (noise kept)
    mean, std = euler_maruyama_mean_std(x_t, x0_hat, 625, 0, 0.4, 1.0, "release")
    assert mean.item() == pytest.approx(0.326667, abs=1e-6) and std.item() == pytest.approx(0.408248, abs=1e-6)
    noise = torch.full_like(x_t, 2.0)
    assert euler_maruyama_step(x_t, x0_hat, 625, 0, noise, 0.4, 1.0).item() == pytest.approx(1.143163, abs=1e-6)


def test_conventions_agree_strictly_inside_the_schedule():
    generator = torch.Generator().manual_seed(5)
    x_t, x0_hat = torch.randn(2, 3, 3, 2, 2, generator=generator), torch.randn(2, 3, 3, 2, 2, generator=generator)
    release = euler_maruyama_mean_std(x_t, x0_hat, 833, 625, 0.8, em_sigma_max(TIMES, "release"), "release")
    flow_grpo = euler_maruyama_mean_std(x_t, x0_hat, 833, 625, 0.8, em_sigma_max(TIMES, "flow_grpo"), "flow_grpo")
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(release, flow_grpo))
    with pytest.raises(ValueError, match="em_convention"):
        euler_maruyama_mean_std(x_t, x0_hat, 833, 625, 0.8, 1.0, "sde")


def test_kernel_dispatch_and_unknown_kind():
    x = torch.ones(1, 1, 1, 1, 1)
    assert torch.allclose(kernel_mean_std("consistency", x, x, 938, 833)[0], torch.tensor(0.167))
    with pytest.raises(ValueError, match="sampler.kind"):
        kernel_mean_std("ddim", x, x, 938, 833)
