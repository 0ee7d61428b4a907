"""The smoke DAG end to end through the local profile (CI scale), every stage for real: Snakemake killed
mid-run finishes on restart without redoing done jobs; every table is written, every table row is an
MLflow run, a rerun does nothing, and the report is one HTML file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raven.config import load_experiments, load_yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def command(results: Path, *args: str) -> list[str]:
    config = ["--config", "scale=smoke", f"results_dir={results}", f"tracking_uri=sqlite:///{results}/mlflow.db"]
    return ["snakemake", "--profile", "local", *config, *args]


def snakemake(*args: str, results: Path) -> str:
    result = subprocess.run(command(results, *args), cwd=REPO, env=ENV, capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def start_and_kill_after(results: Path, done: Path, log: Path) -> None:
    """Start `snakemake all`, SIGTERM it once `done` exists (later stages running or not started)."""
    with open(log, "w") as stream:
        first = subprocess.Popen(command(results, "--", "all"), cwd=REPO, env=ENV, stdout=stream, stderr=stream)
        deadline = time.monotonic() + 600
        while not done.is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert done.is_file(), log.read_text()[-3000:]
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)


@pytest.mark.timeout(3600)  # ~180 jobs, ~60 load torch + diffusers: 15 CPU-min; far longer on a busy machine
def test_smoke_dag_survives_a_kill_runs_end_to_end_and_a_rerun_does_nothing(tmp_path):
    results = tmp_path / "results"
    smoke = results / "smoke"
    base = smoke / "init/base/summary.json"
    start_and_kill_after(results, base, tmp_path / "killed.log")
    done = base.stat().st_mtime_ns
    start = time.perf_counter()
    output = snakemake("--", "all", results=results)
    print(f"smoke DAG after the kill: {time.perf_counter() - start:.0f} s")
    assert "rule train_base:" not in output and base.stat().st_mtime_ns == done

    rows = load_experiments(REPO / "config")
    tables = load_yaml(REPO / "config/experiments.yaml")["tables"]
    assert json.loads((smoke / "data/prompts/summary.json").read_text())["train"] == 32
    assert json.loads((smoke / "init/causal_teacher/summary.json").read_text())["kind"] == "exact"
    for row, settings in rows.items():
        row_json = json.loads((smoke / f"rows/{row}.json").read_text())
        assert row_json["row"] == row and row_json["kind"] == "toy-world"
        assert 0 <= row_json["total"] <= 1 and 1 <= row_json["dyn_deg"] <= 4
        assert (smoke / f"samples/{row}/grid.png").is_file()
        assert (smoke / f"train/{row}/summary.json").is_file() == (settings["method"] != "inference")
    for table, labels in tables.items():
        written = json.loads((smoke / f"tables/{table}.json").read_text())
        assert (smoke / f"tables/{table}.csv").is_file() and (smoke / f"tables/{table}.md").is_file()
        if table not in ("user_study", "drift"):
            assert [record["row"] for record in written["rows"]] == list(labels)
            assert "Toy-world scores" in (smoke / f"tables/{table}.md").read_text()
    study = json.loads((smoke / "tables/user_study.json").read_text())["rows"]
    assert {record["opponent"] for record in study} == set(tables["user_study"]) - {"raven"}
    drift = json.loads((smoke / "tables/drift.json").read_text())["rows"]
    assert {record["row"] for record in drift} == set(tables["drift"])
    assert all(record["length_x_training"] == 4 for record in drift)

    from raven.tracking import find_row_runs

    runs = find_row_runs(f"sqlite:///{results}/mlflow.db", "smoke")
    assert {(run.data.tags["table"], run.data.tags["row"]) for run in runs} == {
        (table, label) for table, labels in tables.items() for label in labels}
    for run in runs:  # a trained row links its training runs (an inference row re-samples another row's)
        row = tables[run.data.tags["table"]][run.data.tags["row"]]
        assert bool(run.data.tags["training_runs"]) == (rows[row]["method"] != "inference"), row
    assert any((smoke / "plots/loss_curves").glob("*.png")) and (smoke / "plots/chunk_weights.png").is_file()
    assert (smoke / "plots/user_study.png").is_file() and (smoke / "plots/drift.png").is_file()

    assert "Nothing to be done" in snakemake("-n", "--", "all", results=results)
    snakemake("--report", str(tmp_path / "report.html"), "--", "all", results=results)
    assert "<html" in (tmp_path / "report.html").read_text()[:2000].lower()
