"""The Snakemake DAG: profiles resolve from the repository root, every row is a target, config is validated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from raven.config import load_experiments

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)


def test_slurm_profile_dry_run_lists_every_row_at_paper_scale_quickly(tmp_path):
    start = time.perf_counter()  # results_dir: an empty folder, so that every job is planned
    result = snakemake("--profile", "slurm", "-n", "--nolock", "--config", f"results_dir={tmp_path}", "--", "all")
    elapsed = time.perf_counter() - start
    assert result.returncode == 0, result.stderr + result.stdout
    assert elapsed < 5, f"dry run took {elapsed:.1f} s"
    output = result.stdout + result.stderr
    planned = set(re.findall(rf"{tmp_path}/paper/specs/([^/\s,]+)\.yaml", output))
    assert planned >= set(load_experiments(REPO / "config"))
    # GPU jobs are submitted by submitit only: the profile must not also use a Snakemake cluster executor.
    import yaml

    assert "executor" not in yaml.safe_load((REPO / "slurm/config.yaml").read_text())


def test_local_profile_at_smoke_scale_plans_the_data_stages(tmp_path):
    result = snakemake("--profile", "local", "--config", "scale=smoke", f"results_dir={tmp_path}", "-n", "--nolock",
                       "--", "all")
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"{tmp_path}/smoke/data/clips/summary.json" in result.stdout + result.stderr


def test_a_misspelt_config_key_is_an_error_naming_it():
    result = snakemake("--profile", "local", "--config", "scael=smoke", "-n", "--nolock", "--", "all")
    assert result.returncode != 0 and "scael" in result.stderr + result.stdout


def test_profiles_are_reachable_from_the_root():
    for name in ("local", "slurm"):
        assert (REPO / name).resolve() == (REPO / "profiles" / name).resolve()
        assert (REPO / name / "config.yaml").is_file()
