"""VideoAlign as the release runs it: VideoAlign's own prompt template, Qwen2-VL frame sampling and
resizing to max_frame_pixels 200704, and loading of both checkpoint layouts (old transformers key names,
LoRA merged by peft) into a tiny random Qwen2-VL. The full forward needs Qwen2-VL's video processor,
which needs torchvision (the rewards extra), so it is not run here."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from raven.rewards.videoalign import (
    SPECIAL_TOKENS, TEMPLATE, frame_indices, frame_size, load_reward_model, prepare_frames, question,
)

VOCAB = 64


def test_the_template_is_videoalign_detailed_special_verbatim():
    assert TEMPLATE.startswith("\nYou are tasked with evaluating a generated video based on three distinct criteria")
    assert all(TEMPLATE.count(token) == 1 for token in SPECIAL_TOKENS)
    assert TEMPLATE.count("{text_prompt}") == 1 and TEMPLATE.endswith("<|TA_reward|>\nEND\n")
    # VideoAlign's file keeps markdown line breaks (two trailing spaces) after three headings and one item
    assert [line for line in TEMPLATE.splitlines() if line.endswith("  ")] == [
        "**Visual Quality:**  ", "**Motion Quality:**  ", "**Text Alignment:**  ",
        "- **Environment Relevance:** Assess whether the background and scene fit the prompt. This includes checking "
        "if real-world locations or scenes are accurately represented, though some stylistic adaptation is acceptable.  "]
    assert "Textual prompt - a cat jumps\nPlease provide the ratings of Text Alignment: <|TA_reward|>" in question("a cat jumps")


def test_frames_are_sampled_at_2_fps_like_qwen2_vl():
    assert frame_indices(81, 16.0) == [0, 9, 18, 27, 36, 44, 53, 62, 71, 80]  # 81 / 16 · 2 = 10.1 → 10
    assert frame_indices(9, 8.0) == [0, 3, 5, 8]  # at least 4 frames
    with pytest.raises(ValueError, match="at least 2 frames"):
        frame_indices(1, 16.0)


def test_frames_are_resized_to_max_frame_pixels_in_multiples_of_28():
    assert frame_size(480, 832) == (336, 588) and 336 * 588 <= 200704
    assert frame_size(16, 16) == (336, 336)  # Qwen2-VL's minimum of 128 · 28² pixels
    video = torch.full((3, 17, 480, 832), 0.2)
    frames = prepare_frames(video, 16.0)
    assert frames.shape == (4, 3, 336, 588) and bool((frames == round(1.2 * 127.5)).all())


def tiny_base(folder):
    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}, bos_token_id=0, eos_token_id=1),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3))
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)


def old_layout(key: str) -> str:
    """Today's Qwen2-VL key → transformers 4.45's (VideoAlign's) inside peft's wrapper."""
    return "base_model.model." + key.replace("model.language_model.", "model.").replace("model.visual.", "visual.")


def videoalign_state(base, rank=4):
    """A VideoAlign-like trained state: the base weights, random LoRA on q_proj/v_proj, and a reward head."""
    torch.manual_seed(1)
    model = Qwen2VLForConditionalGeneration.from_pretrained(base)
    model.resize_token_embeddings(VOCAB + len(SPECIAL_TOKENS))
    state = {old_layout(k): v.clone() for k, v in model.state_dict().items()}
    lora = {}
    for name, module in model.named_modules():
        if name.endswith(("q_proj", "v_proj")) and "language_model" in name:
            lora[old_layout(name) + ".lora_A.default.weight"] = torch.randn(rank, module.in_features)
            lora[old_layout(name) + ".lora_B.default.weight"] = torch.randn(module.out_features, rank)
    head = torch.randn(1, 32)
    return model, state, lora, head


def check_merged(model, reference, lora, head, loaded_head, alpha, rank):
    name = "model.language_model.layers.1.self_attn.q_proj"
    key = old_layout(name)
    expected = reference.get_submodule(name).weight + alpha / rank * lora[key + ".lora_B.default.weight"] @ lora[
        key + ".lora_A.default.weight"]
    torch.testing.assert_close(model.get_submodule(name).weight, expected)
    torch.testing.assert_close(model.get_submodule("model.language_model.layers.0.mlp.up_proj").weight,
                               reference.get_submodule("model.language_model.layers.0.mlp.up_proj").weight)
    assert model.get_input_embeddings().weight.shape[0] == VOCAB + 3
    torch.testing.assert_close(loaded_head.weight, head)


def test_full_model_pth_with_old_key_names_loads_and_merges_its_lora(tmp_path):
    tiny_base(tmp_path / "base")
    reference, state, lora, head = videoalign_state(tmp_path / "base")
    wrapped = {name.split(".lora_")[0] for name in lora}  # peft keeps a LoRA layer's own weights as base_layer.*
    state = {(f"{k.rsplit('.', 1)[0]}.base_layer.{k.rsplit('.', 1)[1]}" if k.rsplit(".", 1)[0] in wrapped else k): v
             for k, v in state.items()}
    torch.save({**state, **lora, "base_model.model.rm_head.weight": head}, tmp_path / "model.pth")
    config = {"peft_lora_config": {"lora_alpha": 8}}
    model, loaded_head = load_reward_model(tmp_path / "base", tmp_path, False, config, VOCAB + 3, torch.float32)
    check_merged(model, reference, lora, head, loaded_head, alpha=8, rank=4)
    torch.save({**state, **lora, "base_model.model.rm_head.weight": head, "base_model.model.model.extra.weight":
                torch.zeros(1)}, tmp_path / "model.pth")
    with pytest.raises(ValueError, match=r"model.pth: 1 tensors match no weight.*model.language_model.extra.weight"):
        load_reward_model(tmp_path / "base", tmp_path, False, config, VOCAB + 3, torch.float32)


def test_lora_layout_loads_adapter_and_non_lora_tensors(tmp_path):
    tiny_base(tmp_path / "base")
    reference, state, lora, head = videoalign_state(tmp_path / "base")
    save_file({k.replace(".default", ""): v.contiguous() for k, v in lora.items()}, tmp_path / "adapter_model.safetensors")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"lora_alpha": 16, "r": 4}))
    embed = "base_model.model.model.embed_tokens.weight"
    torch.save({"base_model.model.rm_head.weight": head, embed: state[embed]}, tmp_path / "non_lora_state_dict.pth")
    model, loaded_head = load_reward_model(tmp_path / "base", tmp_path, True, {}, VOCAB + 3, torch.float32)
    check_merged(model, reference, lora, head, loaded_head, alpha=16, rank=4)
