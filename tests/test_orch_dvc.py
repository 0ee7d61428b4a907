"""DVC over the Snakemake DAG: repro runs Snakemake targets, push/pull round-trips through the default
local remote, and restored files do not make Snakemake rerun anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def workspace(tmp_path: Path) -> None:
    """A copy of the repository's DAG and library at smoke scale, as a fresh git clone."""
    for name in ("Snakefile", "dvc.yaml", ".dvcignore", "environment.yml"):  # every rule's conda: names the env
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("config", "workflow", "profiles", ".dvc", "raven"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp", "cache", "__pycache__"))
    for name in ("local", "slurm"):
        (tmp_path / name).symlink_to(f"profiles/{name}")
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("scale: tiny", "scale: smoke"))
    run("git", "init", "-q", cwd=tmp_path)


def test_repro_push_pull_and_no_rerun_after_restore(tmp_path):
    workspace(tmp_path)
    run("dvc", "repro", "data", cwd=tmp_path)
    assert "train" in run("dvc", "metrics", "show", cwd=tmp_path)
    run("dvc", "push", "data", cwd=tmp_path)
    assert any((tmp_path / "results/dvc-remote").rglob("*"))

    train = tmp_path / "results/smoke/data/prompts/train.txt"
    expected = train.read_text()
    # the DVC-tracked outputs go; the metrics file (cache: false) is committed to git and stays
    for path in (train, train.with_name("heldout.txt")):
        path.unlink()
    shutil.rmtree(tmp_path / "results/smoke/data/clips")
    shutil.rmtree(tmp_path / ".snakemake")  # a fresh clone has no Snakemake metadata either
    run("dvc", "pull", "data", cwd=tmp_path)
    assert train.read_text() == expected
    target = ["--", "results/smoke/data/prompts/summary.json", "results/smoke/data/clips/summary.json"]
    run("snakemake", "--profile", "local", "--config", "scale=smoke", "--touch", *target, cwd=tmp_path)
    assert "Nothing to be done" in run("snakemake", "--profile", "local", "--config", "scale=smoke", "-n", *target,
                                       cwd=tmp_path)


def test_every_dvc_output_is_persistent():
    """DVC deletes non-persistent outputs before running a stage: checkpoints and results would go."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    outs = [(name, out) for name, stage in stages.items() for key in ("outs", "metrics") for out in stage.get(key, [])]
    assert {name for name, _ in outs} == {"data", "init", "tables"}
    assert [(name, out) for name, out in outs if not (isinstance(out, dict) and next(iter(out.values()))["persist"])] == []


def test_repro_after_a_code_edit_keeps_the_outputs_and_reruns_nothing(tmp_path):
    workspace(tmp_path)
    run("dvc", "repro", "data", cwd=tmp_path)
    clips = tmp_path / "results/smoke/data/clips"
    kept = clips / "kept-by-a-long-run.txt"  # stands for a checkpoint: a file only the stage's own run could remake
    kept.write_text("irreplaceable\n")
    summary = clips / "summary.json"
    before = summary.stat().st_mtime_ns
    code = tmp_path / "raven/data/__init__.py"
    code.write_text(code.read_text() + "# an edit\n")
    assert "modified" in run("dvc", "status", "data", cwd=tmp_path)

    output = run("dvc", "repro", "data", cwd=tmp_path)
    assert "Nothing to be done" in output  # Snakemake saw the kept outputs and ran no job
    assert kept.read_text() == "irreplaceable\n"
    assert summary.stat().st_mtime_ns == before
    assert "up to date" in run("dvc", "status", "data", cwd=tmp_path)
