"""The DMD teacher interface (docs/method.md §4): the Wan path with a tiny random model in the real format."""

from __future__ import annotations

import pytest
import torch

from raven.diffusion.schedule import cfg_combine
from raven.training.teachers import RELEASE_NEGATIVE_PROMPT, WAN_NEGATIVE_PROMPT, WanTeacher, require_teacher_path

TEXT_DIM = 8


@pytest.fixture(scope="module")
def tiny_wan(tmp_path_factory):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        text_dim=TEXT_DIM, freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32,
    ).eval()
    folder = tmp_path_factory.mktemp("teacher")
    model.save_pretrained(folder)
    return model, folder


def text_table(prompts):
    """Fixed text embeddings per prompt (the text encoder is not under test here)."""
    table = {}
    for index, prompt in enumerate(prompts):
        table[prompt] = torch.randn(4, TEXT_DIM, generator=torch.Generator().manual_seed(index))
    return lambda batch: torch.stack([table[p] for p in batch])


def test_cfg_combine_hand_computed():
    cond, negative = torch.tensor([2.0]), torch.tensor([1.0])
    assert cfg_combine(cond, negative, 3.0).item() == 4.0
    assert cfg_combine(cond, negative, 1.0).item() == 2.0


def test_wan_teacher_loads_saved_model_and_applies_cfg_with_negative_prompt(tiny_wan):
    model, folder = tiny_wan
    encode = text_table(["a red ball", RELEASE_NEGATIVE_PROMPT])
    teacher = WanTeacher.from_path(folder, encode, guidance=3.0)
    assert teacher.negative_prompt == RELEASE_NEGATIVE_PROMPT
    assert not any(p.requires_grad for p in teacher.transformer.parameters())
    x_t = torch.randn(1, 4, 3, 4, 4, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([600])
    with torch.no_grad():
        v_cond = model(x_t, t, encode(["a red ball"]), return_dict=False)[0]
        v_neg = model(x_t, t, encode([RELEASE_NEGATIVE_PROMPT]), return_dict=False)[0]
    expected = x_t - 0.6 * (v_neg + 3.0 * (v_cond - v_neg))
    assert torch.allclose(teacher.x0(x_t, t, ["a red ball"]), expected, atol=1e-5)
    teacher.guidance = 1.0
    assert torch.allclose(teacher.x0(x_t, t, ["a red ball"]), x_t - 0.6 * v_cond, atol=1e-5)


def test_missing_teacher_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights.teacher is not set"):
        require_teacher_path(None)
    with pytest.raises(FileNotFoundError, match=f"weights.teacher = {tmp_path}: no config.json"):
        WanTeacher.from_path(tmp_path, text_table(["x"]))


class SpaceToDepth:
    """2x2 space-to-depth per frame: the toy scales' pixel codec, an exact permutation."""

    def encode(self, pixels):
        b, c, t, h, w = pixels.shape
        frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        return torch.nn.functional.pixel_unshuffle(frames, 2).view(b, t, 4 * c, h // 2, w // 2).permute(0, 2, 1, 3, 4)

    def decode(self, latents):
        b, c, t, h, w = latents.shape
        frames = latents.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        return torch.nn.functional.pixel_shuffle(frames, 2).view(b, t, c // 4, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)


def test_toy_teacher_is_exact_through_the_pixel_codec():
    from raven.training.teachers import ToyTeacher

    # A world with one video per prompt: the exact denoiser returns that video for every x_t, and
    # CFG against the two-prompt mixture moves it g times the distance away from the mixture's x̂0.
    videos = {"red": torch.full((3, 2, 4, 4), 0.5), "blue": torch.full((3, 2, 4, 4), -0.5)}

    def denoise(x_t, t, prompts, guidance):
        cond = torch.stack([videos[p] for p in prompts])
        mixture = torch.stack(list(videos.values())).mean(0)  # equal posterior at sigma = 1 only
        return mixture + guidance * (cond - mixture) if bool((t == 1000).all()) else cond

    codec = SpaceToDepth()
    teacher = ToyTeacher(denoise, codec, guidance=3.0)
    x_t = codec.encode(torch.randn(2, 3, 2, 4, 4))
    out = teacher.x0(x_t, torch.tensor([400, 400]), ["red", "blue"])
    assert out.shape == (2, 12, 2, 2, 2)
    assert torch.equal(codec.decode(out), torch.stack([videos["red"], videos["blue"]]))
    out = teacher.x0(x_t, torch.tensor([1000, 1000]), ["red", "blue"])
    assert torch.allclose(codec.decode(out)[0], torch.full((3, 2, 4, 4), 1.5))


def test_build_teacher_picks_the_kind_and_names_a_missing_path(tmp_path, tiny_wan):
    from raven.training.teachers import ToyTeacher, build_teacher

    encode = text_table(["a red ball", WAN_NEGATIVE_PROMPT, RELEASE_NEGATIVE_PROMPT])
    with pytest.raises(FileNotFoundError, match="weights.teacher is not set"):
        build_teacher("wan", 3.0, None, encode, SpaceToDepth())
    with pytest.raises(FileNotFoundError, match=f"weights.teacher = {tmp_path / 'absent'}: no config.json"):
        build_teacher("wan", 3.0, tmp_path / "absent", encode, SpaceToDepth())
    teacher = build_teacher("wan", 3.0, tiny_wan[1], encode, SpaceToDepth())
    assert isinstance(teacher, WanTeacher) and teacher.guidance == 3.0
    assert teacher.negative_prompt == RELEASE_NEGATIVE_PROMPT
    own = build_teacher("wan", 3.0, tiny_wan[1], encode, SpaceToDepth(), negative_prompt=WAN_NEGATIVE_PROMPT)
    assert own.negative_prompt == WAN_NEGATIVE_PROMPT
    assert isinstance(build_teacher("toy", 2.0, None, encode, SpaceToDepth(), lambda *a: a[0]), ToyTeacher)


def test_the_release_negative_prompt_is_wans_led_by_slow_motion():
    """docs/method.md §4: `default_neg_prompt` of the release's causal Wan meta-model, not Wan's default alone."""
    assert RELEASE_NEGATIVE_PROMPT.startswith("slow motion, time dilation, 高帧率，色调艳丽，过曝，静态，")
    assert RELEASE_NEGATIVE_PROMPT.endswith("三条腿，背景人很多，倒着走")
    assert RELEASE_NEGATIVE_PROMPT == "slow motion, time dilation, 高帧率，" + WAN_NEGATIVE_PROMPT
