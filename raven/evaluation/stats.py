"""How sure a table cell is: a two-level bootstrap over training seeds and prompts.

A row trained with S seeds (replicas, `<row>@s<k>`) and evaluated on the same P held-out prompts gives,
per metric, a matrix of units X[s, p]: the metric of seed s's videos of prompt p (the mean over that
prompt's samples). Total, Quality and Semantic are affine in the dimension means (raven.evaluation.scores),
so a video's own Total averages to the row's Total and units can be averaged directly.

A cell is the mean of X with a 95% percentile interval from DRAWS bootstrap resamples that draw seeds
and prompts with replacement, independently (the two sources of noise: which weights training reached,
and which prompts were asked). A comparison a − b draws the prompts once for both rows (they answer the
same prompts, so the prompt noise they share cancels) and each row's seeds on their own, or both rows' seeds
together when seed k of one continues seed k of the other (or both continue one row's seed k). Resamples
come from a fixed generator: the same units give the same intervals on any machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raven.evaluation.scores import VBENCH_BOUNDS, vbench_scores

METRICS = ("total", "quality", "semantic", "dyn_deg")
DRAWS = 2000
LEVEL = 0.95
BOOTSTRAP_SEED = 20_251_201


@dataclass(frozen=True)
class Units:
    """Per-(seed, prompt) values of each metric: `values[metric]` is [seeds, prompts]."""

    prompts: tuple[str, ...]
    values: Mapping[str, np.ndarray]

    @property
    def seeds(self) -> int:
        return next(iter(self.values.values())).shape[0]

    def to_json(self) -> dict:
        return {"prompts": list(self.prompts),
                "values": {k: np.round(v, 6).tolist() for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, data: Mapping) -> "Units":
        return cls(tuple(data["prompts"]), {k: np.asarray(v, dtype=float) for k, v in data["values"].items()})


def video_metrics(record: Mapping[str, float], bounds: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Total / Quality / Semantic of one video's dimension scores, and its dyn_deg when it has one."""
    scores = vbench_scores(record, bounds)
    if record.get("dyn_deg") is not None:
        scores["dyn_deg"] = float(record["dyn_deg"])
    return scores


def mean_units(per_video_by_seed: Sequence[Sequence[Mapping[str, Any]]]) -> Units:
    """Units from each seed's per-video values ({prompt, <metric>: value, ...}): a unit is the mean of one
    prompt's videos, prompts in the order seed 0 first shows them. Every seed must have been evaluated on
    the same prompts (a row's replicas sample the same prompt file)."""
    if not per_video_by_seed or not all(per_video_by_seed):
        raise ValueError("units need at least one seed with at least one evaluated video")
    prompts: tuple[str, ...] | None = None
    rows: dict[str, list[list[float]]] = {}
    for seed, records in enumerate(per_video_by_seed):
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for record in records:
            grouped.setdefault(str(record["prompt"]), []).append(record)
        order = tuple(grouped)
        if prompts is None:
            prompts = order
        elif set(order) != set(prompts):
            raise ValueError(f"seed {seed} was evaluated on other prompts than seed 0 "
                             f"({len(set(order) ^ set(prompts))} differ); sample every replica on one prompt file")
        for metric in (key for key in grouped[order[0]][0] if key != "prompt"):
            rows.setdefault(metric, []).append([float(np.mean([v[metric] for v in grouped[p]])) for p in prompts])
    return Units(prompts, {metric: np.asarray(value) for metric, value in rows.items()})


def units_of(per_video_by_seed: Sequence[Sequence[Mapping]],
             bounds: Mapping[str, tuple[float, float]] = VBENCH_BOUNDS) -> Units:
    """Units of Total / Quality / Semantic (and dyn_deg) from each seed's per-video records ({prompt,
    <16 dimensions>[, dyn_deg]}), as `mean_units`."""
    return mean_units([[{"prompt": record["prompt"], **video_metrics(record, bounds)} for record in records]
                       for records in per_video_by_seed])


def _draws(count: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """[draws, count] multiplicities of resampling `count` items with replacement."""
    picks = rng.integers(0, count, size=(draws, count))
    return np.stack([np.bincount(row, minlength=count) for row in picks]).astype(float)


def _resampled_means(values: np.ndarray, seed_counts: np.ndarray, prompt_counts: np.ndarray) -> np.ndarray:
    seeds, prompts = values.shape
    return np.einsum("bs,sp,bp->b", seed_counts, values, prompt_counts) / (seeds * prompts)


def _interval(samples: np.ndarray) -> list[float]:
    tail = (1 - LEVEL) / 2 * 100
    return [float(np.percentile(samples, tail)), float(np.percentile(samples, 100 - tail))]


def cell_intervals(units: Units, draws: int = DRAWS) -> dict[str, dict]:
    """{metric: {mean, ci: [lo, hi]}} for every metric of `units`."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    seed_counts, prompt_counts = _draws(units.seeds, draws, rng), _draws(len(units.prompts), draws, rng)
    return {metric: {"mean": float(values.mean()),
                     "ci": _interval(_resampled_means(values, seed_counts, prompt_counts))}
            for metric, values in units.values.items()}


def compare(a: Units, b: Units, metric: str = "total", draws: int = DRAWS, paired_seeds: bool = False) -> dict:
    """a − b in `metric` with its 95% interval and whether the interval excludes 0. Prompts are paired.
    Seeds are resampled independently, or, with `paired_seeds`, together: for rows whose seed k share a
    trained starting point (one continues the other, or both continue one row: raven.config.rows.seed_paired),
    so that the seed noise they share cancels as the prompts' does."""
    if set(a.prompts) != set(b.prompts):
        raise ValueError("rows compared on different prompts: evaluate both on the same held-out prompt file")
    if paired_seeds and a.seeds != b.seeds:
        raise ValueError(f"seed-paired rows need as many seeds each ({a.seeds} against {b.seeds})")
    order = [b.prompts.index(p) for p in a.prompts]
    values_a, values_b = a.values[metric], b.values[metric][:, order]
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    prompt_counts = _draws(len(a.prompts), draws, rng)
    seeds_a = _draws(a.seeds, draws, rng)
    seeds_b = seeds_a if paired_seeds else _draws(b.seeds, draws, rng)
    diff = _resampled_means(values_a, seeds_a, prompt_counts) - _resampled_means(values_b, seeds_b, prompt_counts)
    low, high = _interval(diff)
    return {"metric": metric, "diff": float(values_a.mean() - values_b.mean()), "ci": [low, high],
            "significant": bool(low > 0 or high < 0), "seeds": [a.seeds, b.seeds], "seeds_paired": paired_seeds,
            "prompts": len(a.prompts)}
