"""The release's recipes as the paper rows' settings (docs/method.md §4, §7, §8), read back the way a job gets them:
`raven spec --scale paper --row R`, then the stage's own options model. Toy scales keep their own sizes."""

from __future__ import annotations

import shutil

import pytest
import yaml

from raven.cli import main
from raven.config import ConfigError, read_spec, resolve_spec, stage_options
from raven.config.check import check_config_files
from raven.config.load import load_yaml
from raven.data.options import DataOptions
from raven.training.cmgrpo import CMGRPOOptions
from raven.training.dmd import DMDOptions
from raven.training.teachers import NEGATIVE_PROMPTS

FLOW_GRPO_ROWS = ["flow_grpo_eta0.1", "flow_grpo_eta0.4", "flow_grpo_eta0.8", "flow_grpo_eta0.4_kl0.004"]
ABLATION_ROWS = ["hm_sf", "hm_tf", "hm_df", "hm_df_self_rollout", "cw_0", "cw_1", "cw_ln_0_1", "cw_mode_0.81", "cw_mode_-0.54"]


def paper_spec(repo_root, tmp_path, row):
    out = tmp_path / f"{row}.yaml"
    assert main(["spec", "--config-dir", str(repo_root / "config"), "--scale", "paper", "--row", row,
                 "--out", str(out)]) == 0
    return read_spec(out)


def test_dmd_teacher_negative_prompt_and_rollout_cfg(repo_root, tmp_path):
    options = stage_options(paper_spec(repo_root, tmp_path, "raven"), "dmd", DMDOptions)
    assert options.teacher == "wan" and options.teacher_guidance == 3.0
    assert NEGATIVE_PROMPTS[options.teacher_negative].startswith("slow motion, time dilation, 高帧率，色调艳丽")
    assert options.rollout_guidance == 3.0 and options.batch_size == 1


def test_cmgrpo_kl_combination_reference_and_rollout_cfg(repo_root, tmp_path):
    spec = paper_spec(repo_root, tmp_path, "raven_cmgrpo")
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    assert (options.policy_loss_scaling, options.kl_beta) == (100.0, 0.0)
    assert (options.kl_reference, options.kl_guidance, options.rollout_guidance) == ("base", 3.0, 3.0)
    assert spec.weights.base is not None  # the KL reference: the bidirectional Wan2.1-T2V-1.3B
    assert (options.group_size, options.sync_group_size, options.optim.lr) == (4, 8, 5e-6)
    kl_row = stage_options(paper_spec(repo_root, tmp_path, "flow_grpo_eta0.4_kl0.004"), "cmgrpo", CMGRPOOptions)
    assert (kl_row.kl_beta, kl_row.policy_loss_scaling, kl_row.kl_reference) == (0.004, 100.0, "base")


@pytest.mark.parametrize("row", FLOW_GRPO_ROWS)
def test_flow_grpo_rows_use_the_release_kernel_group_32_sync_1(repo_root, tmp_path, row):
    spec = paper_spec(repo_root, tmp_path, row)
    assert (spec.sampler.kind, spec.sampler.em_convention) == ("euler_maruyama", "release")
    assert spec.sampler.eta == float(row.split("eta")[1].split("_")[0])
    options = stage_options(spec, "cmgrpo", CMGRPOOptions)
    assert (options.group_size, options.sync_group_size) == (32, 1)


def test_cmgrpo_on_causal_forcing(repo_root, tmp_path):
    options = stage_options(paper_spec(repo_root, tmp_path, "causal_forcing_cmgrpo"), "cmgrpo", CMGRPOOptions)
    assert (options.group_size, options.sync_group_size) == (16, 2)
    assert (options.optim.lr, options.optim.weight_decay, options.optim.eps) == (2e-6, 0.01, 1e-10)
    assert (options.history_mode, options.weighting, options.reward_weights["raft_RAFT"]) == ("sf", 0, 2.35)


@pytest.mark.parametrize("row", ABLATION_ROWS)
def test_history_mode_and_weighting_ablations_train_8_videos_per_gpu(repo_root, tmp_path, row):
    options = stage_options(paper_spec(repo_root, tmp_path, row), "dmd", DMDOptions)
    assert (options.batch_size, options.micro_batch_size) == (8, 1)


def test_training_prompts_are_the_released_file_with_the_vidprom_recipe_kept(repo_root, tmp_path):
    spec = paper_spec(repo_root, tmp_path, "raven")
    options = stage_options(spec, "data", DataOptions)
    assert options.prompt_source == "file"
    assert options.prompt_file.name == "vidprom_motion_30725_v3_w95_action_subject.txt"
    assert options.train_prompts + options.heldout_prompts == 30725
    vidprom = stage_options(resolve_spec(repo_root / "config", "paper", "raven", {"stages": {"data": {
        "prompt_source": "vidprom"}}}), "data", DataOptions)
    assert vidprom.vidprom_path is not None and vidprom.motion_keywords


def test_toy_scales_keep_their_own_sizes(repo_root):
    tiny = resolve_spec(repo_root / "config", "tiny", "flow_grpo_eta0.4")
    assert stage_options(tiny, "cmgrpo", CMGRPOOptions).group_size == 4
    assert stage_options(resolve_spec(repo_root / "config", "tiny", "hm_tf"), "dmd", DMDOptions).batch_size == 4


def test_scale_overrides_name_known_scales(repo_root, tmp_path):
    shutil.copytree(repo_root / "config", tmp_path / "config")
    path = tmp_path / "config/experiments.yaml"
    data = yaml.safe_load(path.read_text())
    data["rows"]["cw_0"]["scale_overrides"] = {"papr": {"stages": {"dmd": {"batch_size": 8}}},
                                               "paper": {"stages": {"dmd": {"batch_sise": 8}}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    config = {**load_yaml(repo_root / "config/config.yaml"), "scale": "paper"}
    with pytest.raises(ConfigError) as error:
        check_config_files(config, tmp_path / "config", repo_root / "workflow/schemas")
    assert "rows.cw_0.scale_overrides.papr: no scale file config/scales/papr.yaml; did you mean 'paper'?" in str(error.value)
    assert "rows.cw_0.scale_overrides.paper.stages.dmd.batch_sise: unknown key" in str(error.value)
