"""benchmarks/levers.py: a lever's --set keys become a validated variant of the DAG's resolved spec, and each
replica is retrained with the command the DAG's rule ran."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from raven.cli.spec import parse_overrides
from raven.config import ConfigError, read_spec, resolve_spec, write_spec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import levers  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)


def test_sets_become_one_nested_override_of_json_or_yaml_flow_values():
    override = parse_overrides(["stages.dmd.iterations=120", "stages.dmd.student_optim.lr=3e-4",
                                "stages.cmgrpo.optim.betas=[0.9, 0.999]", "seeds=2", "row=yes",
                                "stages.cmgrpo.reward_weights={videoalign_TA: -2.0, aq_AES: -1}"])
    assert override == {"stages": {"dmd": {"iterations": 120, "student_optim": {"lr": 3e-4}},
                                   "cmgrpo": {"optim": {"betas": [0.9, 0.999]},
                                              "reward_weights": {"videoalign_TA": -2.0, "aq_AES": -1}}},
                        "seeds": 2, "row": "yes"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["stages.dmd.iterations"])


def test_a_lever_changes_only_its_keys_and_writes_to_its_own_store(tmp_path):
    dag = tmp_path / "raven@s1.yaml"
    write_spec(resolve_spec(REPO / "config", "tiny", row="raven@s1"), dag)
    spec = levers.lever_spec(dag, parse_overrides(["stages.dmd.iterations=77"]), "sqlite:///lever/mlflow.db")
    before = read_spec(dag)
    assert spec.stages["dmd"]["iterations"] == 77 and before.stages["dmd"]["iterations"] != 77
    assert spec.tracking_uri == "sqlite:///lever/mlflow.db"
    assert spec.seed == before.seed and spec.row == "raven@s1"  # the replica keeps its seed
    assert {k: v for k, v in spec.stages["dmd"].items() if k != "iterations"} == \
        {k: v for k, v in before.stages["dmd"].items() if k != "iterations"}
    with pytest.raises(ConfigError, match="iteration"):  # misspelt: named before anything trains
        levers.lever_spec(dag, parse_overrides(["stages.dmd.iteration=120"]), "sqlite:///x.db")
    with pytest.raises(SystemExit, match="no such stage"):
        levers.lever_spec(dag, parse_overrides(["stages.dmdd.iterations=1"]), "sqlite:///x.db")


def test_a_replica_retrains_with_the_dag_rule_command(tmp_path):
    results, spec, out = Path("results/tiny"), tmp_path / "s.yaml", tmp_path / "out"
    summary = {"stage": "dmd", "history_mode": "raven", "init": "results/tiny/init/ode_causal/student/model_ema"}
    assert levers.train_args(summary, Path("summary.json"), results, spec, out) == [
        "train", "dmd", "--spec", str(spec), "--init", "results/tiny/init/ode_causal/student/model_ema",
        "--prompts", "results/tiny/data/prompts/train.txt", "--text-cache", "results/tiny/data/text_cache",
        "--out", str(out)]
    # another prompt file: encoded by the text encoder, since the DAG's cache holds only the DAG's prompts
    assert levers.train_args(summary, Path("summary.json"), results, spec, out, Path("/p/rl.txt"))[6:] == [
        "--prompts", "/p/rl.txt", "--out", str(out)]
    cmgrpo = {"stage": "cmgrpo", "init": "results/tiny/train/raven/model_ema"}
    assert levers.train_args(cmgrpo, Path("summary.json"), results, spec, out)[:2] == ["train", "cmgrpo"]
    with pytest.raises(SystemExit, match="real clips"):
        levers.train_args({**summary, "history_mode": "tf"}, Path("s.json"), results, spec, out)
    with pytest.raises(SystemExit, match="trained row"):
        levers.train_args({"stage": "base", "init": "x"}, Path("s.json"), results, spec, out)


DIMENSIONS = ("aesthetic_quality", "appearance_style", "background_consistency", "color", "dynamic_degree",
              "human_action", "imaging_quality", "motion_smoothness", "multiple_objects", "object_class",
              "overall_consistency", "scene", "spatial_relationship", "subject_consistency", "temporal_flickering",
              "temporal_style")


def toy_metrics(level: float, seed: int) -> dict:
    """A replica's `raven eval toy` output: 8 prompts × 2 videos, every dimension at `level` (± a seed effect)."""
    value = level + 0.01 * seed
    per_video = [{"prompt": f"p{i // 2}", "dyn_deg": 3.0, **{d: value for d in DIMENSIONS}} for i in range(16)]
    return {"kind": "toy-world", "total": value, "quality": value, "semantic": value, "dyn_deg": 3.0,
            "dimensions": {d: value for d in DIMENSIONS}, "per_video": per_video}


def test_a_lever_is_compared_with_another_levers_replicas(tmp_path):
    from raven.config import replica_names
    from raven.io import atomic_write_json

    other = {"row": "self_forcing", "seeds": 3, "work": str(tmp_path / "other")}
    for k, replica in enumerate(replica_names("self_forcing", 3)):
        atomic_write_json(tmp_path / "other" / "eval" / replica / "toy.json", toy_metrics(0.5, k))
    better = levers.units_of_replicas([toy_metrics(0.6, k) for k in range(3)])
    result = levers.versus(better, "raven", other, "sf_fewer")
    assert result["lever"] == "sf_fewer" and result["row"] == "self_forcing"
    assert result["total"]["diff"] == pytest.approx(0.1) and result["total"]["significant"]
    assert not result["total"]["seeds_paired"]  # raven and self_forcing start from different inits
    # two CM-GRPO rows that both continue raven share replica k's starting point: their seeds pair
    other_cmgrpo = {**other, "row": "rw_ta1_dd0.35_ms0.75_aq1_iq1"}
    for k, replica in enumerate(replica_names(other_cmgrpo["row"], 3)):
        atomic_write_json(tmp_path / "other" / "eval" / replica / "toy.json", toy_metrics(0.6, k))
    same = levers.versus(better, "raven_cmgrpo", other_cmgrpo, "rw")
    assert same["total"]["seeds_paired"] and same["total"]["diff"] == pytest.approx(0.0, abs=1e-12)
    assert same["total"]["ci"] == pytest.approx([0.0, 0.0], abs=1e-12)  # the seed effect cancels when paired


def test_a_lever_name_is_not_reused_for_other_settings(tmp_path):
    """A finished replica is reused only while its spec is the lever's: another --set under the same name is refused
    before anything runs, rather than reported with the old settings' results."""
    from raven.config import replica_names

    results, work = tmp_path / "results", tmp_path / "results" / "levers" / "x"
    for replica in replica_names("raven", 1):
        write_spec(resolve_spec(REPO / "config", "tiny", row=replica), results / "specs" / f"{replica}.yaml")
        (results / "train" / replica).mkdir(parents=True)
        (results / "train" / replica / "summary.json").write_text('{"stage": "dmd", "init": "i"}')
    first = levers.lever_spec(results / "specs" / "raven.yaml", parse_overrides(["stages.dmd.iterations=77"]),
                              f"sqlite:///{work.resolve()}/mlflow.db")
    write_spec(first, work / "specs" / "raven.yaml")
    assert read_spec(work / "specs" / "raven.yaml") == first  # the same settings read back equal: a rerun resumes
    with pytest.raises(SystemExit, match="other settings"):
        levers.run_replica("raven", results, work, parse_overrides(["stages.dmd.iterations=78"]))
