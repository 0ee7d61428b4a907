"""Rewards (docs/method.md §8, §10): a registry of named rewards (weight-free toy rewards and adapters of the paper's
reward models over local weights), their aggregation and group-normalised advantages."""

from raven.rewards.aggregate import (
    AdvantageTracker,
    aggregate_rewards,
    group_zscore,
    normalize_then_sum,
    sum_then_normalize,
)
from raven.rewards.registry import (
    REWARD_NAMES,
    RewardSources,
    build_reward,
    build_rewards,
    score_videos,
)

__all__ = [
    "REWARD_NAMES",
    "AdvantageTracker",
    "RewardSources",
    "aggregate_rewards",
    "build_reward",
    "build_rewards",
    "group_advantages",
    "group_zscore",
    "normalize_then_sum",
    "score_videos",
    "sum_then_normalize",
]
