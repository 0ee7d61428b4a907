"""Row JSONs `results/<scale>/rows/<row>.json`: what `raven tables` prints and MLflow logs per row.

A row holds `total`, `quality`, `semantic` (fractions), `dyn_deg` (1–4), `dimensions` (the 16 raw
scores), `kind` (`toy-world` or `vbench`: toy-world scores are never VBench scores), `recipe`
(from config/experiments.yaml), the metrics files it was built from, and `training`: the iteration
count of every training stage its models come from, with `stopped_by_budget` set when a stage's time
guard stopped it short (`on_budget: keep`): such a row is not a complete result, and tables say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raven.config import ConfigError, load_experiments, load_yaml
from raven.io import atomic_write_json

ROW_KEYS = ("total", "quality", "semantic", "dyn_deg")
# What a row records of each training summary: what defines the run, never its timings.
TRAINING_KEYS = ("stage", "iterations", "iterations_target", "stopped_by_budget", "seed")


def row_path(results_dir: str | Path, scale: str, row: str) -> Path:
    return Path(results_dir) / scale / "rows" / f"{row}.json"


def build_row(row: str, scale: str, metrics: Mapping[str, Any], recipe: str, sources: Mapping[str, str],
              dyn_deg: float | None = None) -> dict[str, Any]:
    """A row from a benchmark's metrics ({total, quality, semantic, dimensions, kind[, dyn_deg, by_objects]});
    `dyn_deg` (e.g. UnifiedReward's) replaces the benchmark's own when given."""
    missing = [key for key in ("total", "quality", "semantic", "dimensions", "kind") if key not in metrics]
    if missing:
        raise ValueError(f"metrics of row {row!r} lack {missing}; pass the JSON written by `raven eval toy|vbench`")
    value = dyn_deg if dyn_deg is not None else metrics.get("dyn_deg")
    return {"row": row, "scale": scale, "kind": metrics["kind"], "recipe": recipe,
            **{key: float(metrics[key]) for key in ("total", "quality", "semantic")},
            "dyn_deg": None if value is None else float(value),
            "dimensions": {k: float(v) for k, v in metrics["dimensions"].items()}, "sources": dict(sources),
            **({"by_objects": metrics["by_objects"]} if "by_objects" in metrics else {})}


def training_record(summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`training` (per training summary, by its path: TRAINING_KEYS) and `stopped_by_budget` (whether any
    stage stopped short of its iteration count) of a row whose models those stages trained."""
    training = {str(path): {key: summary.get(key) for key in TRAINING_KEYS} for path, summary in sorted(summaries.items())}
    short = any(bool(entry["stopped_by_budget"]) for entry in training.values())
    return {"training": training, "stopped_by_budget": short}


def pool_replicas(metrics: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One row from its seed replicas' metrics: (pooled metrics, spread). Pooled values are the means over
    replicas (each evaluated on the same prompts). The spread, when the metrics carry per-video scores,
    holds `ci` (95%, bootstrap over seeds and prompts: raven.evaluation.stats), `seeds`, `prompts` and
    the `units` that comparisons between rows resample."""
    from raven.evaluation.scores import UNIT_BOUNDS, VBENCH_BOUNDS
    from raven.evaluation.stats import cell_intervals, units_of

    if not metrics:
        raise ValueError("a row needs the metrics of at least one replica")
    pooled = dict(metrics[0])
    for key in ("total", "quality", "semantic", "dyn_deg"):
        values = [m.get(key) for m in metrics]
        pooled[key] = None if any(v is None for v in values) else float(sum(values) / len(values))
    pooled["dimensions"] = {name: float(sum(m["dimensions"][name] for m in metrics) / len(metrics))
                            for name in metrics[0]["dimensions"]}
    pooled.pop("by_objects", None)
    if all("by_objects" in m for m in metrics):  # the toy benchmark's split per object: replicas share prompts
        pooled["by_objects"] = {}
        for group, split in metrics[0]["by_objects"].items():  # objects add up over replicas, rates average
            values = {key: [m["by_objects"][group][key] for m in metrics] for key in split}
            pooled["by_objects"][group] = {key: sum(v) if key == "objects" else sum(v) / len(v)
                                           for key, v in values.items()}
    spread: dict[str, Any] = {"seeds": len(metrics)}
    if all(m.get("per_video") for m in metrics):
        bounds = UNIT_BOUNDS if metrics[0].get("kind") == "toy-world" else VBENCH_BOUNDS
        units = units_of([m["per_video"] for m in metrics], bounds)
        spread.update(prompts=len(units.prompts), videos=sum(len(m["per_video"]) for m in metrics),
                      ci={k: v["ci"] for k, v in cell_intervals(units).items()}, units=units.to_json())
    return pooled, spread


def row_recipe(config_dir: str | Path, row: str, baselines: Mapping[str, Any] | None = None) -> str:
    """The recipe line printed beside a row: its `released` line where the scale gives its checkpoint
    (`baselines`, the spec's weights.baselines), else its `recipe`."""
    from raven.config.rows import rows_at_scale

    rows = rows_at_scale(load_experiments(config_dir), baselines or {})
    if row not in rows:
        raise ConfigError(f"row {row!r} is not in {Path(config_dir) / 'experiments.yaml'}; known rows: {sorted(rows)}")
    return str(rows[row].get("recipe", ""))


def row_labels(config_dir: str | Path, row: str) -> list[tuple[str, str]]:
    """(table, label) pairs under which config/experiments.yaml prints `row`."""
    tables = load_yaml(Path(config_dir) / "experiments.yaml").get("tables") or {}
    return [(table, str(label)) for table, labels in tables.items() for label, target in (labels or {}).items()
            if target == row]


def write_and_log_row(spec: Any, row: dict[str, Any], config_dir: str | Path,
                      artifacts: Sequence[str | Path] = ()) -> Path:
    """Write the row JSON atomically, then log it to MLflow once per table that prints it, with `artifacts`
    (the row's sample grid) beside the JSON."""
    from raven.tracking import log_row, row_metrics

    path = row_path(spec.results_dir, spec.scale, row["row"])
    atomic_write_json(path, row)
    tags = {"row_kind": row["kind"], "stopped_by_budget": str(bool(row.get("stopped_by_budget"))).lower()}
    for table, label in row_labels(config_dir, row["row"]):
        log_row(spec, table, label, row_metrics(row), [path, *artifacts], tags)
    return path
