"""CM-GRPO end to end raises a reward the student can trivially change, and lowers it when its weight is negative:
the known answer that tells a working trainer from one whose estimator or sign is wrong (README "Why CM-GRPO
does not learn here yet"). The reward is the videos' mean brightness, put in place of the toy imaging quality;
the others are weighted 0, which the trainer must accept (it computes only the weighted rewards)."""

from __future__ import annotations

import numpy as np
import pytest

from raven.cli import main
from raven.config import resolve_spec, write_spec
from raven.rewards import registry
from raven.tracking.plots import training_histories
from raven.training.base import ModelParts

ITERATIONS = 60


def brightness(frames: np.ndarray, prompt: str, fps: float) -> float:
    return float(frames.mean() / 255.0)


def trained_rewards(repo_root, tmp_path, weight: float) -> np.ndarray:
    """The brightness of every training step's rollouts (the policy's reward/iq_IMG history)."""
    options = {"iterations": ITERATIONS, "group_size": 4, "sync_group_size": 1, "lora_rank": 4, "lora_alpha": 4,
               "checkpoint_every": ITERATIONS, "optim": {"lr": 1e-2},
               "reward_weights": {"videoalign_TA": 0.0, "raft_RAFT": 0.0, "ms_MS": 0.0, "aq_AES": 0.0, "iq_IMG": weight}}
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    spec = resolve_spec(repo_root / "config", "smoke", overrides={"tracking_uri": uri, "stages": {"cmgrpo": options}})
    write_spec(spec, tmp_path / "spec.yaml")
    ModelParts.build(spec).transformer(0).save_pretrained(tmp_path / "student")
    (tmp_path / "prompts.txt").write_text("red square right fast on black\nblue circle up slow on white\n")
    assert main(["train", "cmgrpo", "--spec", str(tmp_path / "spec.yaml"), "--init", str(tmp_path / "student"),
                 "--prompts", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out")]) == 0
    (_, history), = training_histories(uri, "smoke")
    return np.array([value for _, value in history["reward/iq_IMG"]])


@pytest.mark.parametrize("weight", [1.0, -1.0])
def test_cmgrpo_moves_a_trivial_reward_the_way_its_weight_says(repo_root, tmp_path, monkeypatch, weight):
    monkeypatch.setitem(registry.TOY_REWARDS, "iq_IMG", brightness)
    rewards = trained_rewards(repo_root, tmp_path, weight)
    assert len(rewards) == ITERATIONS
    first, last = rewards[:5].mean(), rewards[-5:].mean()
    # measured: 0.526 -> 0.714 with weight 1, 0.523 -> 0.311 with weight -1 (a random student starts near 0.52)
    assert weight * (last - first) > 0.1
