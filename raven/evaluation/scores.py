"""VBench's Total / Quality / Semantic aggregation (docs/method.md §10), with the constants of VBench's
`scripts/constant.py` and the formula of `scripts/cal_final_score.py`.

Per dimension: (raw − Min) / (Max − Min) × weight (0.5 for dynamic degree, 1 otherwise);
Quality = Σ over the 7 quality dimensions / Σ their weights (6.5); Semantic = Σ over the 9 semantic
dimensions / 9; Total = (4·Quality + 1·Semantic) / 5. All values are fractions (tables print ×100).
"""

from __future__ import annotations

from collections.abc import Mapping

QUALITY_DIMENSIONS = (
    "subject_consistency", "background_consistency", "temporal_flickering", "motion_smoothness",
    "aesthetic_quality", "imaging_quality", "dynamic_degree",
)
SEMANTIC_DIMENSIONS = (
    "object_class", "multiple_objects", "human_action", "color", "spatial_relationship", "scene",
    "appearance_style", "temporal_style", "overall_consistency",
)
DIMENSIONS = QUALITY_DIMENSIONS + SEMANTIC_DIMENSIONS
WEIGHTS = {name: 0.5 if name == "dynamic_degree" else 1.0 for name in DIMENSIONS}
VBENCH_BOUNDS: dict[str, tuple[float, float]] = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
    "object_class": (0.0, 1.0),
    "multiple_objects": (0.0, 1.0),
    "human_action": (0.0, 1.0),
    "color": (0.0, 1.0),
    "spatial_relationship": (0.0, 1.0),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}
# Toy-world stand-ins are fractions in [0, 1] by construction: same weights and formula, bounds 0..1.
UNIT_BOUNDS: dict[str, tuple[float, float]] = {name: (0.0, 1.0) for name in DIMENSIONS}
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4.0, 1.0


def normalised_scores(dimension_scores: Mapping[str, float],
                      bounds: Mapping[str, tuple[float, float]] = VBENCH_BOUNDS) -> dict[str, float]:
    """(raw − Min)/(Max − Min) × weight per dimension; a missing dimension raises KeyError naming it."""
    missing = [name for name in DIMENSIONS if name not in dimension_scores]
    if missing:
        raise KeyError(f"VBench aggregation needs all 16 dimensions; missing: {', '.join(missing)} "
                       "(evaluate them first; a missing dimension is never counted as zero)")
    normalised = {}
    for name in DIMENSIONS:
        low, high = bounds[name]
        normalised[name] = (float(dimension_scores[name]) - low) / (high - low) * WEIGHTS[name]
    return normalised


def vbench_scores(dimension_scores: Mapping[str, float],
                  bounds: Mapping[str, tuple[float, float]] = VBENCH_BOUNDS) -> dict[str, float]:
    """{total, quality, semantic} (fractions) from the 16 raw dimension scores (docs/method.md §10)."""
    normalised = normalised_scores(dimension_scores, bounds)
    quality = sum(normalised[n] for n in QUALITY_DIMENSIONS) / sum(WEIGHTS[n] for n in QUALITY_DIMENSIONS)
    semantic = sum(normalised[n] for n in SEMANTIC_DIMENSIONS) / sum(WEIGHTS[n] for n in SEMANTIC_DIMENSIONS)
    total = (QUALITY_WEIGHT * quality + SEMANTIC_WEIGHT * semantic) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
    return {"total": total, "quality": quality, "semantic": semantic}
