"""Process-safe access to the MLflow SQLite store.

SQLite allows one writer at a time, and MLflow's first connection creates the schema with alembic
migrations that fail when two processes run them at once. Every write therefore goes through an
exclusive `flock` on `<db>.lock` (one writer across all local processes), and an "database is
locked" error caused by an outside reader (the MLflow UI) is retried with exponential backoff.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

Result = TypeVar("Result")

SQLITE_PREFIX = "sqlite:///"
RETRIES = 8
FIRST_BACKOFF_S = 0.05


def sqlite_path(tracking_uri: str) -> Path:
    """The database file of `sqlite:///<path>`; any other store is refused (MLflow 3 drops file stores)."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        raise ValueError(
            f"tracking_uri {tracking_uri!r}: only SQLite stores are supported, e.g. sqlite:///results/mlflow.db "
            "(set 'tracking_uri' in config/config.yaml)"
        )
    return Path(tracking_uri[len(SQLITE_PREFIX):])


def absolute_uri(tracking_uri: str) -> str:
    """The same store with an absolute path, so that a job started in another directory finds it."""
    return SQLITE_PREFIX + str(sqlite_path(tracking_uri).resolve())


@contextmanager
def store_lock(tracking_uri: str) -> Iterator[None]:
    """Hold the exclusive write lock of the store (blocks until it is free)."""
    path = sqlite_path(tracking_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked_error(error: Exception) -> bool:
    return "database is locked" in str(error) or "database table is locked" in str(error)


def with_retries(action: Callable[[], Result]) -> Result:
    """Run `action`, retrying on SQLite lock errors with exponential backoff."""
    for attempt in range(RETRIES):
        try:
            return action()
        except Exception as error:  # sqlalchemy and mlflow wrap the sqlite3 error in their own types
            if not is_locked_error(error) or attempt == RETRIES - 1:
                raise
            time.sleep(FIRST_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


@lru_cache(maxsize=None)
def _client(tracking_uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.search_experiments(max_results=1)  # creates/migrates the schema now, while the caller holds the lock
    return client


def locked_call(tracking_uri: str, action: Callable[[Any], Result]) -> Result:
    """Run `action(client)` under the store lock, with retries; the client is created once per process."""
    uri = absolute_uri(tracking_uri)
    with store_lock(uri):
        return with_retries(lambda: action(_client(uri)))


def experiment_id(client: Any, tracking_uri: str, name: str) -> str:
    """Id of experiment `name`, created with its artifacts beside the database if missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = sqlite_path(tracking_uri).resolve().parent / "mlartifacts" / name
    return client.create_experiment(name, artifact_location=artifacts.as_uri())


def find_run(client: Any, experiment: str, tags: Mapping[str, str]) -> Any | None:
    """The active run whose tags equal `tags`, or None."""
    query = " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items())
    runs = client.search_runs([experiment], filter_string=query, max_results=2)
    return runs[0] if runs else None


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> {"a.b.c": "value"} for MLflow params (values as JSON scalars, lists as JSON)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value)
    return flat


def config_hash(spec_data: Mapping[str, Any]) -> str:
    """Hash of what determines a result: the resolved spec without where/how it runs."""
    relevant = {k: v for k, v in spec_data.items() if k not in {"launcher", "results_dir", "tracking_uri"}}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def git_commit() -> str:
    """The repository's HEAD commit (with `-dirty` for local changes), or `unknown` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")
