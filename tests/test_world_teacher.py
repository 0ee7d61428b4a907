"""The exact teacher: brute-force float64 agreement, the σ → 0 and σ = 1 limits, history, CFG."""

import numpy as np
import pytest
import torch

from raven.world.render import mixture, to_model_range
from raven.world.teacher import ExactTeacher

PROMPTS = ["red circle right slow on black", "blue square up fast and green triangle still on grey"]
UNCOND = PROMPTS + ["yellow triangle down-left slow on white", "cyan circle still on black"]


def _items(prompt):
    return torch.from_numpy(to_model_range(mixture(prompt, 16, 16, 9)))  # [M, 3, T, H, W] float64


def _brute_force(x_t, t, prompt_groups, history_sigma=0.05):
    """Posterior mean by explicit per-item distances (no expansion), float64, weights per group."""
    out = []
    for b in range(x_t.shape[0]):
        items, log_prior = prompt_groups[b]
        sigma = t[b].double() / 1000
        a = torch.where(t[b] == 0, 1.0, 1 - sigma)
        s = torch.where(t[b] == 0, history_sigma, sigma)
        diff = x_t[b][None] - a[None, None, :, None, None] * items
        logits = log_prior - (diff.pow(2).sum(dim=(1, 3, 4)) / (2 * s**2)).sum(-1)
        weights = torch.softmax(logits, 0)
        mean = (weights[:, None, None, None, None] * items).sum(0)
        clean = (t[b] == 0)[None, :, None, None]
        out.append(torch.where(clean, x_t[b], mean))
    return torch.stack(out)


def _cond_group(prompt):
    items = _items(prompt)
    return items, torch.full((len(items),), -np.log(len(items)), dtype=torch.float64)


def _uncond_group():
    groups = [_cond_group(p) for p in UNCOND]
    return torch.cat([g[0] for g in groups]), torch.cat([g[1] for g in groups]) - np.log(len(groups))


def test_matches_brute_force_float64_with_per_frame_times_and_cfg():
    generator = torch.Generator().manual_seed(0)
    teacher = ExactTeacher(16, 16, 9, uncond_prompts=UNCOND)
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    x0 = torch.stack([_items(p)[i] for p, i in zip(prompts, [1, 3, 4])])
    t = torch.randint(850, 1001, (3, 9), generator=generator)
    t[2, :3] = 0  # clean history on the third sample
    x_t = (1 - t[:, None, :, None, None] / 1000) * x0 + t[:, None, :, None, None] / 1000 * torch.randn(
        x0.shape, generator=generator, dtype=torch.float64)
    cond = _brute_force(x_t, t, [_cond_group(p) for p in prompts])
    np.testing.assert_allclose(teacher(x_t, t, prompts), cond, atol=1e-5, rtol=0)
    uncond = _brute_force(x_t, t, [_uncond_group()] * 3)
    np.testing.assert_allclose(teacher(x_t, t, prompts, guidance=3.0), uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=0)
    assert (cond - x0).abs().max() > 0.1  # the weights are not trivially one-hot at these times


def test_nearest_item_as_sigma_goes_to_zero_and_mixture_mean_at_one():
    items = _items(PROMPTS[1])
    teacher = ExactTeacher(16, 16, 9)
    noise = torch.randn(items[:2].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x_t = 0.999 * items[[2, 5]] + 0.001 * noise
    out = teacher(x_t, torch.tensor([1, 1]), [PROMPTS[1]] * 2)
    torch.testing.assert_close(out, items[[2, 5]], atol=1e-9, rtol=0)
    out = teacher(noise, torch.tensor([1000, 1000]), [PROMPTS[1]] * 2)
    torch.testing.assert_close(out, items.mean(0).expand_as(out), atol=1e-12, rtol=0)


def test_clean_history_selects_the_items_that_share_it():
    items = _items(PROMPTS[0])
    teacher = ExactTeacher(16, 16, 9)
    t = torch.full((1, 9), 1000)
    t[0, :3] = 0
    x_t = torch.randn(items[:1].shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_t[:, :, :3] = items[4, :, :3]
    out = teacher(x_t, t, [PROMPTS[0]])
    torch.testing.assert_close(out[0], items[4], atol=1e-9, rtol=0)  # history fixes the start position


def test_bad_inputs_give_clear_errors(smoke_spec):
    teacher = ExactTeacher.from_spec(smoke_spec)
    assert teacher.geometry == (16, 16, 9, 8)
    with pytest.raises(ValueError, match="uncond_prompts"):
        teacher(torch.zeros(1, 3, 9, 16, 16), torch.tensor([500]), [PROMPTS[0]], guidance=2.0)
    with pytest.raises(ValueError, match="exact teacher built for"):
        teacher(torch.zeros(1, 3, 5, 16, 16), torch.tensor([500]), [PROMPTS[0]])
    with pytest.raises(ValueError, match="unknown word 'orange'"):
        teacher(torch.zeros(1, 3, 9, 16, 16), torch.tensor([500]), ["orange circle still on black"])
