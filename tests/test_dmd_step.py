"""The DMD step (docs/method.md §4): chunk-weighted DMD loss, its gradient, the critic's loss, Re-DMD weights."""

from __future__ import annotations

import pytest
import torch
from test_dmd_history import CHUNKS, FrameAttention, make_rollout

from raven.training.dmd import (
    DMDOptions,
    DMDStep,
    RewardWeighting,
    dmd_elementwise_loss,
)
from raven.training.teachers import WanTeacher
from raven.training.weighting import chunk_weighted_loss

TEXT_DIM = 8


def test_reverse_participation_weights_later_chunk_more():
    # two equal chunks, alpha = -1: p = [1, 0.5], w_hat = [0.5, 1], normalised w = [2/3, 4/3]
    per_element = torch.cat([torch.ones(1, 2, 3, 2, 2), torch.zeros(1, 2, 3, 2, 2)], dim=2)
    assert chunk_weighted_loss(per_element, CHUNKS, -1).item() == pytest.approx(1 / 3)
    assert chunk_weighted_loss(per_element.flip(2), CHUNKS, -1).item() == pytest.approx(2 / 3)
    assert chunk_weighted_loss(per_element, CHUNKS, 0).item() == pytest.approx(1 / 2)


def test_sample_weights_scale_each_sample():
    per_element = torch.cat([torch.ones(2, 2, 3, 2, 2), torch.zeros(2, 2, 3, 2, 2)], dim=2)
    # numerator (2/3 n)(1 + 3), denominator 2 samples * 2n
    loss = chunk_weighted_loss(per_element, CHUNKS, -1, torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(2 / 3)


def test_generator_gradient_is_dmd_gradient_times_chunk_weight():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 2, 6, 2, 2, generator=g, requires_grad=True)
    fake, real = torch.randn(2, 2, 6, 2, 2, generator=g), torch.randn(2, 2, 6, 2, 2, generator=g)
    chunk_weighted_loss(dmd_elementwise_loss(x0, fake, real), CHUNKS, -1).backward()
    n = (x0.detach().double() - real.double()).abs().mean(dim=(1, 2, 3, 4)).view(-1, 1, 1, 1, 1)
    w = torch.tensor([2 / 3] * 3 + [4 / 3] * 3, dtype=torch.float64).view(1, 1, 6, 1, 1)
    expected = (fake.double() - real.double()) / n * w / (2 * 48)
    assert torch.allclose(x0.grad.double(), expected, atol=1e-7)


@pytest.fixture
def tiny_wan():
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=2, out_channels=2,
        text_dim=TEXT_DIM, freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32,
    )


def text_of(prompts):
    return torch.stack([torch.randn(3, TEXT_DIM, generator=torch.Generator().manual_seed(len(p))) for p in prompts])


def make_step(critic, teacher_model, **options):
    teacher = WanTeacher(teacher_model.eval().requires_grad_(False), text_of, guidance=1.0)
    return DMDStep(DMDOptions(**options), FrameAttention(), critic, teacher, CHUNKS)


def test_critic_loss_decreases_when_the_critic_trains_on_a_fixed_rollout(tiny_wan):
    import copy

    step = make_step(tiny_wan, copy.deepcopy(tiny_wan))
    rollout, prompts = make_rollout(), ["a red ball", "blue box"]
    optimiser = torch.optim.Adam(tiny_wan.parameters(), lr=3e-3)

    def loss_at(seed):
        return step.critic_loss(rollout, text_of(prompts), torch.Generator().manual_seed(seed))

    before = sum(loss_at(s).item() for s in range(4))
    for it in range(30):
        optimiser.zero_grad()
        loss_at(it).backward()
        optimiser.step()
    assert sum(loss_at(s).item() for s in range(4)) < 0.8 * before


@pytest.mark.parametrize("mode", ["raven", "sf", "df_self_rollout"])
def test_student_gets_no_gradient_when_critic_equals_teacher(tiny_wan, mode):
    import copy

    rollout, prompts = make_rollout(), ["a red ball", "blue box"]
    step = make_step(tiny_wan, copy.deepcopy(tiny_wan), history_mode=mode)
    step.generator_loss(rollout, prompts, text_of(prompts), torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is None or p.grad.abs().max() < 1e-6 for p in step.student.parameters())
    other = make_step(tiny_wan, copy.deepcopy(tiny_wan), history_mode=mode)
    with torch.no_grad():
        for p in other.teacher.transformer.parameters():
            p.add_(0.1)
    other.generator_loss(rollout, prompts, text_of(prompts), torch.Generator().manual_seed(0)).backward()
    assert max(p.grad.abs().max().item() for p in other.student.parameters() if p.grad is not None) > 1e-6


def test_reward_weighting_needs_a_reward_function(tiny_wan):
    import copy

    step = make_step(tiny_wan, copy.deepcopy(tiny_wan), reward_weighting=RewardWeighting(reward="raft_RAFT", beta=1.0))
    with pytest.raises(ValueError, match="reward_weighting is set but no reward function"):
        step.generator_loss(make_rollout(), ["a", "b"], text_of(["a", "b"]), torch.Generator())
    step.reward = lambda x0, prompts: torch.tensor([0.0, 1.0])
    assert step.sample_weights(make_rollout(), ["a", "b"]).tolist() == pytest.approx([1.0, 2.718281828])
