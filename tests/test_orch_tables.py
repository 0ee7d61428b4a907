"""Tables: ours beside the paper's with differences; chunk-weighting pairs matched as sets; CLI + MLflow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raven.config import load_yaml
from raven.tables import build_table, reward_label, to_csv, to_markdown

REPO = Path(__file__).resolve().parents[1]
PAPER = load_yaml(REPO / "config/paper_tables.yaml")


def test_main_table_differences_are_ours_minus_paper():
    (record,) = build_table("main", {"raven": {"total": 0.8, "quality": 0.9, "semantic": 0.5, "dyn_deg": 3.0}}, PAPER)
    assert record["total"] == pytest.approx(80.0) and record["paper_total"] == 85.15
    assert record["diff_total"] == pytest.approx(80.0 - 85.15)
    assert record["diff_dyn_deg"] == pytest.approx(3.0 - 2.951)


def test_chunk_weighting_pairs_are_matched_by_rank_within_a_family():
    measured = {"mode_0.81": {"total": 0.90}, "mode_-0.54": {"total": 0.70}, "0": {"total": 0.5}, "-1": {"total": 0.6}}
    records = {r["row"]: r for r in build_table("chunk_weighting", measured, PAPER)}
    assert records["mode_-0.54"]["paper_total"] == 82.58  # the lower of the two Mode rows
    assert records["mode_0.81"]["paper_total"] == 83.08
    assert records["0"]["paper_total"] == 83.79  # "1" missing: "0" takes the lower Shift row
    assert records["-1"]["paper_total"] == 85.15


def test_reward_rows_are_labelled_by_their_weights():
    labels = [reward_label(entry) for entry in PAPER["reward_weights"]]
    assert labels == ["raven_only", "ta1_dd0.35_ms0.75_aq1_iq1", "ta2_dd0.3_ms0.75_aq1_iq1",
                      "ta2_dd0.35_ms1_aq1_iq1", "ta2_dd0.35_ms0.75_aq2_iq2", "ta2_dd0.35_ms0.75_aq1_iq1"]
    experiments = load_yaml(REPO / "config/experiments.yaml")["tables"]
    assert sorted(experiments["reward_weights"]) == sorted(labels)
    assert set(experiments["main"]) == set(PAPER["main"])
    assert set(experiments["training_time_test"]) == set(PAPER["training_time_test"])


def test_markdown_says_toy_scores_and_csv_round_trips():
    records = build_table("main", {"raven": {"total": 0.8, "quality": None, "semantic": 0.5, "dyn_deg": 3.0}}, PAPER)
    text = to_markdown("main", records, "tiny")
    assert "Toy-world scores" in text and "| raven | 80.00 (85.15, -5.15) | – (86.18, –)" in text
    assert "Toy-world" not in to_markdown("main", records, "paper")
    (row,) = csv.DictReader(to_csv(records).splitlines())
    assert float(row["diff_total"]) == pytest.approx(-5.15) and row["quality"] == ""


def test_tables_cli_writes_files_and_one_mlflow_run_per_row(tmp_path):
    raven = str(Path(sys.executable).with_name("raven"))
    spec = tmp_path / "spec.yaml"
    subprocess.run([raven, "spec", "--config-dir", str(REPO / "config"), "--scale", "smoke",
                    "--set", f"tracking_uri=sqlite:///{tmp_path}/m.db", "--out", str(spec)], check=True)
    rows = []
    for label, total in (("raven", 0.8), ("causvid", 0.7)):
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"total": total, "quality": 0.8, "semantic": 0.6, "dyn_deg": 2.0,
                                    "dimensions": {"colour": 1.0}}))
        rows += ["--row", f"{label}={path}"]
    for _ in range(2):  # a rerun updates the same runs
        subprocess.run([raven, "tables", "--spec", str(spec), "--table", "main", *rows, "--paper",
                        str(REPO / "config/paper_tables.yaml"), "--out-dir", str(tmp_path / "tables")], check=True)
    assert json.loads((tmp_path / "tables/main.json").read_text())["rows"][1]["paper_total"] == 83.01
    assert (tmp_path / "tables/main.md").read_text().count("| causvid |") == 1
    from raven.tracking import find_row_runs

    runs = find_row_runs(f"sqlite:///{tmp_path}/m.db", "smoke", "main")
    assert sorted((r.data.tags["row"], r.data.metrics["Total"]) for r in runs) == [("causvid", 0.7), ("raven", 0.8)]
    assert runs[0].data.metrics["dimension/colour"] == 1.0
