"""Causal ODE initialisation (docs/method.md §6): chunk-by-chunk ODE trajectories of the exact causal teacher and
their shards. The exact teacher works on pixels; the pixel codec is a permutation, so pixels stand in
for latents here (C = 3, F = T)."""

from __future__ import annotations

import json

import pytest
import torch

from raven.training.ode_init import OdePairs, OdePairsOptions, euler_grid, frame_times, ode_trajectories, write_pairs
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.render import mixture, to_model_range
from raven.world.teacher import ExactTeacher

RECORD = [1000, 938, 833, 625]
CHUNKS = [3, 3, 3]


def exact(teacher: ExactTeacher):
    return lambda x_t, t, prompts: teacher(x_t, t, prompts)


def test_euler_grid_passes_through_the_sampling_times():
    grid = euler_grid(10, 3.0, RECORD)
    assert grid[0] == 1000 and grid[-1] == 0 and set(RECORD) <= set(grid)
    assert grid == sorted(set(grid), reverse=True)


def test_frame_times_history_current_future():
    t = frame_times(1, 9, 700, slice(3, 6), 3)
    assert t.tolist() == [[0, 0, 0, 700, 700, 700, 1000, 1000, 1000]]


@pytest.mark.parametrize("chunkwise", [True, False])
def test_exact_teacher_trajectories_end_on_one_mixture_item(chunkwise):
    prompts = [prompt_text(p) for p in sample_prompts(3, "train", seed=1)]
    teacher = ExactTeacher(16, 16, 9)
    noise = torch.randn(3, 3, 9, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    states, x0 = ode_trajectories(exact(teacher), noise, prompts, CHUNKS, euler_grid(30, 3.0, RECORD), RECORD, chunkwise)
    assert states.shape == (4, 3, 3, 9, 16, 16)
    torch.testing.assert_close(states[0], noise)  # every chunk starts from its noise at t = 1000
    for b, prompt in enumerate(prompts):
        items = torch.from_numpy(to_model_range(mixture(prompt, 16, 16, 9)))
        distance = (items - x0[b]).flatten(1).abs().max(dim=1).values
        # the three chunks together are ONE item of the prompt's mixture: the history conditions later chunks
        assert float(distance.min()) < 0.02, float(distance.min())
    # at t_k the state of chunk j lies between its noise and its endpoint: x_t = (1 - σ) x0 + σ ε exactly
    # holds for the ODE of a point mass only, so check the noise level instead: σ ≈ 0.833 at t = 833
    residual = states[2] - x0
    assert abs(float((residual * noise).mean() / noise.pow(2).mean()) - 0.833) < 0.05


def test_pairs_shards_round_trip_and_resume(tmp_path):
    prompts = [prompt_text(p) for p in sample_prompts(3, "train", seed=2)]
    teacher = ExactTeacher(16, 16, 9)
    options = OdePairsOptions(samples_per_prompt=2, euler_steps=8, batch_size=4, shard_size=4)
    summary = write_pairs(tmp_path, exact(teacher), prompts, (3, 9, 16, 16), CHUNKS, options, RECORD, seed=3)
    assert summary["pairs"] == 6 and summary["shards"] == ["pairs-00000.safetensors", "pairs-00001.safetensors"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    pairs = OdePairs.read(tmp_path)
    assert pairs.states.shape == (6, 4, 3, 9, 16, 16) and pairs.x0.shape == (6, 3, 9, 16, 16)
    assert pairs.prompts == [p for p in prompts for _ in range(2)] and pairs.times.tolist() == RECORD
    # sample i uses noise seed + i, independent of batching
    noise = torch.randn(3, 9, 16, 16, generator=torch.Generator().manual_seed(3 + 5))
    torch.testing.assert_close(pairs.states[5, 0], noise)
    first = (tmp_path / "pairs-00000.safetensors").stat().st_mtime_ns
    write_pairs(tmp_path, exact(teacher), prompts, (3, 9, 16, 16), CHUNKS, options, RECORD, seed=3)
    assert (tmp_path / "pairs-00000.safetensors").stat().st_mtime_ns == first  # a rerun keeps finished shards


def test_missing_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="raven ode pairs"):
        OdePairs.read(tmp_path)
