"""Tables: ours beside the paper's with differences; chunk-weighting pairs matched as sets; CLI + MLflow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from raven.config import load_yaml
from raven.tables import build_table, reward_label, table_metrics, to_csv, to_markdown

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
    assert "Per object" not in text


def test_rows_split_per_object_get_a_table_of_their_split_below_the_scores():
    split = {"one_object": {"objects": 6, "colour_acc": 1.0, "shape_acc": 0.5, "direction_acc": 0.25},
             "unseen_triple": {"objects": 2, "colour_acc": 1.0, "shape_acc": 1.0, "direction_acc": 1.0}}
    measured = {"raven": {"total": 0.8, "quality": 0.9, "semantic": 0.5, "dyn_deg": 3.0, "by_objects": split},
                "self_forcing": {"total": 0.7, "quality": 0.9, "semantic": 0.5, "dyn_deg": 3.0}}
    records = build_table("main", measured, PAPER)
    assert records[0]["by_objects"] == split and "by_objects" not in records[1]
    text = to_markdown("main", records, "tiny")
    assert "| raven | 1.00 / 0.50 / 0.25 (6 objects) | – |" in text and "| self_forcing | 1.00" not in text


def test_tables_cli_writes_markdown_csv_and_json(tmp_path):
    raven = str(Path(sys.executable).with_name("raven"))
    spec = tmp_path / "spec.yaml"
    subprocess.run([raven, "spec", "--config-dir", str(REPO / "config"), "--scale", "smoke", "--out", str(spec)],
                   check=True)
    rows = []
    for label, total in (("raven", 0.8), ("causvid", 0.7)):
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps({"total": total, "quality": 0.8, "semantic": 0.6, "dyn_deg": 2.0, "recipe": label}))
        rows += ["--row", f"{label}={path}"]
    subprocess.run([raven, "tables", "--spec", str(spec), "--table", "main", *rows, "--paper",
                    str(REPO / "config/paper_tables.yaml"), "--out-dir", str(tmp_path / "tables")], check=True)
    written = json.loads((tmp_path / "tables/main.json").read_text())
    assert written["rows"][1]["paper_total"] == 83.01
    assert written["metrics"]["causvid"] == {"total": 70.0, "quality": 80.0, "semantic": 60.0, "dyn_deg": 2.0}
    assert (tmp_path / "tables/main.md").read_text().count("| causvid | 70.00 (83.01, -13.01)") == 1
    (line,) = [row for row in csv.DictReader((tmp_path / "tables/main.csv").read_text().splitlines())
               if row["row"] == "raven"]
    assert float(line["diff_total"]) == pytest.approx(80.0 - 85.15)


def test_sample_grid_puts_samples_on_lines_and_frames_across(tmp_path):
    import numpy as np
    from PIL import Image

    videos = np.zeros((3, 2, 4, 5, 3), np.uint8)
    videos[1, 1] = 200  # sample 1, frame 1
    np.save(tmp_path / "videos.npy", videos)
    raven = str(Path(sys.executable).with_name("raven"))
    subprocess.run([raven, "report", "grid", "--samples", str(tmp_path), "--out", str(tmp_path / "g.png"),
                    "--count", "2", "--zoom", "2"], check=True)
    image = np.asarray(Image.open(tmp_path / "g.png"))
    assert image.shape == (2 * 4 * 2, 2 * 5 * 2, 3)
    assert image[8:, 10:].min() == 200 and image[:8].max() == 0 and image[8:, :10].max() == 0


def test_user_study_table_prints_rates_in_percent_with_intervals():
    from raven.tables import user_study_markdown, user_study_records

    result = {"n": 4, "rates": {"win": 0.5, "tie": 0.25, "loss": 0.25},
              "ci95": {"win": [0.25, 0.75], "tie": [0.0, 0.5], "loss": [0.0, 0.5]}}
    empty = {"n": 0, "rates": dict.fromkeys(("win", "tie", "loss")), "ci95": dict.fromkeys(("win", "tie", "loss"))}
    analysis = {"method": "raven", "judgements": 4, "annotators": 2,
                "results": {"causvid": {"quality": result, "overall": empty}}}
    records = user_study_records(analysis)
    assert records[0]["win"] == 50.0 and records[0]["win_ci"] == [25.0, 75.0] and records[1]["win"] is None
    text = user_study_markdown(analysis, records, "tiny")
    assert "| causvid | quality | 50.0 [25.0, 75.0] | 25.0 [0.0, 50.0] | 25.0 [0.0, 50.0] | 4 |" in text
    assert "| causvid | overall | – [–] | – [–] | – [–] | 0 |" in text and "simulated raters" in text
    assert table_metrics("user_study", records)["causvid"]["quality_win"] == 50.0


def test_drift_table_has_one_line_per_method_and_key_and_a_csv():
    from raven.tables import drift_markdown, drift_records, records_csv

    report = {"kind": "toy-world", "drift": {"raven": {"per_chunk": {"colour": [1.0, 0.75], "shape": [1.0, 0.5]},
                                                       "length_x_training": 4.0}}}
    records = drift_records(report)
    assert [(r["row"], r["key"]) for r in records] == [("raven", "colour"), ("raven", "shape")]
    assert "| raven | shape | 4.0 | 1.000 | 0.500 |" in drift_markdown(records, "tiny")
    assert table_metrics("drift", records)["raven"]["shape_chunk1"] == 0.5
    assert records_csv(records).splitlines()[1] == "raven,colour,4.0,1;0.75"
