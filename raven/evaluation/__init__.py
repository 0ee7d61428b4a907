"""Evaluation: VBench aggregation, protocol and adapter; the toy-world benchmark; UnifiedReward;
the user study; row JSONs for the tables."""

from raven.evaluation.scores import DIMENSIONS, QUALITY_DIMENSIONS, SEMANTIC_DIMENSIONS, vbench_scores

__all__ = ["DIMENSIONS", "QUALITY_DIMENSIONS", "SEMANTIC_DIMENSIONS", "vbench_scores"]
