"""Real reward adapters: clear errors for missing weights, and loading of tiny random weights in the real
format where the library can build the architecture offline (CLIP + LAION head here)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from raven.config import ConfigError
from raven.rewards import RewardSources, build_reward
from raven.world.render import render, to_model_range

KEY = "stages.cmgrpo.rewards"


@pytest.mark.parametrize(("name", "key", "expected"), [
    ("raft_RAFT", "raft", "RAFT weights raft-things.pth"),
    ("ms_MS", "amt", "AMT-S weights amt-s.pth"),
    ("aq_AES", "clip", "CLIP ViT-L/14 folder"),
    ("iq_IMG", "musiq", "MUSIQ checkpoint trained on SPAQ"),
    ("videoalign_TA", "videoalign", "VideoAlign checkpoint folder"),
])
def test_unset_weights_name_the_config_key_and_the_file(name, key, expected):
    with pytest.raises(ConfigError, match=rf"{KEY}\.{key} is not set.*{expected}"):
        build_reward(name, RewardSources(kind="model"), KEY)


def test_a_missing_file_names_the_key_and_the_path(tmp_path):
    missing = tmp_path / "raft-things.pth"
    with pytest.raises(FileNotFoundError, match=rf"{KEY}\.raft = {missing}: no such file"):
        build_reward("raft_RAFT", RewardSources(kind="model", raft=missing), KEY)


def test_aesthetic_needs_its_head_too(tmp_path):
    with pytest.raises(ConfigError, match=rf"{KEY}\.aesthetic_head is not set.*sa_0_4_vit_l_14_linear.pth"):
        build_reward("aq_AES", RewardSources(kind="model", clip=tmp_path), KEY)


def test_videoalign_folder_without_a_checkpoint_is_an_error(tmp_path):
    (tmp_path / "checkpoint-100").mkdir()
    (tmp_path / "checkpoint-100" / "adapter_model.safetensors").write_bytes(b"")
    sources = RewardSources(kind="model", videoalign=tmp_path, videoalign_base=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"videoalign = .*no VideoAlign checkpoint.*checkpoint-<step>/model.pth"):
        build_reward("videoalign_TA", sources, KEY)


def test_videoalign_picks_the_newest_checkpoint_of_either_layout(tmp_path):
    from raven.rewards.videoalign import videoalign_checkpoint

    for step, files in ((50, ["model.pth"]), (200, ["adapter_config.json", "adapter_model.safetensors",
                                                    "non_lora_state_dict.pth"]), (7, ["model.pth"])):
        (tmp_path / f"checkpoint-{step}").mkdir()
        for name in files:
            (tmp_path / f"checkpoint-{step}" / name).write_bytes(b"")
    assert videoalign_checkpoint(tmp_path, KEY) == (tmp_path / "checkpoint-200", True)
    (tmp_path / "checkpoint-200" / "adapter_config.json").unlink()
    assert videoalign_checkpoint(tmp_path, KEY) == (tmp_path / "checkpoint-50", False)


def without(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is not None, reason=f"{module} is installed")


@pytest.mark.parametrize("name, source, weights_file, module", [
    pytest.param("iq_IMG", "musiq", "musiq_spaq_ckpt.pth", "pyiqa", marks=without("pyiqa")),
])
def test_a_reward_without_its_library_names_the_extra(tmp_path, name, source, weights_file, module):
    weights = tmp_path / weights_file
    weights.write_bytes(b"")
    with pytest.raises(ImportError, match=rf"{name}.*{module}.*\[rewards\]"):
        build_reward(name, RewardSources(kind="model", **{source: weights}), KEY)


@pytest.fixture
def tiny_clip(tmp_path):
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path / "clip")
    return tmp_path / "clip"


def test_clip_aesthetic_loads_the_linear_head_and_scales_by_ten(tmp_path, tiny_clip):
    head = torch.nn.Linear(16, 1)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.constant_(head.bias, 7.5)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    reward = build_reward("aq_AES", RewardSources(kind="model", clip=tiny_clip, aesthetic_head=tmp_path / "head.pth"), KEY)
    videos = torch.from_numpy(to_model_range(np.stack([render("red square right fast on black", s, 16, 16, 9, 8)
                                                       for s in (0, 1)])))
    assert reward(videos, ["a", "b"], 8).tolist() == pytest.approx([0.75, 0.75])


def test_clip_aesthetic_is_the_normalised_embedding_through_the_head(tmp_path, tiny_clip):
    torch.manual_seed(1)
    head = torch.nn.Linear(16, 1)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    reward = build_reward("aq_AES", RewardSources(kind="model", clip=tiny_clip, aesthetic_head=tmp_path / "head.pth"), KEY)
    video = torch.from_numpy(to_model_range(render("blue circle up slow on white", 0, 16, 16, 9, 8)[None]))
    frames = np.moveaxis(((video[0].numpy() + 1) * 127.5).round().astype(np.uint8), 0, -1)
    pixels = reward.processor(images=list(frames), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeds = torch.nn.functional.normalize(reward.model(pixel_values=pixels).image_embeds, dim=-1)
        expected = float(head(embeds).mean()) / 10
    assert float(reward(video, ["x"], 8)[0]) == pytest.approx(expected, rel=1e-5)


def test_a_wrong_head_is_an_error_naming_the_file(tmp_path, tiny_clip):
    torch.save(torch.nn.Linear(768, 1).state_dict(), tmp_path / "head.pth")
    with pytest.raises(ValueError, match=r"head.pth: not a LAION linear head for embeddings of width 16"):
        build_reward("aq_AES", RewardSources(kind="model", clip=tiny_clip, aesthetic_head=tmp_path / "head.pth"), KEY)
