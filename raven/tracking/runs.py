"""MLflow runs of the pipeline: one per training job, one per table row.

Runs are found again by their tags, so a resumed training job continues its run and a re-evaluated
row updates its run instead of adding a duplicate. All writes go through `locked_call`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raven.tracking.store import config_hash, experiment_id, find_run, flatten, git_commit, locked_call

MAX_BATCH = 900  # MLflow accepts at most 1000 metrics/params per log_batch call
ROW_METRIC_NAMES = {"total": "Total", "quality": "Quality", "semantic": "Semantic", "dyn_deg": "Dyn.Deg"}


def experiment_name(scale: str) -> str:
    return f"raven-{scale}"


def spec_data(spec: Any) -> dict[str, Any]:
    """A RunSpec (or an already-dumped mapping) as plain JSON data."""
    return spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)


def base_tags(data: Mapping[str, Any]) -> dict[str, str]:
    return {"scale": str(data["scale"]), "git_commit": git_commit(), "config_hash": config_hash(data)}


def log_batch(client: Any, run_id: str, *, metrics=(), params=(), tags=()) -> None:
    metrics, params, tags = list(metrics), list(params), list(tags)
    for start in range(0, max(len(metrics), len(params), len(tags), 1), MAX_BATCH):
        end = start + MAX_BATCH
        client.log_batch(run_id, metrics=metrics[start:end], params=params[start:end], tags=tags[start:end])


def metric_entities(values: Mapping[str, float], step: int) -> list[Any]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, float(value), now, step) for key, value in values.items()]


def param_entities(values: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import Param

    return [Param(key, value) for key, value in values.items()]


def tag_entities(values: Mapping[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, value) for key, value in values.items()]


def open_run(tracking_uri: str, scale: str, identity: Mapping[str, str], params: Mapping[str, str],
             tags: Mapping[str, str], run_name: str) -> str:
    """Return the id of the active run with tags `identity`, creating it if missing.

    MLflow params are immutable; when the config hash changed, the stale run is deleted and a new
    one made, so there is still one active run per identity.
    """

    def action(client: Any) -> str:
        experiment = experiment_id(client, tracking_uri, experiment_name(scale))
        run = find_run(client, experiment, identity)
        if run is not None and run.data.tags.get("config_hash") != tags["config_hash"]:
            client.delete_run(run.info.run_id)
            run = None
        if run is None:
            run = client.create_run(experiment, tags={**identity, **tags}, run_name=run_name)
            log_batch(client, run.info.run_id, params=param_entities(params))
        else:
            client.update_run(run.info.run_id, status="RUNNING")
            log_batch(client, run.info.run_id, tags=tag_entities(tags))
        return run.info.run_id

    return locked_call(tracking_uri, action)


@dataclass
class TrainingRun:
    """Handle of an open training run: log per-step metrics and extra params/tags."""

    tracking_uri: str
    run_id: str

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        locked_call(self.tracking_uri, lambda client: log_batch(client, self.run_id, metrics=metric_entities(values, step)))

    def set_tags(self, values: Mapping[str, str]) -> None:
        locked_call(self.tracking_uri, lambda client: log_batch(client, self.run_id, tags=tag_entities(values)))


def run_label(data: Mapping[str, Any], out_dir: str | Path) -> str:
    """`out_dir` below the scale's results folder (`init/ode_causal/student`, `train/raven`): unique per
    training job, where the folder name alone (`student`) is shared by both ODE inits."""
    out = Path(out_dir).resolve()
    root = (Path(data["results_dir"]) / str(data["scale"])).resolve()
    return str(out.relative_to(root)) if out.is_relative_to(root) else "/".join(out.parts[-2:])


@contextmanager
def training_run(spec: Any, stage: str, out_dir: str | Path) -> Iterator[TrainingRun]:
    """Open (or resume) the MLflow run of training stage `stage` writing to `out_dir`.

    Params are the resolved spec; tags: kind=training, stage, out, row, scale, git commit, config
    hash. The run ends FINISHED, FAILED on an exception, KILLED on interruption. Only rank 0 of a
    distributed job should open it.
    """
    data = spec_data(spec)
    identity = {"kind": "training", "stage": stage, "out": str(Path(out_dir).resolve())}
    tags = {**base_tags(data), "row": str(data.get("row") or "")}
    uri = data["tracking_uri"]
    run = TrainingRun(uri, open_run(uri, data["scale"], identity, flatten(data), tags, f"{stage}:{run_label(data, out_dir)}"))
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except (KeyboardInterrupt, SystemExit):
        status = "KILLED"
        raise
    finally:
        locked_call(uri, lambda client: client.set_terminated(run.run_id, status=status))


def row_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """Metrics of a row JSON: Total/Quality/Semantic/Dyn.Deg plus `dimension/<name>` per dimension, their
    intervals, and `objects/<group>/<key>` where the toy benchmark split the row per object."""
    metrics = {name: float(row[key]) for key, name in ROW_METRIC_NAMES.items() if row.get(key) is not None}
    metrics.update({f"dimension/{name}": float(value) for name, value in (row.get("dimensions") or {}).items()})
    for key, name in ROW_METRIC_NAMES.items():  # the 95% interval over seeds and prompts, when the row has one
        if (row.get("ci") or {}).get(key) is not None:
            metrics[f"{name}/ci_low"], metrics[f"{name}/ci_high"] = (float(b) for b in row["ci"][key])
    for group, split in (row.get("by_objects") or {}).items():  # the toy benchmark's split per object
        metrics.update({f"objects/{group}/{key}": float(value) for key, value in split.items()})
    return metrics


def log_row(spec: Any, table: str, row: str, metrics: Mapping[str, float],
            artifacts: Sequence[str | Path] = (), extra_tags: Mapping[str, str] | None = None) -> str:
    """Create or update the one MLflow run of (`table`, `row`) at the spec's scale; returns its run id.

    Tags: kind=row, table, row, scale, git commit, config hash, and `training_runs` (ids of the
    training runs of the same row). Params: the resolved spec. Artifacts (a sample grid, the row
    JSON) replace the previous ones of the same name.
    """
    data = spec_data(spec)
    uri = data["tracking_uri"]
    identity = {"kind": "row", "table": table, "row": row, "scale": str(data["scale"])}
    tags = {**base_tags(data), **(extra_tags or {})}
    run_id = open_run(uri, data["scale"], identity, flatten(data), tags, f"{table}/{row}")

    def finish(client: Any) -> None:
        experiment = experiment_id(client, uri, experiment_name(data["scale"]))
        linked = client.search_runs([experiment], f"tags.kind = 'training' and tags.row = '{data.get('row') or row}'")
        log_batch(client, run_id, metrics=metric_entities(metrics, 0),
                  tags=tag_entities({"training_runs": ",".join(sorted(r.info.run_id for r in linked))}))
        for path in artifacts:
            client.log_artifact(run_id, str(path))
        client.set_terminated(run_id, status="FINISHED")

    locked_call(uri, finish)
    return run_id


def find_row_runs(tracking_uri: str, scale: str, table: str | None = None) -> list[Any]:
    """The active row runs at `scale` (of one table if given), for tables and tests."""

    def action(client: Any) -> list[Any]:
        experiment = client.get_experiment_by_name(experiment_name(scale))
        if experiment is None:
            return []
        query = "tags.kind = 'row'" + (f" and tags.table = '{table}'" if table else "")
        return client.search_runs([experiment.experiment_id], query, max_results=10000)

    return locked_call(tracking_uri, action)
