"""load_transformer: tiny random checkpoints in every supported format, loaded strictly; clear errors."""

from __future__ import annotations

import builtins
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from raven.config import ConfigError
from raven.models.checkpoints import CheckpointError, load_transformer
from raven.models.transformer import build_transformer
from raven.training.loop import export_pretrained

# diffusers name -> original Wan name (wan/modules/model.py), the inverse of diffusers' converter;
# diffusers' norm2 is Wan's norm3 (the cross-attention norm).
TO_ORIGINAL_WAN = [
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("attn1", "self_attn"), ("attn2", "cross_attn"),
    (".to_q.", ".q."), (".to_k.", ".k."), (".to_v.", ".v."), (".to_out.0.", ".o."),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("norm2", "norm3"),
]


def original_wan_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for diffusers_name, wan_name in TO_ORIGINAL_WAN:
            key = key.replace(diffusers_name, wan_name)
        if key.startswith("blocks."):
            key = key.replace("scale_shift_table", "modulation")
        else:
            key = key.replace("scale_shift_table", "head.modulation").replace("proj_out", "head.head")
        out[key] = value.clone()
    return out


def wrapped_original(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights as a causal-distillation generator holds them: `model.` + original Wan names."""
    return {f"model.{k}": v for k, v in original_wan_keys(model.state_dict()).items()}


@pytest.fixture
def model(smoke_spec):
    torch.manual_seed(0)
    return build_transformer(smoke_spec)


def assert_same_weights(loaded: torch.nn.Module, reference: torch.nn.Module) -> None:
    expected = reference.state_dict()
    got = loaded.state_dict()
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, spec) -> bool:
    generator = torch.Generator().manual_seed(3)
    c, _, h, w = spec.latent_shape
    x = torch.randn(1, c, 2, h, w, generator=generator)
    text = torch.randn(1, 4, spec.text_encoder.d_model, generator=generator)
    t = torch.tensor([500])
    with torch.no_grad():
        return torch.equal(a(x, t, text, return_dict=False)[0], b(x, t, text, return_dict=False)[0])


def test_diffusers_folder_from_export_pretrained(model, smoke_spec, tmp_path):
    export_pretrained(model, model.state_dict(), tmp_path / "model")
    loaded = load_transformer(tmp_path / "model", smoke_spec)
    assert_same_weights(loaded, model)
    assert same_outputs(loaded, model, smoke_spec)


def test_sharded_diffusers_folder(model, smoke_spec, tmp_path):
    model.save_pretrained(tmp_path / "model", max_shard_size="40KB")
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert_same_weights(load_transformer(tmp_path / "model", smoke_spec), model)


def test_diffusers_folder_of_another_architecture_names_the_config_key(smoke_spec, tmp_path):
    other = smoke_spec.model_copy(update={"transformer": smoke_spec.transformer.model_copy(update={"num_layers": 1})})
    build_transformer(other).save_pretrained(tmp_path / "model")
    with pytest.raises(ConfigError, match=r"num_layers\b.*\b1\b.*\b2\b.*transformer\.num_layers"):
        load_transformer(tmp_path / "model", smoke_spec)


def test_diffusers_folder_with_a_missing_weight(model, smoke_spec, tmp_path):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    state = {k: v for k, v in model.state_dict().items() if k != "blocks.1.ffn.net.2.bias"}
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=r"1 missing keys \['blocks.1.ffn.net.2.bias'\]"):
        load_transformer(folder, smoke_spec)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_original_wan_safetensors(model, smoke_spec, tmp_path, prefix):
    path = tmp_path / "wan.safetensors"
    save_file({prefix + k: v for k, v in original_wan_keys(model.state_dict()).items()}, path)
    loaded = load_transformer(path, smoke_spec)
    assert_same_weights(loaded, model)
    assert same_outputs(loaded, model, smoke_spec)


def test_diffusers_keys_in_a_pth_file(model, smoke_spec, tmp_path):
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    loaded = load_transformer(tmp_path / "weights.pth", smoke_spec)
    assert_same_weights(loaded, model)
    assert all(p.requires_grad and p.device.type == "cpu" for p in loaded.parameters())
    assert all(b.device.type == "cpu" for b in loaded.buffers())


def test_bf16_weights_load_in_the_requested_dtype(model, smoke_spec, tmp_path):
    save_file({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    as_float = load_transformer(tmp_path / "w.safetensors", smoke_spec)
    assert {p.dtype for p in as_float.parameters()} == {torch.float32}
    assert torch.equal(as_float.proj_out.weight, model.proj_out.weight.to(torch.bfloat16).float())
    as_bf16 = load_transformer(tmp_path / "w.safetensors", smoke_spec, dtype=torch.bfloat16)
    assert {p.dtype for p in as_bf16.parameters()} == {torch.bfloat16}


def test_causal_distillation_wrapper_picks_generator_or_ema(model, smoke_spec, tmp_path):
    torch.manual_seed(1)
    ema = build_transformer(smoke_spec)
    torch.save({"generator": wrapped_original(model), "generator_ema": wrapped_original(ema), "critic": {"x": torch.zeros(1)},
                "iteration": 600}, tmp_path / "model.pt")
    assert_same_weights(load_transformer(tmp_path / "model.pt", smoke_spec), model)
    assert_same_weights(load_transformer(tmp_path / "model.pt", smoke_spec, key="generator_ema"), ema)
    with pytest.raises(CheckpointError, match="no entry or key prefix 'generator_emma'"):
        load_transformer(tmp_path / "model.pt", smoke_spec, key="generator_emma")


def test_flat_safetensors_with_a_wrapper_prefix(model, smoke_spec, tmp_path):
    path = tmp_path / "flat.safetensors"
    save_file({f"generator_ema.model.{k}": v.clone() for k, v in model.state_dict().items()}, path)
    assert_same_weights(load_transformer(path, smoke_spec, key="generator_ema"), model)


def test_sharded_safetensors_index(model, smoke_spec, tmp_path):
    state = original_wan_keys(model.state_dict())
    keys = sorted(state)
    shards = {"wan-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "wan-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, shard_keys in shards.items():
        save_file({k: state[k] for k in shard_keys}, tmp_path / name)
    index = tmp_path / "wan.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {k: name for name, ks in shards.items() for k in ks}}))
    assert_same_weights(load_transformer(index, smoke_spec), model)
    # the original Wan release folder: its own config.json (class WanModel) beside the shards
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": 32}))
    assert_same_weights(load_transformer(tmp_path, smoke_spec), model)
    (tmp_path / "wan-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard wan-00002-of-00002.safetensors is missing"):
        load_transformer(index, smoke_spec)


def test_missing_and_unexpected_keys_are_listed(model, smoke_spec, tmp_path):
    state = dict(model.state_dict())
    del state["proj_out.weight"]
    state["blocks.7.attn1.to_q.weight"] = torch.zeros(1)
    save_file(state, tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError) as error:
        load_transformer(tmp_path / "w.safetensors", smoke_spec)
    assert "1 missing keys ['proj_out.weight']" in str(error.value)
    assert "1 unexpected keys ['blocks.7.attn1.to_q.weight']" in str(error.value)


def test_weights_of_another_shape_are_listed(smoke_spec, tmp_path):
    other = smoke_spec.model_copy(update={"transformer": smoke_spec.transformer.model_copy(update={"ffn_dim": 32})})
    save_file(build_transformer(other).state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match=r"blocks.0.ffn.net.0.proj.bias: \(32,\) vs \(64,\)"):
        load_transformer(tmp_path / "w.safetensors", smoke_spec)


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def test_a_pickle_that_would_run_code_is_refused_unexecuted(smoke_spec, tmp_path):
    marker = tmp_path / "executed"
    torch.save({"generator": {"proj_out.weight": torch.zeros(1)}, "payload": RunsCode(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_transformer(tmp_path / "evil.pt", smoke_spec)
    assert not marker.exists()


class RunsShell:
    def __reduce__(self):
        return os.system, ("true",)


def test_a_pickle_naming_a_blocked_module_is_refused(smoke_spec, tmp_path):
    # torch 2.13 words this one "unsupported GLOBAL os.system whose module os is blocked"
    torch.save({"generator": {"proj_out.weight": torch.zeros(1)}, "payload": RunsShell()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused to unpickle.*unsupported GLOBAL (os|posix)\.system"):
        load_transformer(tmp_path / "evil.pt", smoke_spec)


def test_a_truncated_diffusers_folder_is_one_line_naming_the_file(model, smoke_spec, tmp_path):
    export_pretrained(model, model.state_dict(), tmp_path / "model")
    weights = tmp_path / "model" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as error:
        load_transformer(tmp_path / "model", smoke_spec)
    message = str(error.value)
    assert message.startswith(f"{weights}: not a readable .safetensors file") and "\n" not in message


@pytest.mark.parametrize("name", ["junk.safetensors", "junk.pt"])
def test_a_corrupt_file_is_a_clear_error(smoke_spec, tmp_path, name):
    (tmp_path / name).write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match=f"{name}: not a readable"):
        load_transformer(tmp_path / name, smoke_spec)


def test_unknown_format_and_missing_path(smoke_spec, tmp_path):
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_transformer(tmp_path / "w.npz", smoke_spec)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_transformer(tmp_path / "absent", smoke_spec)


def fsdp_wrapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Key names of an EMA copy taken from an FSDP(1)-wrapped, activation-checkpointed generator."""
    return {k.replace("blocks.", "blocks._fsdp_wrapped_module.").replace("model.", "model._checkpoint_wrapped_module.", 1)
            if ".blocks." in f".{k}" else k: v for k, v in state.items()}


# The released baselines' layouts (docs/method.md §9): (file, entries written, entry weights.baselines names).
PUBLISHED = {
    "causvid": ("autoregressive_checkpoint/model.pt", ("generator",), "generator"),
    "self_forcing": ("self_forcing_dmd.pt", ("generator", "generator_ema"), "generator_ema"),
    "causal_forcing": ("chunkwise/causal_forcing.pt", ("generator", "generator_ema"), "generator"),
    "rolling_forcing": ("rolling_forcing_dmd.pt", ("generator", "generator_ema"), "generator_ema"),
    "reward_forcing": ("rewardforcing.safetensors", ("generator_ema",), "generator_ema"),
}


@pytest.mark.parametrize("baseline", sorted(PUBLISHED))
def test_released_baseline_layouts(baseline, smoke_spec, tmp_path):
    from raven.models.checkpoints import load_student

    file, entries, key = PUBLISHED[baseline]
    models = {}
    for seed, entry in enumerate(entries):
        torch.manual_seed(seed)
        models[entry] = build_transformer(smoke_spec)
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {entry: wrapped_original(m) for entry, m in models.items()}
    weights = {**weights, **({"generator_ema": fsdp_wrapped(weights["generator_ema"])} if "generator_ema" in weights else {})}
    if path.suffix == ".safetensors":  # flat: the entry name is a key prefix
        save_file({f"{entry}.{k}": v for entry, state in weights.items() for k, v in state.items()}, path)
    else:
        torch.save({**weights, "critic": {"blocks.0.w": torch.zeros(1)}, "step": 600}, path)
    loaded = load_student(path, smoke_spec, key=key)
    assert_same_weights(loaded, models[key])
    assert same_outputs(loaded, models[key], smoke_spec)


def test_wrapper_names_that_collide_are_an_error(model, smoke_spec, tmp_path):
    state = wrapped_original(model)
    torch.save({"generator": {**state, **fsdp_wrapped(state)}}, tmp_path / "twice.pt")
    with pytest.raises(CheckpointError, match="differ only by wrapper names"):
        load_transformer(tmp_path / "twice.pt", smoke_spec)
