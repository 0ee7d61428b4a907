import pytest

from raven.config import ConfigError, resolve_spec
from raven.diffusion.schedule import sampling_timesteps, shift_warp, uniform_shift_timesteps


def test_scales_resolve_to_the_documented_latent_geometry(repo_root):
    tiny = resolve_spec(repo_root / "config", "tiny")
    assert tiny.latent_shape == (12, 9, 8, 8)
    paper = resolve_spec(repo_root / "config", "paper")
    assert paper.latent_shape == (16, 21, 60, 104)
    assert paper.transformer.inner_dim == 1536


def test_unknown_key_and_bad_value_are_named(repo_root):
    with pytest.raises(ConfigError) as info:
        resolve_spec(repo_root / "config", "tiny", overrides={"transformer": {"num_layers": 0}, "typo_key": 1})
    message = str(info.value)
    assert "transformer.num_layers" in message and "greater than 0" in message
    assert "typo_key" in message and "Extra inputs" in message


def test_unknown_scale_lists_known_ones(repo_root):
    with pytest.raises(ConfigError, match="known scales: .*tiny"):
        resolve_spec(repo_root / "config", "huge")


def test_malformed_yaml_names_the_file(tmp_path):
    (tmp_path / "config.yaml").write_text("scale: [tiny\n")
    with pytest.raises(ConfigError, match="config.yaml: not valid YAML"):
        resolve_spec(tmp_path)


def test_sampling_timesteps_match_spec():
    assert sampling_timesteps(4, 5.0) == [1000, 938, 833, 625]
    assert sampling_timesteps(4, 5.0, warp=False) == [1000, 750, 500, 250]
    assert sampling_timesteps(5, 5.0) == [1000, 952, 882, 769, 556]


def test_uniform_shift_sampler_stays_in_range_and_is_seeded():
    import torch

    t1 = uniform_shift_timesteps(1000, 5.0, 0.02, 0.98, torch.Generator().manual_seed(0))
    t2 = uniform_shift_timesteps(1000, 5.0, 0.02, 0.98, torch.Generator().manual_seed(0))
    assert torch.equal(t1, t2)
    assert t1.min() >= 20 and t1.max() <= 980
    # shift 5 puts the median at 1000*(0.02 + 0.96*warp(0.5)) = 820
    assert abs(float(t1.float().median()) - (20 + 960 * shift_warp(0.5, 5.0))) < 25


def test_a_key_given_twice_is_an_error_naming_it(tmp_path):
    from raven.config.load import ConfigError, load_yaml

    path = tmp_path / "twice.yaml"
    path.write_text("stages:\n  base: {budget_s: 1}\n  base: {budget_s: 2}\n")
    with pytest.raises(ConfigError, match="'base' is given twice"):
        load_yaml(path)
