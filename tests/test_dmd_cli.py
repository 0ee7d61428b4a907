"""Bad input to `raven train dmd` gives clear messages before any training (docs/method.md §4 stage options)."""

from __future__ import annotations

import json

import pytest

from raven.config import ConfigError, resolve_spec, write_spec
from raven.training.dmd import DMDInputs


def save_student(spec, folder):
    from diffusers import WanTransformer3DModel

    t = spec.transformer
    WanTransformer3DModel(
        patch_size=t.patch_size, num_attention_heads=t.num_attention_heads, attention_head_dim=t.attention_head_dim,
        in_channels=spec.codec.latent_channels, out_channels=spec.codec.latent_channels,
        text_dim=spec.text_encoder.d_model, freq_dim=t.freq_dim, ffn_dim=t.ffn_dim, num_layers=t.num_layers,
    ).save_pretrained(folder)
    return folder


def spec_file(repo_root, tmp_path, scale="smoke", **dmd):
    spec = resolve_spec(repo_root / "config", scale, overrides={"stages": {"dmd": dmd}} if dmd else None)
    write_spec(spec, tmp_path / f"{scale}.yaml")
    return spec, tmp_path / f"{scale}.yaml"


def prompt_file(tmp_path):
    (tmp_path / "prompts.txt").write_text("a red circle moving left\n")
    return tmp_path / "prompts.txt"


def test_valid_inputs_resolve_options_from_the_scale(repo_root, tmp_path):
    spec, path = spec_file(repo_root, tmp_path)
    student = save_student(spec, tmp_path / "student")
    inputs = DMDInputs.from_paths(path, student, prompt_file(tmp_path), tmp_path / "out", critic_init=student)
    assert inputs.options.iterations == 4 and inputs.options.history_mode == "raven"
    assert inputs.options.weighting == -1 and inputs.options.ttur == 2


def test_critic_defaults_to_the_base_model_the_ode_init_started_from(repo_root, tmp_path):
    spec, path = spec_file(repo_root, tmp_path)
    base = save_student(spec, tmp_path / "base" / "model_ema")
    student = save_student(spec, tmp_path / "ode_init" / "model")
    (tmp_path / "ode_init" / "summary.json").write_text(json.dumps({"stage": "ode_init", "init": str(base)}))
    assert DMDInputs.from_paths(path, student, prompt_file(tmp_path), tmp_path / "out").critic_init == base


def test_critic_source_missing_is_a_clear_error(repo_root, tmp_path):
    spec, path = spec_file(repo_root, tmp_path)
    student = save_student(spec, tmp_path / "student")
    with pytest.raises(ConfigError, match="--critic-init is not given, weights.base is not set"):
        DMDInputs.from_paths(path, student, prompt_file(tmp_path), tmp_path / "out")


def test_missing_prompt_file(repo_root, tmp_path):
    spec, path = spec_file(repo_root, tmp_path)
    student = save_student(spec, tmp_path / "student")
    with pytest.raises(FileNotFoundError, match="--prompts .*no such file"):
        DMDInputs.from_paths(path, student, tmp_path / "nope.txt", tmp_path / "out", critic_init=student)


def test_checkpoint_from_another_architecture(repo_root, tmp_path):
    _, path = spec_file(repo_root, tmp_path)
    tiny = resolve_spec(repo_root / "config", "tiny")
    other = save_student(tiny, tmp_path / "tiny_student")
    with pytest.raises(ConfigError, match=r"--init .*num_layers = 4 but the run spec \(scale 'smoke'\) needs 2"):
        DMDInputs.from_paths(path, other, prompt_file(tmp_path), tmp_path / "out", critic_init=other)


def test_missing_teacher_path(repo_root, tmp_path):
    spec, path = spec_file(repo_root, tmp_path, teacher="wan")
    student = save_student(spec, tmp_path / "student")
    with pytest.raises(FileNotFoundError, match="weights.teacher is not set"):
        DMDInputs.from_paths(path, student, prompt_file(tmp_path), tmp_path / "out", critic_init=student)


def test_real_clip_modes_need_clips(repo_root, tmp_path):
    spec, path = spec_file(repo_root, tmp_path, history_mode="tf")
    student = save_student(spec, tmp_path / "student")
    with pytest.raises(ConfigError, match="history_mode 'tf' trains on real clips: pass --clips"):
        DMDInputs.from_paths(path, student, prompt_file(tmp_path), tmp_path / "out", critic_init=student)
    with pytest.raises(FileNotFoundError, match="no \\*.parquet shards"):
        DMDInputs.from_paths(path, student, prompt_file(tmp_path), tmp_path / "out", tmp_path, student)


def test_unknown_option_is_named(repo_root, tmp_path):
    _, path = spec_file(repo_root, tmp_path, history_mod="sf")
    with pytest.raises(ConfigError, match="(?s)stages.dmd.*history_mod: Extra inputs"):
        DMDInputs.from_paths(path, tmp_path, prompt_file(tmp_path), tmp_path / "out")


def test_unknown_reward_is_named(repo_root, tmp_path):
    _, path = spec_file(repo_root, tmp_path, reward_weighting={"reward": "raft", "beta": 1.0})
    with pytest.raises(ConfigError, match="(?s)stages.dmd.*reward 'raft' is not in the raven.rewards registry"):
        DMDInputs.from_paths(path, tmp_path, prompt_file(tmp_path), tmp_path / "out")
