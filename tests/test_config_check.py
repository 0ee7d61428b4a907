"""Start-up check of every config file: unknown keys and values name the file, the row, the key path and
the nearest valid key, before any job runs; the stage schema is the stage options models' own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raven.config import ConfigError, load_yaml
from raven.config.check import check_config_files

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_yaml(REPO / "config/config.yaml")


def copied_config(tmp_path: Path, edit_row=None, edit_scale=None) -> Path:
    shutil.copytree(REPO / "config", tmp_path / "config")
    if edit_row:
        path = tmp_path / "config/experiments.yaml"
        data = yaml.safe_load(path.read_text())
        edit_row(data["rows"]["raven"])
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    if edit_scale:
        path = tmp_path / "config/scales/tiny.yaml"
        data = yaml.safe_load(path.read_text())
        edit_scale(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "config"


def check(config_dir: Path, **config) -> str:
    with pytest.raises(ConfigError) as error:
        check_config_files({**CONFIG, **config}, config_dir, REPO / "workflow/schemas")
    return str(error.value)


@pytest.mark.parametrize("scale", ["smoke", "tiny", "paper"])
def test_the_repositorys_config_files_pass(scale):
    check_config_files({**CONFIG, "scale": scale}, REPO / "config", REPO / "workflow/schemas")


def test_a_misspelt_row_key_names_the_file_row_and_nearest_key(tmp_path):
    config = copied_config(tmp_path, edit_row=lambda row: row.update(overides=row.pop("overrides")))
    assert f"{config}/experiments.yaml: rows.raven.overides: unknown key; did you mean 'overrides'?" in check(config)


def test_a_misspelt_stage_option_in_a_row_names_the_row_and_stage_option(tmp_path):
    config = copied_config(tmp_path, edit_row=lambda row: row["overrides"]["stages"]["dmd"].update(
        weigthing=row["overrides"]["stages"]["dmd"].pop("weighting")))
    assert (f"{config}/experiments.yaml, row 'raven': rows.raven.overrides.stages.dmd.weigthing: unknown key; "
            "did you mean 'weighting'?") in check(config)


def test_an_unknown_history_mode_and_stage_are_named(tmp_path):
    def edit(row):
        row["overrides"]["stages"]["dmd"]["history_mode"] = "ravn"
        row["overrides"]["stages"]["cmgpro"] = {"iterations": 3}

    message = check(copied_config(tmp_path, edit_row=edit))
    assert "rows.raven.overrides.stages.dmd.history_mode: 'ravn' is not allowed; did you mean 'raven'?" in message
    assert "rows.raven.overrides.stages.cmgpro: unknown key; did you mean 'cmgrpo'?" in message


def test_scale_file_and_config_keys_are_checked(tmp_path):
    def edit(scale):
        scale["stages"]["base"]["itterations"] = 10
        scale["chunks"]["windw"] = 2
        scale["launchers"] = {"dmd": {"gpus_per_nod": 8}}

    config = copied_config(tmp_path, edit_scale=edit)
    message = check(config, scael="smoke")
    tiny = f"{config}/scales/tiny.yaml"
    assert f"{tiny}: stages.base.itterations: unknown key; did you mean 'iterations'?" in message
    assert f"{tiny}: chunks.windw: unknown key; did you mean 'window'?" in message
    assert f"{tiny}: launchers.dmd.gpus_per_nod: unknown key; did you mean 'gpus_per_node'?" in message
    assert f"{config}/config.yaml (or --config): scael: unknown key; did you mean 'scale'?" in message


def test_the_stage_schema_is_generated_from_the_stage_options_models():
    from raven.stages import SCHEMA_FILE, schema_text

    assert SCHEMA_FILE.read_text() == schema_text(), "stale: run `python -m raven.stages` and commit the schema"


def test_the_stage_options_models_load_without_the_model_stack():
    """`raven eval row` (one light job per table row) reads every stage's options with their defaults: importing
    them must not load diffusers, peft or transformers (about 4 s of CPU per job, 8 s on a busy machine)."""
    code = ("import sys; from raven.stages import stage_models; stage_models(); "
            "print(sorted(m for m in ('diffusers', 'peft', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_snakemake_stops_at_start_up_on_a_misspelt_row_key(tmp_path):
    for name in ("Snakefile",):
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("workflow", "profiles"):
        shutil.copytree(REPO / name, tmp_path / name)
    (tmp_path / "local").symlink_to("profiles/local")
    copied_config(tmp_path, edit_row=lambda row: row.update(overides=row.pop("overrides")))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["snakemake", "--profile", "local", "-n", "--config", f"results_dir={tmp_path}/results",
                             "--", "all"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "rows.raven.overides: unknown key; did you mean 'overrides'?" in result.stdout + result.stderr


def test_a_resolved_spec_and_stage_options_name_the_nearest_key():
    from raven.config import resolve_spec, stage_options
    from raven.data.options import DataOptions

    with pytest.raises(ConfigError, match=r"weights\.baselines\.causvid\.kye: Extra inputs .*did you mean 'key'\?"):
        resolve_spec(REPO / "config", "tiny", overrides={"weights": {"baselines": {"causvid": {"path": "x", "kye": "g"}}}})
    spec = resolve_spec(REPO / "config", "tiny", overrides={"stages": {"data": {"train_promts": 3}}})
    with pytest.raises(ConfigError, match=r"train_promts: Extra inputs .*did you mean 'train_prompts'\?"):
        stage_options(spec, "data", DataOptions)
