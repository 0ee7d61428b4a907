"""CM-GRPO on the smoke-scale student: on-policy consistency (ratio 1 before an update), LoRA, NaN exclusion."""

from __future__ import annotations

import pytest
import torch

from raven.config import resolve_spec, stage_options
from raven.config.spec import OptimSpec
from raven.diffusion.consistency import gaussian_log_prob, kernel_mean_std
from raven.diffusion.streaming import generate
from raven.models import causal_forwards
from raven.rewards import RewardSources, build_rewards
from raven.training.base import ModelParts, TextTable
from raven.models.lora import add_lora
from raven.training.cmgrpo import CMGRPOOptions, CMGRPOStep
from raven.training.distributed import World
from raven.training.history import generator_x0
from raven.training.loop import Optimisers, StepContext, TrainedModel

PROMPT = "red square right fast on black"
TIMES = [1000, 938, 833, 625]


@pytest.fixture(scope="module")
def setup(repo_root):
    spec = resolve_spec(repo_root / "config", "smoke")
    parts = ModelParts.build(spec)
    model = add_lora(parts.transformer(0), 4, 4)
    with torch.no_grad():  # a non-trivial adapter, as after some training
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    return spec, parts, model


def test_lora_trains_only_adapters_on_the_spec_modules(setup):
    _, _, model = setup
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    adapted = {n.split(".lora_A")[0] for n in trainable if ".lora_A" in n}
    for suffix in ("attn1.to_q", "attn1.to_out.0", "attn2.to_v", "ffn.net.0.proj", "ffn.net.2", "proj_out",
                   "time_embedder.linear_1", "text_embedder.linear_2", "time_proj"):
        assert any(name.endswith(suffix) for name in adapted), suffix


def rollout_of(setup):
    spec, parts, model = setup
    forwards = causal_forwards(model, spec)
    table = TextTable.build(parts.encode_text, [PROMPT])
    text = table.embeddings[table.rows([PROMPT, PROMPT])]
    with torch.no_grad():
        return forwards, text, generate(forwards, text, [3, 4], timesteps=TIMES, record=True)


def test_raven_forward_reproduces_the_rollout_so_the_first_ratio_is_one(setup):
    spec = setup[0]
    forwards, text, generation = rollout_of(setup)
    rollout = generation.rollout()
    with torch.no_grad():
        for k in range(3):
            ks = torch.tensor([k, k])
            x0_hat = generator_x0("raven", forwards, rollout, ks, text, spec.chunk_frames, torch.Generator())
            assert torch.allclose(x0_hat, generation.predictions[k], atol=1e-4)
            s = torch.full((2, rollout.x0.shape[2]), TIMES[k + 1])
            train_mean, std = kernel_mean_std("consistency", rollout.states[k], x0_hat, None, s)
            roll_mean, _ = kernel_mean_std("consistency", rollout.states[k], generation.predictions[k], None, s)
            log_ratio = gaussian_log_prob(rollout.states[k + 1], train_mean, std) - \
                gaussian_log_prob(rollout.states[k + 1], roll_mean, std)
            assert torch.allclose(log_ratio.exp(), torch.ones(2), atol=1e-2)


def test_sf_forward_matches_the_rollout_on_the_first_chunk_only(setup):
    """SF-style training caches the same step's x̂0 of earlier chunks, the rollout their final x0 (docs/method.md §7)."""
    spec = setup[0]
    forwards, text, generation = rollout_of(setup)
    first = spec.chunk_frames[0]
    with torch.no_grad():
        x0_hat = generator_x0("sf", forwards, generation.rollout(), torch.tensor([1, 1]), text, spec.chunk_frames,
                              torch.Generator())
    assert torch.allclose(x0_hat[:, :, :first], generation.predictions[1][:, :, :first], atol=1e-4)
    assert not torch.allclose(x0_hat[:, :, first:], generation.predictions[1][:, :, first:], atol=1e-3)


def test_kl_reference_is_the_bidirectional_base_at_cfg_3_against_the_empty_prompt(setup, repo_root):
    """docs/method.md §8: μ_ref comes from the bidirectional base with CFG 3 against "", on the whole state x_t."""
    spec, parts, model = setup
    assert CMGRPOOptions.model_fields["kl_guidance"].default == 3.0  # the release's reference CFG
    spec = resolve_spec(repo_root / "config", "smoke", overrides={"stages": {"cmgrpo": {
        "kl_beta": 0.004, "kl_reference": "base", "kl_guidance": 3.0}}})  # smoke's own KL is CFG 1 on the policy
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    assert options.kl_guidance == 3.0
    reference = parts.transformer(5).eval()
    table = TextTable.build(parts.encode_text, [PROMPT])
    step = CMGRPOStep(options, spec, model, causal_forwards(model, spec), table, parts.codec.decode, {}, TIMES,
                      reference=reference)
    forwards, text, generation = rollout_of(setup)
    rollout, k = generation.rollout(), torch.tensor([0, 2])
    x_t, _, t, _ = step.transition(rollout, k)
    assert t[:, 0].tolist() == [1000, 833]
    with torch.no_grad():
        cond = reference(x_t, t[:, 0], text, return_dict=False)[0]
        uncond = reference(x_t, t[:, 0], table.embeddings[:1].expand_as(text), return_dict=False)[0]
    sigma = t[:, 0].double().view(-1, 1, 1, 1, 1) / 1000
    expected = x_t - sigma * (uncond + 3.0 * (cond - uncond))
    actual = step.reference_x0(rollout, k, text, x_t, t, torch.Generator())
    assert torch.allclose(actual, expected.to(actual.dtype), atol=1e-5)


def test_a_step_moves_only_the_adapter_and_excludes_failed_rewards(setup, repo_root, caplog):
    spec, parts, model = setup
    spec = resolve_spec(repo_root / "config", "smoke", overrides={"stages": {"cmgrpo": {
        "group_size": 2, "groups_per_call": 2, "sync_group_size": 1, "lora_rank": 4, "lora_alpha": 4}}})
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    prompts = [PROMPT, "a purple cube floating on mars"]  # the toy text alignment cannot parse the second
    step = CMGRPOStep(options, spec, model, causal_forwards(model, spec), TextTable.build(parts.encode_text, prompts),
                      parts.codec.decode, build_rewards(list(options.reward_weights), RewardSources()), TIMES)
    optimisers = Optimisers([TrainedModel("policy", model, OptimSpec(lr=1e-3))], World())
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for iteration in range(3):
        ctx = StepContext(iteration, torch.Generator().manual_seed(iteration), World(), optimisers)
        drawn = step.draw_prompts(ctx, 0)
        metrics = step(ctx)
        assert metrics["samples/excluded"] == 2 * drawn.count(prompts[1])
        assert all(torch.isfinite(torch.tensor(v)) for k, v in metrics.items() if k.startswith(("loss", "advantage")))
    assert "excluded" in caplog.text
    assert all(torch.equal(base[n], p) for n, p in model.named_parameters() if n in base)
    assert any(not torch.equal(lora[n], p) for n, p in model.named_parameters() if n in lora)


def test_ranks_of_a_sync_group_draw_the_same_prompts(setup, repo_root):
    spec, parts, model = setup
    spec = resolve_spec(repo_root / "config", "smoke", overrides={"stages": {"cmgrpo": {"sync_group_size": 2,
                                                                                        "groups_per_call": 3}}})
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    prompts = [f"{c} square right fast on black" for c in ("red", "green", "blue", "yellow", "cyan", "magenta")]
    step = CMGRPOStep(options, spec, model, None, TextTable.build(parts.encode_text, prompts), None, {}, TIMES)

    def drawn(rank, iteration):
        return step.draw_prompts(StepContext(iteration, torch.Generator(), World(rank=rank, world_size=4), None), 0)

    for iteration in range(3):
        assert drawn(0, iteration) == drawn(1, iteration) and drawn(2, iteration) == drawn(3, iteration)
    assert [drawn(0, i) for i in range(3)] != [drawn(2, i) for i in range(3)]


def test_rollouts_split_into_smaller_generate_calls_are_the_same_rollouts(setup, repo_root):
    spec, parts, model = setup
    prompts = [f"{c} square right fast on black" for c in ("red", "green", "blue")]
    batches = {}
    for size in (None, 2):
        spec = resolve_spec(repo_root / "config", "smoke", overrides={"stages": {"cmgrpo": {
            "group_size": 3, "groups_per_call": 2, "sync_group_size": 1, "rollout_batch_size": size}}})
        options = stage_options(spec, "cmgrpo", CMGRPOOptions)
        step = CMGRPOStep(options, spec, model, causal_forwards(model, spec), TextTable.build(parts.encode_text, prompts),
                          parts.codec.decode, build_rewards(list(options.reward_weights), RewardSources()), TIMES)
        ctx = StepContext(0, torch.Generator().manual_seed(5), World(), None)
        batches[size] = step.roll_out(ctx)
    whole, split = batches[None], batches[2]
    assert whole.prompts == split.prompts and len(whole.prompts) == 6
    torch.testing.assert_close(split.rollout.x0, whole.rollout.x0, atol=1e-5, rtol=1e-5)
    for a, b in zip(split.rollout.states, whole.rollout.states):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(split.aggregate, whole.aggregate, atol=1e-5, rtol=1e-5)
