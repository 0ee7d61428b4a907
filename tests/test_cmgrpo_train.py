"""`raven train cmgrpo` end to end at smoke scale: 2 iterations write the models and summary; a rerun resumes."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from raven.cli import main
from raven.config import ConfigError, resolve_spec, write_spec
from raven.training.base import ModelParts

CMGRPO = {"iterations": 2, "group_size": 2, "sync_group_size": 1, "lora_rank": 4, "lora_alpha": 4,
          "checkpoint_every": 1, "optim": {"lr": 1e-3}}


def inputs(repo_root, tmp_path, **overrides):
    spec = resolve_spec(repo_root / "config", "smoke", overrides={
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "stages": {"cmgrpo": CMGRPO}, **overrides})
    write_spec(spec, tmp_path / "spec.yaml")
    ModelParts.build(spec).transformer(0).save_pretrained(tmp_path / "student")
    (tmp_path / "prompts.txt").write_text("red square right fast on black\nblue circle up slow on white\n")
    return ["train", "cmgrpo", "--spec", str(tmp_path / "spec.yaml"), "--init", str(tmp_path / "student"),
            "--prompts", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "out")]


def test_two_iterations_write_models_adapters_and_summary_then_a_rerun_resumes(repo_root, tmp_path):
    argv = inputs(repo_root, tmp_path)
    assert main(argv) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == 2 and summary["resumed_from"] == 0 and summary["kernel"] == "consistency"
    assert summary["models"] == {"policy": "model", "policy_ema": "model_ema", "adapter": "adapter",
                                 "adapter_ema": "adapter_ema"}
    for key in ("reward/aggregate", "reward/videoalign_TA", "reward_gap/aggregate", "advantage/std", "loss/policy"):
        assert key in summary["last_metrics"]
    for folder in ("model", "model_ema"):
        config = json.loads((out / folder / "config.json").read_text())
        assert config["_class_name"] == "WanTransformer3DModel"
        assert not any("lora" in k for k in load_file(str(out / folder / "diffusion_pytorch_model.safetensors")))
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4

    assert main(argv) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["resumed_from"] == 2 and again["iterations"] == 2


def test_flow_grpo_needs_a_positive_eta(repo_root, tmp_path):
    argv = inputs(repo_root, tmp_path, sampler={"kind": "euler_maruyama", "eta": 0.0})
    from raven.training.cmgrpo import train_cmgrpo

    with pytest.raises(ConfigError, match="sampler.eta > 0"):
        train_cmgrpo(argv[3], argv[5], argv[7], argv[9])


def test_flow_grpo_runs_with_the_euler_maruyama_kernel(repo_root, tmp_path):
    argv = inputs(repo_root, tmp_path, sampler={"kind": "euler_maruyama", "eta": 0.4},
                  stages={"cmgrpo": {**CMGRPO, "iterations": 1, "kl_beta": 0.004}})
    assert main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["kernel"] == "euler_maruyama" and summary["eta"] == 0.4
    assert summary["last_metrics"]["policy/kl"] >= 0
