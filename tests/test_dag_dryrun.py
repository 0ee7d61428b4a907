"""The Snakemake DAG: profiles resolve from the repository root, every row of config/experiments.yaml
becomes its chain of jobs, heavy jobs go through `raven launch`, one row reruns alone, config is validated."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from raven.config import load_experiments, load_yaml, resolve_spec
from raven.config.rows import rows_at_scale

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
ROWS = load_experiments(REPO / "config")
TABLES = load_yaml(REPO / "config/experiments.yaml")["tables"]


def snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["snakemake", *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)


def dry_run(profile: str, results: Path, *targets: str, scale: str | None = None) -> str:
    config = [f"results_dir={results}", *([f"scale={scale}"] if scale else [])]
    result = snakemake("--profile", profile, "-n", "--nolock", "--config", *config, "--", *targets)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout + result.stderr


def shell_commands(output: str) -> list[str]:
    return re.findall(r"^Shell command: (.*)$", output, flags=re.MULTILINE)


def test_slurm_profile_dry_run_lists_every_row_at_paper_scale(tmp_path):
    # Its speed is benchmarks/dryrun.py's (benchmarks/reports/dryrun.json), not a timed test.
    from test_dag_commands import assert_every_raven_command_parses

    output = dry_run("slurm", tmp_path, "all")  # results_dir: an empty folder, so that every job is planned
    paper = f"{tmp_path}/paper"
    paper_rows = rows_at_scale(ROWS, resolve_spec(REPO / "config", "paper").weights.baselines)
    for row, settings in paper_rows.items():
        for target in (f"specs/{row}.yaml", f"samples/{row}/summary.json", f"rows/{row}.json"):
            assert f"{paper}/{target}" in output, (row, target)
        trains = settings["method"] not in ("inference", "released")
        assert (f"{paper}/train/{row}/summary.json" in output) == trains, row
    # The main table's baselines are their released checkpoints, each sampled with its own settings (docs/method.md §9).
    assert {row for row, s in paper_rows.items() if s["method"] == "released"} == {
        "causvid", "self_forcing", "causal_forcing", "rolling_forcing", "reward_forcing", "longlive"}
    longlive = next(c for c in shell_commands(output) if " -- sample " in c and "/specs/longlive.yaml" in c)
    assert "--model-key generator --lora data/weights/longlive/models/lora.pt" in longlive
    assert "/init/ode_bidirectional/" not in output  # the baselines that would start from it are released
    # VBench in the DAG: one protocol, every row samples its prompt file and gets one VBench job.
    assert sum(" eval vbench-protocol " in c for c in shell_commands(output)) == 1
    for row in paper_rows:
        assert f"--prompts {paper}/data/prompts/protocol.txt --mode" in next(
            c for c in shell_commands(output) if " -- sample " in c and f"--out {paper}/samples/{row} " in c)
        assert f"--out {paper}/eval/{row}/vbench.json" in output
    for table in TABLES:
        assert f"{paper}/tables/{table}.md" in output
    # Paper scale starts from released weights: Wan2.1-T2V-1.3B as the base, Causal Forcing's ODE init.
    assert f"{paper}/init/base/summary.json" not in output and "/pairs/summary.json" not in output
    assert "--init data/weights/Wan2.1-T2V-1.3B/transformer" in output
    assert_every_raven_command_parses(output, "paper")
    # GPU jobs are submitted by submitit only: the profile must not also use a Snakemake cluster executor.
    assert "executor" not in yaml.safe_load((REPO / "slurm/config.yaml").read_text())
    for command in shell_commands(output):
        if re.search(r" -- (train|sample|eval|ode) ", command):
            assert command.startswith("raven launch ") and '"name": "slurm"' in command, command


def test_local_profile_at_smoke_scale_plans_every_stage_once(tmp_path):
    from test_dag_commands import assert_every_raven_command_parses

    output = dry_run("local", tmp_path, "all", scale="smoke")
    assert_every_raven_command_parses(output, "smoke")
    smoke = f"{tmp_path}/smoke"
    commands = shell_commands(output)
    for stage in ("train base", "train causal-teacher"):
        assert sum(f" -- {stage} " in c for c in commands) == 1, stage  # shared stages are built once
    for init in ("ode_causal", "ode_bidirectional"):
        assert sum(f"--out {smoke}/init/{init}/pairs " in c for c in commands) == 1
        assert sum(f"--out {smoke}/init/{init}/student " in c for c in commands) == 1
    dmd = [c for c in commands if " -- train dmd " in c]
    assert len(dmd) == sum(s["method"] == "dmd" for s in ROWS.values())
    assert f"--init {smoke}/init/ode_bidirectional/student/model_ema" in next(c for c in dmd if "/causvid.yaml" in c)
    rolling = next(c for c in commands if " -- sample " in c and "/rolling_forcing.yaml" in c)
    assert f"--model {smoke}/train/self_forcing/model_ema" in rolling and "--mode rolling" in rolling
    assert f"{smoke}/plots/loss_curves" in output and f"{smoke}/plots/chunk_weights.png" in output


def test_one_row_target_plans_only_what_that_row_depends_on(tmp_path):
    output = dry_run("local", tmp_path, f"{tmp_path}/smoke/rows/rw_ta2_dd0.3_ms0.75_aq1_iq1.json", scale="smoke")
    trained = set(re.findall(r"--out \S+/(train|init)/(\S+) ", output))
    assert trained == {("init", "base"), ("init", "causal_teacher"), ("init", "ode_causal/pairs"),
                       ("init", "ode_causal/student"), ("train", "raven"), ("train", "rw_ta2_dd0.3_ms0.75_aq1_iq1")}


def test_a_misspelt_config_key_is_an_error_naming_it():
    result = snakemake("--profile", "local", "--config", "scael=smoke", "-n", "--nolock", "--", "all")
    assert result.returncode != 0 and "scael" in result.stderr + result.stdout


def test_profiles_are_reachable_from_the_root():
    for name in ("local", "slurm"):
        assert (REPO / name).resolve() == (REPO / "profiles" / name).resolve()
        assert (REPO / name / "config.yaml").is_file()
