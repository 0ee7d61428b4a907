"""Text encoder, codecs and transformer builders: the real loading code on tiny weights written in the
real formats."""

import json
from pathlib import Path

import pytest
import torch

from raven.config import ConfigError, resolve_spec
from raven.models import build_codec, build_text_encoder, build_transformer, check_architecture
from raven.models.text import save_toy_text_encoder

CONFIG = Path(__file__).resolve().parents[1] / "config"
PROMPTS = ["red circle left fast on black", "blue square still and green triangle up slow on white"]


def smoke(**sections):
    return resolve_spec(CONFIG, "smoke", overrides=sections)


def test_toy_text_encoder_is_deterministic_and_zero_past_each_prompt(smoke_spec):
    first = build_text_encoder(smoke_spec)(PROMPTS)
    second = build_text_encoder(smoke_spec)(PROMPTS)
    assert torch.equal(first, second)
    assert first.shape == (2, smoke_spec.text_encoder.max_length, smoke_spec.text_encoder.d_model)
    length = len(PROMPTS[0].split()) + 1  # words + </s>
    assert first[0, :length].abs().sum(-1).min() > 0 and first[0, length:].abs().sum() == 0
    assert not torch.equal(first[0], first[1])


def test_a_saved_toy_encoder_loads_through_the_umt5_path_with_equal_outputs(smoke_spec, tmp_path):
    folder = save_toy_text_encoder(smoke_spec, tmp_path / "text")
    umt5 = smoke(text_encoder={"kind": "umt5", "path": str(folder)})
    loaded = build_text_encoder(umt5)
    assert loaded.dim == smoke_spec.text_encoder.d_model
    assert torch.allclose(loaded(PROMPTS), build_text_encoder(smoke_spec)(PROMPTS), atol=1e-6)


def test_the_neighbour_bias_tells_a_binding_swap_apart_and_is_saved_with_the_weights(smoke_spec, tmp_path):
    prompts = ["red circle right fast and blue square still on grey",
               "red square right fast and blue circle still on grey"]  # the same words, the shapes exchanged

    def swap_distance(encoder):  # the transformer sees the tokens as a set: nearest-token distance, relative
        first, second = encoder(prompts)[:, : len(prompts[0].split()) + 1]
        return float((torch.cdist(first, second).min(dim=1).values / first.norm(dim=1)).mean())

    biased = smoke(text_encoder={"neighbour_bias": 4.0})
    # written only when set: specs (and their hashes) from before the key are unchanged
    assert "neighbour_bias" not in smoke_spec.model_dump(mode="json")["text_encoder"]
    assert biased.model_dump(mode="json")["text_encoder"]["neighbour_bias"] == 4.0
    assert swap_distance(build_text_encoder(smoke_spec)) < 0.1 < 0.3 < swap_distance(build_text_encoder(biased))
    folder = save_toy_text_encoder(biased, tmp_path / "text")
    loaded = build_text_encoder(smoke(text_encoder={"kind": "umt5", "path": str(folder)}))
    assert torch.allclose(loaded(prompts), build_text_encoder(biased)(prompts), atol=1e-6)
    with pytest.raises(ConfigError, match="neighbour_bias"):  # a trained encoder is loaded as it is
        smoke(text_encoder={"kind": "umt5", "path": str(folder), "neighbour_bias": 4.0})


def test_a_hostile_prompt_is_truncated_not_an_error(smoke_spec):
    encoded = build_text_encoder(smoke_spec)(["ünïcode \x00 " * 500, ""])
    assert encoded.shape[1] == smoke_spec.text_encoder.max_length and torch.isfinite(encoded).all()


def test_missing_umt5_folder_names_the_key(tmp_path):
    spec = smoke(text_encoder={"kind": "umt5", "path": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="text_encoder.path"):
        build_transformer(spec)


def test_pixel_codec_is_an_exact_invertible_permutation(smoke_spec):
    codec = build_codec(smoke_spec)
    pixels = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    latents = codec.encode(pixels)
    assert latents.shape == (2, *smoke_spec.latent_shape)
    assert torch.equal(codec.decode(latents), pixels)
    assert torch.equal(latents.flatten().sort().values, pixels.flatten().sort().values)


def test_pixel_codec_with_wrong_channels_names_the_keys():
    spec = smoke(codec={"latent_channels": 16})
    with pytest.raises(ConfigError, match="codec.latent_channels"):
        build_codec(spec)


def test_wan_vae_folder_loads_and_normalises_with_latent_mean_and_std(tmp_path):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                           temperal_downsample=[False, True, True], latents_mean=[0.5, -0.5, 0.0, 1.0],
                           latents_std=[2.0, 1.0, 0.5, 4.0])
    vae.save_pretrained(tmp_path / "vae")
    spec = smoke(
        codec={"kind": "wan_vae", "path": str(tmp_path / "vae"), "spatial_factor": 8, "temporal_factor": 4,
               "latent_channels": 4},
        video={"height": 32, "width": 32, "frames": 9})
    codec = build_codec(spec)
    pixels = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    latents = codec.encode(pixels)
    assert latents.shape == (1, *spec.latent_shape) == (1, 4, 3, 4, 4)
    raw = vae.encode(pixels).latent_dist.mode()
    mean, std = torch.tensor([0.5, -0.5, 0.0, 1.0]).view(1, 4, 1, 1, 1), torch.tensor([2.0, 1.0, 0.5, 4.0]).view(1, 4, 1, 1, 1)
    assert torch.allclose(latents, (raw - mean) / std, atol=1e-5)
    assert codec.decode(latents).shape == pixels.shape


def test_a_truncated_vae_folder_names_the_file(tmp_path):
    from diffusers import AutoencoderKLWan

    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, attn_scales=[],
                     temperal_downsample=[False, True, True]).save_pretrained(tmp_path / "vae")
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    spec = smoke(codec={"kind": "wan_vae", "path": str(tmp_path / "vae"), "spatial_factor": 8, "temporal_factor": 4,
                        "latent_channels": 4}, video={"height": 32, "width": 32, "frames": 9})
    with pytest.raises(ConfigError, match=f"^{weights}: not a readable .safetensors file"):
        build_codec(spec)


def test_missing_vae_folder_says_what_belongs_there(tmp_path):
    spec = smoke(codec={"kind": "wan_vae", "path": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="AutoencoderKLWan"):
        build_codec(spec)


def test_architecture_mismatch_names_dims_and_config_keys(smoke_spec, tiny_spec):
    model = build_transformer(smoke_spec)
    check_architecture(model, smoke_spec, "smoke model")
    with pytest.raises(ConfigError, match=r"num_layers: checkpoint 2, spec 4 \(config key transformer.num_layers\)"):
        check_architecture(model, tiny_spec, "smoke model")
    assert json.loads(json.dumps(dict(model.config)))["in_channels"] == smoke_spec.codec.latent_channels
