"""Seed replicas: every trained row runs with `seeds` seeds (<row>@s<k>), the row JSON pools them with a
95% interval over seeds and prompts, and tables test the configured comparisons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raven.config import load_experiments, load_yaml, resolve_spec, split_replica, with_replicas
from raven.config.load import REPLICA_SEED_STRIDE
from raven.config.load import ConfigError
from raven.evaluation.scores import DIMENSIONS

REPO = Path(__file__).resolve().parents[1]
RAVEN = str(Path(sys.executable).with_name("raven"))


def test_replicas_train_with_their_own_seed_and_follow_their_own_parent():
    rows = with_replicas(load_experiments(REPO / "config"), 3)
    assert rows["raven_cmgrpo@s2"]["from"] == "raven@s2" and rows["raven_cmgrpo"]["from"] == "raven"
    assert rows["longlive@s1"]["from"] == "self_forcing@s1" and rows["raven@s1"]["replica_of"] == "raven"
    spec = resolve_spec(REPO / "config", "tiny", "raven@s2", {"seed": 5})
    assert spec.seed == 5 + 2 * REPLICA_SEED_STRIDE and spec.row == "raven@s2"
    same = resolve_spec(REPO / "config", "tiny", "raven", {"seed": 5})
    assert spec.model_dump(exclude={"seed", "row"}) == same.model_dump(exclude={"seed", "row"})
    assert split_replica("cw_mode_-0.54@s1") == ("cw_mode_-0.54", 1)
    with pytest.raises(ConfigError, match="replica"):
        split_replica("raven@s0")


def test_every_comparison_names_labels_of_its_table():
    experiments = load_yaml(REPO / "config/experiments.yaml")
    for table, pairs in experiments["comparisons"].items():
        for pair in pairs:
            assert len(pair) == 2 and set(pair) <= set(experiments["tables"][table]), (table, pair)


def toy_metrics(level: float, prompts: int, rng: np.random.Generator) -> dict:
    per_video = []
    for p in range(prompts):
        scores = {d: float(np.clip(level + rng.normal(0, 0.05), 0, 1)) for d in DIMENSIONS}
        per_video.append({"prompt": f"prompt {p}", **scores, "dyn_deg": 2.0})
    dimensions = {d: float(np.mean([v[d] for v in per_video])) for d in DIMENSIONS}
    from raven.evaluation.scores import UNIT_BOUNDS, vbench_scores

    return {"kind": "toy-world", **vbench_scores(dimensions, UNIT_BOUNDS), "dyn_deg": 2.0,
            "dimensions": dimensions, "videos": prompts, "per_video": per_video}


def test_rows_pool_replicas_and_tables_test_comparisons(tmp_path):
    spec = tmp_path / "spec.yaml"
    subprocess.run([RAVEN, "spec", "--config-dir", str(REPO / "config"), "--scale", "smoke",
                    "--set", f"results_dir={json.dumps(str(tmp_path / 'results'))}",
                    "--set", f"tracking_uri={json.dumps(f'sqlite:///{tmp_path}/mlflow.db')}", "--out", str(spec)],
                   check=True)
    rng = np.random.default_rng(0)
    levels = {"raven": 0.60, "causal_forcing": 0.50, "self_forcing": 0.599, "raven_cmgrpo": 0.60}
    for row, level in levels.items():
        files = []
        for seed in range(3):
            files.append(tmp_path / f"{row}-{seed}.json")
            files[-1].write_text(json.dumps(toy_metrics(level, 40, rng)))
        subprocess.run([RAVEN, "eval", "row", "--spec", str(spec), "--row", row, "--metrics", *map(str, files),
                        "--config-dir", str(REPO / "config")], check=True, cwd=tmp_path)
    written = {row: json.loads((tmp_path / f"results/smoke/rows/{row}.json").read_text()) for row in levels}
    raven = written["raven"]
    assert raven["seeds"] == 3 and raven["prompts"] == 40 and raven["videos"] == 120
    assert raven["ci"]["total"][0] < raven["total"] < raven["ci"]["total"][1]
    assert raven["total"] == pytest.approx(np.mean([json.loads((tmp_path / f"raven-{s}.json").read_text())["total"]
                                                    for s in range(3)]))
    rows = [arg for row in levels for arg in ("--row", f"{row}={tmp_path}/results/smoke/rows/{row}.json")]
    subprocess.run([RAVEN, "tables", "--spec", str(spec), "--table", "main", *rows, "--paper",
                    str(REPO / "config/paper_tables.yaml"), "--experiments", str(REPO / "config/experiments.yaml"),
                    "--out-dir", str(tmp_path / "tables")], check=True)
    table = json.loads((tmp_path / "tables/main.json").read_text())
    tested = {(c["a"], c["b"]): c for c in table["comparisons"]}
    assert set(tested) == {("raven_cmgrpo", "raven"), ("raven", "self_forcing"), ("raven", "causal_forcing")}
    assert tested[("raven", "causal_forcing")]["significant"] and tested[("raven", "causal_forcing")]["diff"] > 5
    assert not tested[("raven", "self_forcing")]["significant"]
    # raven_cmgrpo's replica k continues raven's replica k: their seeds are resampled together
    assert [tested[pair]["seeds_paired"] for pair in sorted(tested)] == [False, False, True]
    markdown = (tmp_path / "tables/main.md").read_text()
    assert "| raven − self_forcing | Total |" in markdown and "within the noise" in markdown
    assert "| 3/3 paired | 40 |" in markdown and "| 3/3 | 40 |" in markdown and "one seed" not in markdown
    assert f"| raven | {raven['total'] * 100:.2f} [{raven['ci']['total'][0] * 100:.2f}, " in markdown


def test_the_tiny_dag_trains_every_replica_and_pools_them_in_the_row(tmp_path):
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    plan = subprocess.run([snakemake, "--profile", "local", "-n", "-p", "results/tiny/rows/raven_cmgrpo.json"],
                          cwd=REPO, check=True, capture_output=True, text=True).stdout
    seeds = resolve_spec(REPO / "config", "tiny").seeds
    assert seeds >= 3
    for k in range(1, seeds):
        assert f"train cmgrpo --spec results/tiny/specs/raven_cmgrpo@s{k}.yaml --init results/tiny/train/raven@s{k}/" \
            in plan
    (row_command,) = [line for line in plan.splitlines() if "raven eval row" in line]
    assert row_command.count("/toy.json") == seeds and "eval/raven_cmgrpo@s2/toy.json" in row_command
