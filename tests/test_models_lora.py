"""LoRA through peft on the Wan transformer: targets, save/load round trip, merge, LongLive base + LoRA."""

from __future__ import annotations

import copy

import pytest
import torch
from test_models_checkpoints import original_wan_keys, wrapped_original

from raven.models.checkpoints import CheckpointError, load_transformer
from raven.models.lora import (
    add_lora,
    load_lora,
    load_transformer_with_lora,
    lora_state_dict,
    merge_lora,
    save_lora,
)
from raven.models.transformer import build_transformer
from raven.training.loop import export_pretrained

LONGLIVE_TARGETS = r"blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ffn\.net\.(0\.proj|2))"


@pytest.fixture
def base(smoke_spec):
    torch.manual_seed(0)
    return build_transformer(smoke_spec).eval()


def with_trained_lora(model, rank=4, alpha=8.0, targets=None, seed=5):
    """`add_lora`, then random adapter weights (a fresh adapter has B = 0 and changes nothing)."""
    add_lora(model, rank, alpha, **({"targets": targets} if targets else {}))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return model


def outputs(model, spec):
    generator = torch.Generator().manual_seed(3)
    c, _, h, w = spec.latent_shape
    x = torch.randn(2, c, 3, h, w, generator=generator)
    text = torch.randn(2, 4, spec.text_encoder.d_model, generator=generator)
    with torch.no_grad():
        return model(x, torch.tensor([900, 250]), text, return_dict=False)[0]


def test_a_fresh_adapter_depends_on_its_seed_not_on_what_ran_before(smoke_spec):
    """CM-GRPO's reruns gave other weights while A was drawn from the process's global generator."""
    def fresh(seed, noise_before):
        torch.manual_seed(0)
        model = build_transformer(smoke_spec)
        torch.manual_seed(noise_before)  # whatever the process drew before: other models, data, ...
        add_lora(model, rank=4, alpha=4, seed=seed)
        after = torch.rand(1)  # the global generator is left as it was
        torch.manual_seed(noise_before)
        assert torch.equal(after, torch.rand(1))
        return lora_state_dict(model)

    first, rerun, other_seed = fresh(7, 1), fresh(7, 2), fresh(8, 1)
    a_keys = [k for k in first if "lora_A" in k]
    assert a_keys and all(torch.equal(first[k], rerun[k]) for k in first)
    assert not any(torch.equal(first[k], other_seed[k]) for k in a_keys)
    assert all(not first[k].any() for k in first if "lora_B" in k)


def test_add_lora_targets_spec_modules_and_freezes_the_base(base, smoke_spec):
    before = outputs(base, smoke_spec)
    add_lora(base, rank=4, alpha=4)
    adapted = {k.split(".lora_")[0] for k in lora_state_dict(base)}
    per_block = {f"{attn}.{proj}" for attn in ("attn1", "attn2") for proj in ("to_q", "to_k", "to_v", "to_out.0")}
    per_block |= {"ffn.net.0.proj", "ffn.net.2"}
    assert adapted == {f"blocks.{i}.{m}" for i in range(2) for m in per_block} | {
        "condition_embedder.text_embedder.linear_1", "condition_embedder.text_embedder.linear_2",
        "condition_embedder.time_embedder.linear_1", "condition_embedder.time_embedder.linear_2",
        "condition_embedder.time_proj", "proj_out"}
    trainable = {n for n, p in base.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert torch.equal(outputs(base, smoke_spec), before)  # B = 0 at init


def test_saved_adapter_loads_onto_a_fresh_base_with_the_same_outputs(base, smoke_spec, tmp_path):
    fresh = copy.deepcopy(base)
    without_adapter = outputs(fresh, smoke_spec)
    model = with_trained_lora(base)
    folder = save_lora(model, tmp_path / "adapter")
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    loaded = load_lora(fresh, folder)
    assert (outputs(loaded, smoke_spec) - without_adapter).abs().max() > 1e-2
    assert torch.equal(outputs(loaded, smoke_spec), outputs(model, smoke_spec))
    assert lora_state_dict(loaded).keys() == lora_state_dict(model).keys()
    assert all(torch.equal(lora_state_dict(loaded)[k], v) for k, v in lora_state_dict(model).items())
    assert loaded.peft_config["default"].lora_alpha == 8.0 and loaded.peft_config["default"].r == 4


def test_saved_adapter_is_peft_format(base, smoke_spec, tmp_path):
    from peft import PeftModel

    fresh = copy.deepcopy(base)
    model = with_trained_lora(base)
    save_lora(model, tmp_path / "adapter")
    via_peft = PeftModel.from_pretrained(fresh, tmp_path / "adapter")
    assert torch.equal(outputs(via_peft, smoke_spec), outputs(model, smoke_spec))


def test_merged_model_equals_unmerged_and_exports_plain(base, smoke_spec, tmp_path):
    model = with_trained_lora(base)
    unmerged = outputs(model, smoke_spec)
    merged = merge_lora(model)
    assert (outputs(merged, smoke_spec) - unmerged).abs().max() <= 1e-5
    assert sorted(merged.state_dict()) == sorted(build_transformer(smoke_spec).state_dict())
    export_pretrained(merged, merged.state_dict(), tmp_path / "merged")
    reloaded = load_transformer(tmp_path / "merged", smoke_spec)
    assert torch.equal(outputs(reloaded, smoke_spec), outputs(merged, smoke_spec))


def test_longlive_base_plus_lora(base, smoke_spec, tmp_path):
    torch.manual_seed(1)
    ema = build_transformer(smoke_spec).eval()
    torch.save({"generator": wrapped_original(base), "generator_ema": wrapped_original(ema)}, tmp_path / "longlive_base.pt")
    reference = with_trained_lora(copy.deepcopy(ema), rank=4, alpha=4, targets=LONGLIVE_TARGETS)
    adapter = {f"base_model.model.{k}": v for k, v in original_wan_keys(lora_state_dict(reference)).items()}
    assert "base_model.model.blocks.0.self_attn.q.lora_A.weight" in adapter  # LongLive's names
    torch.save({"generator_lora": adapter}, tmp_path / "lora.pt")

    expected = outputs(reference, smoke_spec)
    assert (expected - outputs(ema, smoke_spec)).abs().max() > 1e-2
    merged = load_transformer_with_lora(tmp_path / "longlive_base.pt", tmp_path / "lora.pt", smoke_spec,
                                        key="generator_ema")
    assert not any("lora_" in k for k in merged.state_dict())
    assert (outputs(merged, smoke_spec) - expected).abs().max() <= 1e-5
    unmerged = load_transformer_with_lora(tmp_path / "longlive_base.pt", tmp_path / "lora.pt", smoke_spec,
                                          key="generator_ema", merge=False)
    assert torch.equal(outputs(unmerged, smoke_spec), expected)
    save_lora(unmerged, tmp_path / "as_peft")  # re-saved in peft's folder format, diffusers names
    resaved = load_lora(load_transformer(tmp_path / "longlive_base.pt", smoke_spec, key="generator_ema"),
                        tmp_path / "as_peft")
    assert torch.equal(outputs(resaved, smoke_spec), expected)


def test_adapter_errors(base, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no adapter_config.json"):
        load_lora(base, tmp_path / "empty")
    torch.save({"generator_lora": {"blocks.0.attn1.to_q.weight": torch.zeros(2, 2)}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"not LoRA weights: \['blocks.0.attn1.to_q.weight'\]"):
        load_lora(base, tmp_path / "bad.pt")
    lora_a, lora_b = torch.zeros(2, 16), torch.zeros(32, 2)  # to_q is 32 -> 32
    torch.save({"blocks.0.attn1.to_q.lora_A.weight": lora_a, "blocks.0.attn1.to_q.lora_B.weight": lora_b},
               tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other shapes than the transformer's: \['size mismatch for blocks.0"):
        load_lora(copy.deepcopy(base), tmp_path / "other.pt")
    torch.save({"generator_lora": {"blocks.9.attn1.to_q.lora_A.weight": lora_a}}, tmp_path / "deep.pt")
    with pytest.raises(CheckpointError, match=r"for 1 modules the transformer lacks, e.g. \['blocks.9.attn1.to_q'\]"):
        load_lora(copy.deepcopy(base), tmp_path / "deep.pt")
    torch.save({"generator_lora": {"blocks.0.attn1.to_q.lora_A.weight": torch.zeros(2, 32)}}, tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match=r"1 missing LoRA keys \['blocks.0.attn1.to_q.lora_B.default.weight'\]"):
        load_lora(copy.deepcopy(base), tmp_path / "half.pt")
    with pytest.raises(FileNotFoundError, match="no such LoRA adapter"):
        load_lora(base, tmp_path / "absent")


def test_causal_forwards_see_the_adapter(base, smoke_spec):
    from raven.models import causal_forwards

    generator = torch.Generator().manual_seed(4)
    c, frames, h, w = smoke_spec.latent_shape
    x = torch.randn(1, c, frames, h, w, generator=generator)
    t = torch.randint(0, 1000, (1, frames), generator=generator)
    text = torch.randn(1, 4, smoke_spec.text_encoder.d_model, generator=generator)
    with torch.no_grad():
        plain = causal_forwards(copy.deepcopy(base), smoke_spec).block_causal(x, t, text)
        model = with_trained_lora(base)
        adapted = causal_forwards(model, smoke_spec).block_causal(x, t, text)
        merged = causal_forwards(merge_lora(model), smoke_spec).block_causal(x, t, text)
    assert (adapted - plain).abs().max() > 1e-2
    assert (merged - adapted).abs().max() <= 1e-5
