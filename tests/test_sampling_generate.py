"""Streaming generation (docs/method.md §2, §3, §9) with a tiny random Wan transformer: seeds, trajectory, equivalences."""

import itertools

import pytest
import torch

from raven.diffusion.ode import euler_step
from raven.diffusion.schedule import x0_from_velocity
from raven.diffusion.streaming import generate
from raven.models import build_text_encoder, build_transformer, causal_forwards
from raven.diffusion.trajectory import Rollout

TIMES = [1000, 938, 833, 625]
PROMPTS = ["red circle left fast on black", "blue square still on white"]


@pytest.fixture(scope="module")
def parts(repo_root):
    from raven.config import resolve_spec

    spec = resolve_spec(repo_root / "config", "smoke")
    torch.manual_seed(0)
    model = build_transformer(spec).eval()
    encoder = build_text_encoder(spec)
    return spec, model, encoder(PROMPTS), encoder([""])


@pytest.fixture(scope="module")
def forwards(parts):
    spec, model, _, _ = parts
    return causal_forwards(model, spec)


@pytest.fixture(scope="module")
def generation(parts, forwards):
    _, _, text, _ = parts
    with torch.no_grad():
        return generate(forwards, text, [11, 12], timesteps=TIMES, record=True)


def seed_draws(seed: int, shapes):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator) for shape in shapes]


def test_same_seed_identical_different_seeds_differ_and_neighbours_do_not_matter(parts, forwards, generation):
    _, _, text, _ = parts
    same_prompt = text[:1].expand(2, -1, -1)
    with torch.no_grad():
        again = generate(forwards, text, [11, 12], timesteps=TIMES)
        pair = generate(forwards, same_prompt, [11, 99], timesteps=TIMES)
        alone = generate(forwards, text[1:], [12], timesteps=TIMES)
    assert torch.equal(again.latents, generation.latents)
    assert torch.allclose(pair.latents[0], generation.latents[0], atol=1e-5)
    assert (pair.latents[0] - pair.latents[1]).abs().mean() > 0.1
    assert torch.allclose(alone.latents[0], generation.latents[1], atol=1e-5)


def test_trajectory_layout_noise_draws_and_final_prediction(parts, generation):
    spec, _, _, _ = parts
    channels, frames, height, width = spec.latent_shape
    assert generation.times == TIMES and len(generation.states) == len(generation.predictions) == 4
    assert all(state.shape == (2, channels, frames, height, width) for state in generation.states)
    assert torch.equal(generation.predictions[-1], generation.latents)
    # sample 0, chunk 0 draws: initial noise, then fresh noise for steps 938, 833, 625 (docs/method.md §2, not DDIM)
    draws = seed_draws(11, [(channels, 3, height, width)] * 4)
    chunk = slice(0, 3)
    assert torch.equal(generation.states[0][0, :, chunk], draws[0])
    for k, s in enumerate(TIMES[1:]):
        expected = (1 - s / 1000) * generation.predictions[k][0, :, chunk] + (s / 1000) * draws[k + 1]
        assert torch.allclose(generation.states[k + 1][0, :, chunk], expected, atol=1e-6)
    assert len(generation.chunk_s) == len(spec.chunk_frames) and generation.first_chunk_s == generation.chunk_s[0]


def test_rollout_carries_the_trajectory(generation, parts, forwards):
    rollout = generation.rollout()
    assert isinstance(rollout, Rollout) and rollout.x0 is generation.latents and rollout.times == TIMES
    with torch.no_grad():
        plain = generate(forwards, parts[2], [1, 2], timesteps=TIMES)
    assert plain.states is None
    with pytest.raises(ValueError, match="record=True"):
        plain.rollout()


def test_model_calls_equal_interleaved_and_block_causal_forwards_on_the_same_tokens(parts, forwards, generation):
    """docs/method.md §3: the interleaved forward's noisy outputs (history = the rollout's x0) equal the streaming
    calls, and a block-causal forward over [clean history at t = 0 ; noisy last chunk] does too."""
    _, _, text, _ = parts
    x0 = generation.latents
    frames = x0.shape[2]
    with torch.no_grad():
        for k, time_k in enumerate(TIMES):
            state = generation.states[k]
            t = torch.full((2, frames), time_k)
            interleaved = x0_from_velocity(state, forwards.interleaved(state, t, x0, text), t)
            assert (interleaved - generation.predictions[k]).abs().max() <= 1e-5
            mixed, t_mixed = x0.clone(), torch.zeros_like(t)
            mixed[:, :, 6:], t_mixed[:, 6:] = state[:, :, 6:], time_k
            block = x0_from_velocity(mixed, forwards.block_causal(mixed, t_mixed, text), t_mixed)
            assert (block[:, :, 6:] - generation.predictions[k][:, :, 6:]).abs().max() <= 1e-5


def test_longer_than_the_training_horizon_keeps_the_prefix(parts, forwards, generation):
    _, _, text, _ = parts
    with torch.no_grad():
        double = generate(forwards, text, [11, 12], timesteps=TIMES, num_chunks=6)
        quadruple = generate(forwards, text[:1], [11], timesteps=TIMES, num_chunks=12)
    assert double.latents.shape[2] == 18 and quadruple.latents.shape[2] == 36
    assert torch.allclose(double.latents[:, :, :9], generation.latents, atol=1e-5)  # causal: later chunks change nothing before
    assert torch.allclose(quadruple.latents[:, :, :18], double.latents[:1], atol=1e-5)
    assert bool(torch.isfinite(quadruple.latents).all())


def test_student_cfg_combines_conditional_and_negative_predictions(parts, forwards):
    _, _, text, negative = parts
    with torch.no_grad():
        guided = generate(forwards, text, [5, 6], timesteps=TIMES, record=True, guidance=3.0, negative_text=negative)
        x, t = guided.states[0][:, :, :3], torch.full((2, 3), 1000)
        cond = x0_from_velocity(x, forwards.chunk(x, t, 0, text, forwards.new_cache(2)), t)
        uncond = x0_from_velocity(x, forwards.chunk(x, t, 0, negative.expand(2, -1, -1), forwards.new_cache(2)), t)
    assert torch.allclose(guided.predictions[0][:, :, :3], uncond + 3.0 * (cond - uncond), atol=1e-5)
    with pytest.raises(ValueError, match="negative_text"):
        generate(forwards, text, [5, 6], timesteps=TIMES, guidance=3.0)


def test_euler_maruyama_without_noise_follows_the_euler_ode(parts, forwards):
    _, _, text, _ = parts
    with torch.no_grad():
        ode = generate(forwards, text, [3, 4], timesteps=TIMES, record=True, kernel="euler_maruyama", eta=0.0)
        sde = generate(forwards, text, [3, 4], timesteps=TIMES, record=True, kernel="euler_maruyama", eta=0.4)
    for k, (t, s) in enumerate(itertools.pairwise(TIMES)):
        expected = euler_step(ode.states[k], ode.predictions[k], torch.tensor([t, t]), torch.tensor([s, s]))
        assert torch.allclose(ode.states[k + 1], expected, atol=1e-5)
    first = slice(0, forwards.chunk_frames[0])  # later chunks' noise follows the noisy last step's draws
    assert torch.equal(ode.states[0][:, :, first], sde.states[0][:, :, first])
    assert not torch.allclose(ode.states[1], sde.states[1])


def test_the_release_kernel_keeps_noise_at_the_last_step_and_flow_grpos_does_not(parts, forwards):
    """docs/method.md §8: the release's Euler–Maruyama kernel draws noise on the step to s = 0; Flow-GRPO's returns x̂0."""
    _, _, text, _ = parts
    with torch.no_grad():
        release = generate(forwards, text, [3, 4], timesteps=TIMES, record=True, kernel="euler_maruyama", eta=0.4)
        flow_grpo = generate(forwards, text, [3, 4], timesteps=TIMES, record=True, kernel="euler_maruyama", eta=0.4,
                             em_convention="flow_grpo")
    assert torch.equal(flow_grpo.latents, flow_grpo.predictions[-1])
    assert not torch.allclose(release.latents, release.predictions[-1], atol=1e-3)


def test_rolling_window_denoises_staggered_chunks_jointly(parts, forwards, generation):
    _, _, text, _ = parts
    seen = []
    with torch.no_grad():
        rolling = generate(forwards, text, [11, 12], timesteps=TIMES, record=True, rolling_window=4,
                           on_chunk=lambda j, chunk: seen.append((j, chunk.clone())))
        x = torch.cat([rolling.states[1][:, :, 0:3], rolling.states[0][:, :, 3:6]], dim=2)
        t = torch.tensor([[938] * 3 + [1000] * 3] * 2)
        joint = x0_from_velocity(x, forwards.chunk(x, t, 0, text, forwards.new_cache(2)), t)
    assert [j for j, _ in seen] == [0, 1, 2]
    assert all(torch.equal(chunk, rolling.latents[:, :, 3 * j : 3 * j + 3]) for j, chunk in seen)
    assert torch.equal(rolling.predictions[-1], rolling.latents)
    # chunk 0's first step sees only itself, as in plain streaming (same seed, same first draws)
    assert torch.allclose(rolling.predictions[0][:, :, :3], generation.predictions[0][:, :, :3], atol=1e-6)
    assert torch.allclose(rolling.states[1][:, :, :3], generation.states[1][:, :, :3], atol=1e-6)
    # the second window holds chunk 0 at step 1 and chunk 1 at step 0, denoised in one forward
    assert torch.allclose(rolling.predictions[1][:, :, 0:3], joint[:, :, 0:3], atol=1e-5)
    assert torch.allclose(rolling.predictions[0][:, :, 3:6], joint[:, :, 3:6], atol=1e-5)
    with pytest.raises(ValueError, match="rolling_window 5"):
        generate(forwards, text, [1, 2], timesteps=TIMES, rolling_window=5)


def test_sink_and_window_forwards_stream_past_the_horizon(parts):
    """Sink 1 + window 1 over 8 chunks: the streaming calls equal the interleaved forward under the same rule."""
    spec, model, text, _ = parts
    windowed = causal_forwards(model, spec, sink=1, window=1)
    seen = []
    with torch.no_grad():
        generation = generate(windowed, text, [1, 2], timesteps=[1000, 757, 522], num_chunks=8, record=True,
                              on_chunk=lambda j, chunk: seen.append(j))
        state, t = generation.states[1], torch.full((2, 24), 757)
        interleaved = x0_from_velocity(state, windowed.interleaved(state, t, generation.latents, text), t)
    assert generation.latents.shape[2] == 24 and seen == list(range(8)) and len(generation.chunk_s) == 8
    assert (interleaved - generation.predictions[1]).abs().max() <= 1e-5


def test_bad_arguments_name_the_fix(parts, forwards):
    _, _, text, _ = parts
    with pytest.raises(ValueError, match="one seed per sample"):
        generate(forwards, text, [1], timesteps=TIMES)
    with pytest.raises(ValueError, match="decrease strictly"):
        generate(forwards, text, [1, 2], timesteps=[625, 833])
    with pytest.raises(ValueError, match="sampler.kind"):
        generate(forwards, text, [1, 2], timesteps=TIMES, kernel="ddim")
