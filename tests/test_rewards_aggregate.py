"""Reward aggregation and advantages on hand-computed groups (docs/method.md §8)."""

from __future__ import annotations

import math

import pytest
import torch

from raven.rewards import (
    AdvantageTracker,
    group_zscore,
    normalize_then_sum,
    sum_then_normalize,
)

SCALE = 1e-4  # the std floor only matters for equal rewards


def z(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / (max(std, SCALE) + 1e-5) for v in values]


def test_group_zscore_per_group_and_all_equal_group_gives_zeros():
    values = torch.tensor([1.0, 3.0, 5.0, 5.0])
    out = group_zscore(values, ["a", "a", "b", "b"])
    assert out.tolist() == pytest.approx(z([1.0, 3.0]) + [0.0, 0.0])
    assert not torch.isnan(out).any()


def test_normalize_then_sum_by_hand():
    rewards = {"videoalign_TA": torch.tensor([1.0, 2.0, 0.0, 4.0]), "raft_RAFT": torch.tensor([3.0, 1.0, 2.0, 2.0])}
    weights = {"videoalign_TA": 2.0, "raft_RAFT": -0.5}
    groups = [0, 0, 1, 1]
    expected = [(2.0 * a - 0.5 * b) / 2.5 for a, b in zip(z([1, 2]) + z([0, 4]), z([3, 1]) + z([2, 2]))]
    assert normalize_then_sum(rewards, weights, groups).tolist() == pytest.approx(expected)


def test_sum_then_normalize_by_hand():
    rewards = {"aq_AES": torch.tensor([0.5, 1.0]), "iq_IMG": torch.tensor([0.2, 0.4])}
    out = sum_then_normalize(rewards, {"aq_AES": 1.0, "iq_IMG": 3.0}, [0, 0])
    assert out.tolist() == pytest.approx([(0.5 + 0.6) / 4, (1.0 + 1.2) / 4])


def test_nan_sample_is_left_out_of_its_group():
    rewards = {"ms_MS": torch.tensor([1.0, float("nan"), 3.0])}
    out = normalize_then_sum(rewards, {"ms_MS": 1.0}, ["p", "p", "p"])
    assert torch.isnan(out[1])
    assert [out[0].item(), out[2].item()] == pytest.approx(z([1.0, 3.0]))


def test_weights_naming_an_absent_reward_are_an_error():
    with pytest.raises(KeyError, match="iq_IMG"):
        normalize_then_sum({"aq_AES": torch.ones(2)}, {"iq_IMG": 1.0}, [0, 0])


def test_tracker_pools_calls_per_prompt_clips_and_clears():
    tracker = AdvantageTracker(clip_max=1.0)
    tracker.add(["a", "b"], torch.tensor([0.0, 7.0]))
    tracker.add(["a", "b", "a"], torch.tensor([2.0, 7.0, float("nan")]))
    adv = tracker.advantages()
    a = 1 / (1 + 1e-5)  # prompt a pools 0 and 2 over both calls (the NaN left out): z = ∓1/(1 + 1e-5)
    assert adv.tolist() == pytest.approx([-a, 0.0, a, 0.0, 0.0])
    assert tracker.advantages().numel() == 0


def test_tracker_clip_bounds_large_advantages():
    tracker = AdvantageTracker(clip_max=1.0)
    tracker.add(["a"] * 4, torch.tensor([0.0, 0.0, 0.0, 1.0]))
    adv = tracker.advantages()  # z = [-0.577, -0.577, -0.577, 1.732]
    assert adv.max() == 1.0 and adv.min() == pytest.approx(z([0, 0, 0, 1])[0])


TRACKER_WORKER = """
import json, sys, torch, torch.distributed as dist
from raven.rewards import AdvantageTracker
dist.init_process_group("gloo")
rank = dist.get_rank()
tracker = AdvantageTracker(clip_max=5.0)
tracker.add(["a", "b"], torch.tensor([0.0, 1.0]) if rank == 0 else torch.tensor([2.0, 5.0]))
print(json.dumps(tracker.advantages().tolist()))
dist.destroy_process_group()
"""


def test_tracker_pools_each_prompt_over_ranks(tmp_path):
    import json
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    processes = [subprocess.Popen([sys.executable, "-c", TRACKER_WORKER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                                  "MASTER_PORT": port, "OMP_NUM_THREADS": "1"}) for r in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    a, b = 1 / (1 + 1e-5), 2 / (2 + 1e-5)  # pooled over both ranks: a from {0, 2}, b from {1, 5}
    assert json.loads(outputs[0].strip().splitlines()[-1]) == pytest.approx([-a, -b])
    assert json.loads(outputs[1].strip().splitlines()[-1]) == pytest.approx([a, b])


def test_a_zero_weighted_reward_need_not_be_computed():
    """The trainer builds only the weighted rewards: a weight of 0 (an ablation switching a reward off) must not
    ask for the missing scores, and aggregates as if the key were absent."""
    from raven.rewards.aggregate import valid_samples

    rewards = {"iq_IMG": torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64)}
    groups = ["a", "a", "b", "b"]
    for aggregate in (normalize_then_sum, sum_then_normalize):
        with_zero = aggregate(rewards, {"iq_IMG": 2.0, "videoalign_TA": 0.0}, groups)
        assert torch.equal(with_zero, aggregate(rewards, {"iq_IMG": 2.0}, groups))
    assert valid_samples(rewards, {"iq_IMG": 1.0, "ms_MS": 0.0}).all()
    with pytest.raises(KeyError, match="ms_MS"):
        sum_then_normalize(rewards, {"iq_IMG": 1.0, "ms_MS": 0.5}, groups)
    with pytest.raises(ValueError, match="all zero"):
        sum_then_normalize(rewards, {"iq_IMG": 0.0}, groups)
