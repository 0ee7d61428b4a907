"""benchmarks/grpo_noise.py's statistics on gradients of known mean and covariance: the unbiased signal |G|²,
the noise tr Σ, the steps a run needs before signal beats noise, and the cosine between objectives."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import grpo_noise  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

STEPS, DIM = 200, 50


def draws(mean: np.ndarray, noise_trace: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return mean + rng.normal(0, np.sqrt(noise_trace / DIM), (STEPS, DIM))


def test_signal_noise_and_cosines_recover_the_known_answers():
    a = np.zeros(DIM)
    a[0] = 1.0  # |G_a|² = 1
    b = np.zeros(DIM)
    b[0], b[1] = 0.6 * 2, 0.8 * 2  # |G_b|² = 4, cos(G_a, G_b) = 0.6
    gradients = {"a": draws(a, 10.0, 0), "b": draws(b, 10.0, 1), "pure_noise": draws(np.zeros(DIM), 10.0, 2)}
    stats = grpo_noise.noise_statistics(gradients, rollouts_per_step=8, iterations=40, bootstrap=300)
    first, second, noise = (stats["objectives"][name] for name in ("a", "b", "pure_noise"))
    assert abs(first["signal"] - 1.0) < 0.2 and abs(second["signal"] - 4.0) < 0.4
    assert all(abs(o["noise"] - 10.0) < 1.0 for o in (first, second, noise))
    # tr Σ / |G|²: 10 steps of 8 rollouts for a, 2.5 for b; the sum of 40 step gradients is 4 and 16 times
    # more signal than noise
    assert abs(first["noise_scale_steps"] - 10) < 2.5 and abs(first["noise_scale_rollouts"] - 80) < 20
    assert abs(second["update_snr"] - 16) < 2.5
    assert first["signal_significant"] and first["signal_ci"][0] < 1.0 < first["signal_ci"][1]
    assert first["noise_scale_steps_ci"][0] < 10 < first["noise_scale_steps_ci"][1]
    assert not noise["signal_significant"] and noise["signal_ci"][0] < 0 < noise["signal_ci"][1]
    cosine = next(c for c in stats["cosines"] if (c["a"], c["b"]) == ("a", "b"))
    assert abs(cosine["cosine"] - 0.6) < 0.15 and cosine["ci"][0] < 0.6 < cosine["ci"][1]


def test_an_objective_without_spread_has_no_signal_and_no_noise_scale():
    gradients = {"flat": np.zeros((STEPS, DIM)), "a": draws(np.ones(DIM), 1.0, 3)}
    stats = grpo_noise.noise_statistics(gradients, rollouts_per_step=8, iterations=40, bootstrap=50)
    flat = stats["objectives"]["flat"]
    assert flat["signal"] == 0 and flat["noise"] == 0 and flat["noise_scale_steps"] is None
    assert not flat["signal_significant"]


def test_adams_geometry_discounts_a_coordinate_whose_noise_dominates_the_raw_norm():
    """One coordinate with noise std 20, 49 with mean 1 and noise std 1: raw, tr Σ/|G|² = (400 + 49)/49 ≈ 9.2
    steps; each coordinate divided by its RMS (20 and √2), |G|² = 49/2 and tr Σ = 1 + 49/2, about 1 step."""
    rng = np.random.default_rng(4)
    rows = np.hstack([rng.normal(0, 20, (STEPS, 1)), 1 + rng.normal(0, 1, (STEPS, DIM - 1))]).astype(np.float32)
    sgd = grpo_noise.noise_statistics({"x": rows}, 8, 40, bootstrap=100)["objectives"]["x"]
    adam = grpo_noise.noise_statistics({"x": rows}, 8, 40, bootstrap=100, adam=True)["objectives"]["x"]
    assert 7.5 < sgd["noise_scale_steps"] < 11 and 0.85 < adam["noise_scale_steps"] < 1.25


def test_a_steps_gradient_under_any_objective_is_the_trainers_gradient_of_that_step(repo_root, tmp_path):
    """End to end at smoke scale: the per-rollout decomposition (1/n) Σ Â_i G_i equals the gradient of the
    trainer's own loss over the whole step with the same rollouts, transitions and advantages, for the row's
    objective and for one reward alone; an objective without spread (text alignment on a random student's
    videos, which the toy parser cannot read) has advantage 0 and no gradient."""
    import torch

    from raven.config import resolve_spec, write_spec
    from raven.rewards import aggregate_rewards
    from raven.training.base import ModelParts
    from raven.training.cmgrpo import step_advantages

    options = {"group_size": 4, "groups_per_call": 2, "sync_group_size": 1, "lora_rank": 4, "lora_alpha": 4}
    spec = resolve_spec(repo_root / "config", "smoke", overrides={"stages": {"cmgrpo": options}})
    write_spec(spec, tmp_path / "spec.yaml")
    ModelParts.build(spec).transformer(0).save_pretrained(tmp_path / "student")
    (tmp_path / "prompts.txt").write_text("red square right fast on black\nblue circle up slow on white\n")
    probe = grpo_noise.GradientProbe.build(tmp_path / "spec.yaml", tmp_path / "student", tmp_path / "prompts.txt", None)
    batch, k, per_rollout = probe.rollout_gradients(iteration=0)
    assert per_rollout.shape == (8, sum(p.numel() for p in probe.trainable))
    objectives = grpo_noise.objectives_of(probe.step.options)
    for name in ("row", "raft_RAFT", "videoalign_TA"):
        aggregation, weights = objectives[name]
        decomposed = grpo_noise.objective_gradient(batch, per_rollout, aggregation, weights, probe.step.options)
        aggregate = aggregate_rewards(aggregation, batch.rewards, weights, batch.prompts)  # one call per step here
        advantages, _ = step_advantages(batch.prompts, aggregate, batch.rewards, weights,
                                        probe.step.options.adv_clip_max)
        loss, _ = probe.step.micro_batch_loss(batch.rollout, k, batch.text, advantages, probe.context(0))
        direct = torch.cat([g.flatten() for g in torch.autograd.grad(loss, probe.trainable)]).double()
        error = float((decomposed - direct).abs().max() / direct.abs().max().clamp_min(1e-30))
        assert error < 1e-5, name  # float32 forwards summed in another order: measured 7e-7
    assert float(decomposed.abs().max()) == 0 and float(per_rollout.abs().max()) > 0  # videoalign_TA: no spread


def test_a_replica_starts_from_its_training_summarys_init_or_from_its_source_rows_replica(tmp_path):
    assert grpo_noise.init_of(tmp_path, "raven_cmgrpo@s1") == tmp_path / "train/raven@s1/model_ema"
    assert grpo_noise.init_of(tmp_path, "raven_cmgrpo") == tmp_path / "train/raven/model_ema"
    summary = tmp_path / "train/raven_cmgrpo@s2/summary.json"
    summary.parent.mkdir(parents=True)
    summary.write_text('{"init": "elsewhere/model_ema"}')
    assert grpo_noise.init_of(tmp_path, "raven_cmgrpo@s2") == Path("elsewhere/model_ema")
