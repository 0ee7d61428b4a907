"""The smoke DAG end to end through the local profile (CI scale), a rerun that does nothing, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raven.config import load_experiments

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def snakemake(*args: str, results: Path) -> str:
    config = ["--config", "scale=smoke", f"results_dir={results}", f"tracking_uri=sqlite:///{results}/mlflow.db"]
    result = subprocess.run(["snakemake", "--profile", "local", *config, *args], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_smoke_dag_runs_end_to_end_and_a_rerun_does_nothing(tmp_path):
    results = tmp_path / "results"
    snakemake("--", "all", results=results)
    smoke = results / "smoke"
    for row in load_experiments(REPO / "config"):
        assert (smoke / f"specs/{row}.yaml").is_file()
    assert json.loads((smoke / "data/prompts/summary.json").read_text())["train"] == 32
    assert json.loads((smoke / "data/clips/summary.json").read_text())
    assert all((smoke / "benchmarks/data" / f"{rule}.tsv").is_file() for rule in ("prompts", "clips"))
    assert "Nothing to be done" in snakemake("-n", "--", "all", results=results)
    snakemake("--report", str(tmp_path / "report.html"), "--", "all", results=results)
    assert "<html" in (tmp_path / "report.html").read_text()[:2000].lower()
