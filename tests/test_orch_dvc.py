"""DVC over the Snakemake DAG: repro runs Snakemake targets, push/pull round-trips through the default
local remote, and restored files do not make Snakemake rerun anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def test_repro_push_pull_and_no_rerun_after_restore(tmp_path):
    for name in ("Snakefile", "dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, tmp_path / name)
    for name in ("config", "workflow", "profiles", ".dvc", "raven"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("tmp", "cache", "__pycache__"))
    for name in ("local", "slurm"):
        (tmp_path / name).symlink_to(f"profiles/{name}")
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace("scale: tiny", "scale: smoke"))
    run("git", "init", "-q", cwd=tmp_path)

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
