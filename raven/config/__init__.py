"""Run specs: pydantic models and YAML loading. Does not import torch."""

from raven.config.load import (
    ConfigError,
    deep_merge,
    load_experiments,
    load_yaml,
    read_spec,
    replica_name,
    replica_names,
    resolve_spec,
    split_replica,
    stage_options,
    validate,
    with_replicas,
    write_spec,
)
from raven.config.spec import RunSpec, Section

__all__ = [
    "ConfigError",
    "RunSpec",
    "Section",
    "deep_merge",
    "load_experiments",
    "load_yaml",
    "read_spec",
    "replica_name",
    "replica_names",
    "resolve_spec",
    "split_replica",
    "stage_options",
    "validate",
    "with_replicas",
    "write_spec",
]
