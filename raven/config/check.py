"""Start-up check of every config file, before Snakemake plans a job: `config/config.yaml` with
`--config`, the scale file, `config/experiments.yaml` (top level and row keys) and each row's `overrides`,
stage options included. Each problem names the file, the row, the key path and the nearest valid key.

Schemas: `workflow/schemas/config.schema.yaml` (run-wide settings), `experiments.schema.yaml` (row keys),
the run spec's own pydantic schema (`RunSpec`), with `stages.<stage>` checked by `stages.schema.json`,
generated from each stage's options model (`raven.stages`). Only unknown keys, types and allowed values are
checked here; a stage still validates its options with its model when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from raven.config.load import ConfigError, load_yaml, nearest
from raven.config.spec import LauncherSpec, RunSpec


def leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """The errors that say what is wrong: inside anyOf/oneOf (e.g. an optional section), those of the
    branches that match the value's type."""
    if not error.context:
        yield error
        return
    typed = [e for e in error.context if e.validator != "type" or e.relative_path]
    for inner in typed or error.context:
        yield from leaf_errors(inner)


def describe(error: ValidationError, prefix: str) -> list[str]:
    path = ".".join([prefix, *map(str, error.absolute_path)]).strip(".")
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = error.schema.get("properties", {})
        return [f"{path + '.' if path else ''}{key}: unknown key{nearest(key, allowed)}"
                for key in sorted(set(error.instance) - set(allowed))]
    if error.validator == "enum":
        return [f"{path}: {error.instance!r} is not allowed{nearest(error.instance, error.validator_value)}"]
    return [f"{path}: {error.message}"]


def problems(data: Any, schema: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every problem of `data` under `schema`, as 'key.path: what is wrong; did you mean ...'."""
    found: list[str] = []
    for error in Draft202012Validator(schema).iter_errors(data):
        for leaf in leaf_errors(error):
            found.extend(describe(leaf, prefix))
    return list(dict.fromkeys(found))


def partial(schema: Any) -> Any:
    """`schema` with nothing required: a scale file or a row's overrides give only part of a spec."""
    if isinstance(schema, dict):
        return {key: partial(value) for key, value in schema.items() if key != "required"}
    if isinstance(schema, list):
        return [partial(item) for item in schema]
    return schema


def spec_schema(stages_schema: Mapping[str, Any]) -> dict[str, Any]:
    """RunSpec's schema, its `stages` checked per stage and `launchers.<stage>` as launcher settings."""
    schema = RunSpec.model_json_schema(ref_template="#/$defs/{model}")
    definitions = {**schema.pop("$defs", {}), **stages_schema.get("$defs", {})}
    definitions["LauncherSpec"] = LauncherSpec.model_json_schema(ref_template="#/$defs/{model}")
    stages = {key: value for key, value in stages_schema.items() if key != "$defs"}
    schema["properties"]["stages"] = stages
    schema["properties"]["launchers"] = {"type": "object", "additionalProperties": {"$ref": "#/$defs/LauncherSpec"}}
    return partial({**schema, "$defs": definitions})


def report(where: str, found: list[str]) -> list[str]:
    return [f"{where}: {problem}" for problem in found]


def check_config_files(config: Mapping[str, Any], config_dir: str | Path = "config",
                       schemas: str | Path = "workflow/schemas") -> None:
    """Raise one ConfigError listing every problem of the run's config files (see the module docstring)."""
    config_dir, schemas = Path(config_dir), Path(schemas)
    found = report(f"{config_dir / 'config.yaml'} (or --config)",
                   problems(dict(config), load_yaml(schemas / "config.schema.yaml")))
    spec = spec_schema(json.loads((schemas / "stages.schema.json").read_text()))
    scale_file = config_dir / "scales" / f"{config.get('scale')}.yaml"
    if scale_file.is_file():
        found += report(str(scale_file), problems(load_yaml(scale_file), spec))
    experiments = config_dir / "experiments.yaml"
    data = load_yaml(experiments)
    found += report(str(experiments), problems(data, load_yaml(schemas / "experiments.schema.yaml")))
    scales = {path.stem for path in (config_dir / "scales").glob("*.yaml")}
    for row, settings in (data.get("rows") or {}).items():
        if isinstance(settings, Mapping) and isinstance(settings.get("overrides"), Mapping):
            found += report(f"{experiments}, row {row!r}",
                            problems(settings["overrides"], spec, f"rows.{row}.overrides"))
        at_scales = settings.get("scale_overrides") if isinstance(settings, Mapping) else None
        for scale, overrides in (at_scales or {}).items() if isinstance(at_scales, Mapping) else ():
            where = f"rows.{row}.scale_overrides.{scale}"
            if scale not in scales:
                found.append(f"{experiments}, row {row!r}: {where}: no scale file config/scales/{scale}.yaml"
                             f"{nearest(scale, scales)}")
            elif isinstance(overrides, Mapping):
                found += report(f"{experiments}, row {row!r}", problems(overrides, spec, where))
    if any(".stages." in problem or ": stages." in problem for problem in found):
        found.append("(stage options are checked against workflow/schemas/stages.schema.json, made from each stage's "
                     "options model: after changing one, run `python -m raven.stages`)")
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
