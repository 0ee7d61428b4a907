"""MLflow tracking on the SQLite store: a run per training job, a run per table row, safe under concurrency."""

from raven.tracking.runs import (
    TrainingRun,
    experiment_name,
    find_row_runs,
    log_row,
    row_metrics,
    training_run,
)
from raven.tracking.store import config_hash, git_commit, store_lock

__all__ = [
    "TrainingRun",
    "config_hash",
    "experiment_name",
    "find_row_runs",
    "git_commit",
    "log_row",
    "row_metrics",
    "store_lock",
    "training_run",
]
