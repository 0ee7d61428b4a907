"""YAML loading, merging and validation of run specs, with errors that name the file and key path."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from raven.config.spec import RunSpec

Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or value is wrong; the message names the file, the key path and the fix."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice in one mapping; keep one", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (expected a YAML mapping there)")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` updated by `override`; nested mappings merge, everything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nearest(word: Any, choices: Iterable[Any]) -> str:
    """'; did you mean X?' for the closest of `choices`, else the valid choices."""
    names = sorted(str(choice) for choice in choices)
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(names)}"


def model_at(model: Any, path: Iterable[Any]) -> type[BaseModel] | None:
    """The pydantic model of the section at key `path` of `model` (through optional sections and dicts of
    sections), or None."""
    parts = list(path)
    while parts:
        part = str(parts.pop(0))
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        if get_origin(annotation) is dict and parts:
            parts.pop(0)
            annotation = get_args(annotation)[1]
        model = next((a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, BaseModel)),
                     None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    lines = [f"{source}: invalid config"]
    for item in error.errors():
        key_path = ".".join(str(part) for part in item["loc"]) or "<root>"
        value = item.get("input")
        shown = f" (got {value!r})" if not isinstance(value, (dict, list)) else ""
        section = model_at(model, item["loc"][:-1]) if item["type"] == "extra_forbidden" and item["loc"] else None
        hint = nearest(item["loc"][-1], section.model_fields) if section is not None else ""
        lines.append(f"  {key_path}: {item['msg']}{shown}{hint}")
    return "\n".join(lines)


def validate(model: type[Model], data: Mapping[str, Any], source: str) -> Model:
    """Validate `data` against `model`, raising ConfigError with every bad key path."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, source, model)) from None


def stage_options(spec: RunSpec, stage: str, model: type[Model]) -> Model:
    """The validated options of one stage, from `spec.stages[stage]`."""
    return validate(model, spec.stages.get(stage, {}), f"run spec key 'stages.{stage}'")


def resolve_spec(
    config_dir: str | Path = "config",
    scale: str | None = None,
    row: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> RunSpec:
    """Merge config.yaml, scales/<scale>.yaml and a row of experiments.yaml into a RunSpec."""
    config_dir = Path(config_dir)
    base = load_yaml(config_dir / "config.yaml")
    scale = scale or base.get("scale")
    if not scale:
        raise ConfigError(f"{config_dir / 'config.yaml'}: key 'scale' is missing (one of config/scales/*.yaml)")
    scale_file = config_dir / "scales" / f"{scale}.yaml"
    if not scale_file.is_file():
        known = sorted(p.stem for p in (config_dir / "scales").glob("*.yaml"))
        raise ConfigError(f"scale {scale!r}: no file {scale_file}; known scales: {known}")
    merged = deep_merge({k: v for k, v in base.items() if k in RunSpec.model_fields}, load_yaml(scale_file))
    merged["scale"] = scale
    if row is not None:
        merged = deep_merge(merged, row_overrides(config_dir, row, scale))
        merged["row"] = row
    if overrides:
        merged = deep_merge(merged, overrides)
    if row is not None:
        merged["seed"] = int(merged.get("seed", 0)) + split_replica(row)[1] * REPLICA_SEED_STRIDE
    return validate(RunSpec, merged, f"run spec (scale {scale!r}, row {row!r})")


REPLICA_MARK = "@s"
REPLICA_SEED_STRIDE = 100_003  # replica k trains and samples with seed + k * stride: no sample seed is shared


def split_replica(row: str) -> tuple[str, int]:
    """'raven@s2' -> ('raven', 2); a plain row is replica 0 of itself."""
    base, mark, index = row.partition(REPLICA_MARK)
    if not mark:
        return row, 0
    if not index.isdigit() or int(index) < 1:
        raise ConfigError(f"row {row!r}: a replica is named <row>{REPLICA_MARK}<k> with k >= 1")
    return base, int(index)


def replica_name(row: str, index: int) -> str:
    return row if index == 0 else f"{row}{REPLICA_MARK}{index}"


def replica_names(row: str, seeds: int) -> list[str]:
    """The row's `seeds` replicas: the row itself, then <row>@s1 .. @s<seeds-1>."""
    return [replica_name(row, index) for index in range(seeds)]


def with_replicas(rows: Mapping[str, Mapping[str, Any]], seeds: int) -> dict[str, dict[str, Any]]:
    """Every row plus replicas <row>@s1..@s<seeds-1>: the same settings, trained with other seeds; a replica's
    `from` is the replica of the same index of the row it continues or re-samples. `replica_of` names the
    row a replica belongs to."""
    expanded: dict[str, dict[str, Any]] = {}
    for row, settings in rows.items():
        for index in range(seeds):
            entry = dict(settings)
            if index and entry.get("from") is not None:
                entry["from"] = replica_name(str(entry["from"]), index)
            expanded[replica_name(row, index)] = {**entry, "replica_of": row}
    return expanded


def load_experiments(config_dir: str | Path = "config") -> dict[str, dict[str, Any]]:
    """The rows of config/experiments.yaml, keyed by row name."""
    path = Path(config_dir) / "experiments.yaml"
    rows = load_yaml(path).get("rows")
    if not isinstance(rows, dict) or not rows:
        raise ConfigError(f"{path}: key 'rows' must map row names to their settings")
    return rows


def row_overrides(config_dir: str | Path, row: str, scale: str | None = None) -> dict[str, Any]:
    """A row's `overrides` (a replica's are its row's), with its `scale_overrides.<scale>` merged on top."""
    row = split_replica(row)[0]
    rows = load_experiments(config_dir)
    if row not in rows:
        raise ConfigError(f"row {row!r} is not in {Path(config_dir) / 'experiments.yaml'}; known rows: {sorted(rows)}")
    at_scale = (rows[row].get("scale_overrides") or {}).get(scale) or {}
    return deep_merge(rows[row].get("overrides") or {}, at_scale)


def write_spec(spec: RunSpec, path: str | Path) -> None:
    from raven.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))


def read_spec(path: str | Path) -> RunSpec:
    return validate(RunSpec, load_yaml(path), str(path))
