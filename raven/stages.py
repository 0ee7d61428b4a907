"""Every stage's options model (`stages.<stage>` of a run spec) and the JSON schema made from them.

Snakemake checks each row's stage options at start-up (`raven.config.check`) against
`workflow/schemas/stages.schema.json`, which is generated from these models, because importing the
trainers (torch, diffusers) would cost every Snakemake start seconds of CPU. Regenerate it after changing
an options model: `python -m raven.stages` (a test fails while it is stale).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "stages.schema.json"
# stage -> the options model its `raven` command validates `stages.<stage>` with
STAGE_OPTIONS = {
    "data": "raven.data.options:DataOptions",
    "base": "raven.training.base:BaseOptions",
    "causal_teacher": "raven.training.causal_teacher:CausalTeacherOptions",
    "ode_pairs": "raven.training.ode_init:OdePairsOptions",
    "ode_init": "raven.training.ode_init:OdeInitOptions",
    "dmd": "raven.training.dmd:DMDOptions",
    "cmgrpo": "raven.training.cmgrpo:CMGRPOOptions",
    "vbench": "raven.evaluation.options:VBenchOptions",
    "sample": "raven.evaluation.options:SampleOptions",
    "toy_protocol": "raven.evaluation.options:ToyProtocolOptions",
    "unified_reward": "raven.evaluation.options:UnifiedRewardOptions",
    "userstudy": "raven.evaluation.options:UserStudyOptions",
}
# Keys of a generated schema that say nothing about validity: defaults (some hold absolute paths, which
# differ between checkouts), titles and descriptions (prose edits need no new schema).
DROPPED = ("default", "title", "description")


def stage_models() -> dict[str, type[BaseModel]]:
    models = {}
    for stage, target in STAGE_OPTIONS.items():
        module, name = target.split(":")
        models[stage] = getattr(importlib.import_module(module), name)
    return models


def with_stage_defaults(spec: Any) -> Any:
    """`spec` with each known stage's options as its model resolves them, defaults included (for the MLflow
    params of a row: a default never shows as 'unknown' in a comparison)."""
    from raven.config import stage_options

    models = stage_models()
    # warnings=False: a weighting spec given as an int (-1) is valid, but pydantic warns that float | str got an int
    stages = {stage: stage_options(spec, stage, models[stage]).model_dump(mode="json", warnings=False)
              if stage in models else options for stage, options in spec.stages.items()}
    return spec.model_copy(update={"stages": stages})


def without_defaults(schema: Any, field_names: bool = False) -> Any:
    """`schema` without DROPPED keys (except where they name fields, under `properties`)."""
    if isinstance(schema, dict):
        return {key: without_defaults(value, key == "properties" and not field_names)
                for key, value in schema.items() if field_names or key not in DROPPED}
    if isinstance(schema, list):
        return [without_defaults(item) for item in schema]
    return schema


def stage_schema() -> dict[str, Any]:
    """A JSON schema of the `stages` mapping: each known stage validated by its options model's schema."""
    models = stage_models()
    refs, definitions = models_json_schema([(model, "validation") for model in models.values()],
                                           ref_template="#/$defs/{model}")
    properties = {stage: refs[(model, "validation")] for stage, model in models.items()}
    schema = {
        "$comment": "generated from raven.stages.STAGE_OPTIONS by `python -m raven.stages`; do not edit",
        "type": "object", "additionalProperties": False, "properties": properties,
        "$defs": definitions.get("$defs", {}),
    }
    return without_defaults(schema)


def schema_text() -> str:
    return json.dumps(stage_schema(), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    from raven.io import atomic_write_text

    atomic_write_text(SCHEMA_FILE, schema_text())
    print(f"wrote {SCHEMA_FILE}")
