"""Euler ODE sampler: exact on a point mass, and its samples of the exact teacher pass the parser."""

import torch

from raven.diffusion.ode import euler_sample, euler_timesteps, guided
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.parser import accuracy
from raven.world.render import to_uint8
from raven.world.teacher import ExactTeacher


def test_euler_on_a_point_mass_is_a_straight_line():
    target = torch.full((2, 3, 1, 2, 2), 0.25)
    noise = torch.randn(2, 3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    out, states = euler_sample(lambda x, t: target, noise, [1000, 600, 0], record=True)
    torch.testing.assert_close(out, target)
    torch.testing.assert_close(states[600], 0.4 * target + 0.6 * noise)  # x_t = (1 - σ) x0 + σ ε


def test_guided_combines_predictions():
    cond, uncond = (lambda x, t: torch.ones_like(x)), (lambda x, t: torch.zeros_like(x))
    assert guided(cond, uncond, 3.0)(torch.zeros(1), torch.zeros(1)).item() == 3.0
    assert guided(cond, None, 1.0) is cond


def test_euler_samples_of_the_exact_teacher_pass_the_parser():
    prompts = [prompt_text(p) for p in sample_prompts(32, "heldout", seed=5)]
    teacher = ExactTeacher(16, 16, 9)
    noise = torch.randn(32, 3, 9, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert euler_timesteps(4, 5.0) == [1000, 938, 833, 625, 0]
    videos = euler_sample(lambda x, t: teacher(x, t, prompts), noise, euler_timesteps(40, 3.0))
    scores = accuracy(to_uint8(videos.numpy()), prompts)
    assert min(scores.values()) >= 0.99, scores
