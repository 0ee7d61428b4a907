"""Weight-free toy rewards (issue 6): rendered ground-truth videos score higher than damaged ones."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from raven.rewards import REWARD_NAMES, RewardSources, build_reward, score_videos, toy
from raven.world.render import render, to_model_range

PROMPT = "red square right fast on black"
OTHER = "blue circle up slow on white"


@pytest.fixture(scope="module")
def videos():
    clean = render(PROMPT, 0, 16, 16, 9, 8)
    rng = np.random.default_rng(0)
    return {
        "clean": clean,
        "noisy": np.clip(clean.astype(float) + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8),
        "shuffled": clean[[0, 5, 2, 7, 4, 1, 6, 3, 8]],
        "still": np.repeat(clean[:1], 9, axis=0),
        "blurred": np.stack([cv2.GaussianBlur(f, (5, 5), 1.2) for f in clean]),
    }


def test_text_alignment_matches_the_prompt(videos):
    assert toy.toy_text_alignment(videos["clean"], PROMPT, 8) == 1.0
    assert toy.toy_text_alignment(videos["clean"], OTHER, 8) == 0.25  # only the count matches
    assert toy.toy_text_alignment(videos["still"], PROMPT, 8) == 0.75  # wrong direction


def test_dynamic_degree_zero_for_still_and_higher_for_motion(videos):
    still, moving = toy.toy_dynamic_degree(videos["still"], PROMPT, 8), toy.toy_dynamic_degree(videos["clean"], PROMPT, 8)
    assert still < 0.2
    assert moving > 1.0


def test_motion_smoothness_prefers_the_rendered_order(videos):
    clean = toy.toy_motion_smoothness(videos["clean"], PROMPT, 8)
    assert clean > 0.99
    assert clean > toy.toy_motion_smoothness(videos["shuffled"], PROMPT, 8) + 0.03
    assert clean > toy.toy_motion_smoothness(videos["noisy"], PROMPT, 8) + 0.03


def test_imaging_quality_penalises_noise_and_blur(videos):
    clean = toy.toy_imaging_quality(videos["clean"], PROMPT, 8)
    assert clean > 0.9
    assert toy.toy_imaging_quality(videos["noisy"], PROMPT, 8) < 0.5 * clean
    assert toy.toy_imaging_quality(videos["blurred"], PROMPT, 8) < 0.5 * clean


def test_aesthetic_proxy_is_one_on_the_palette_and_lower_with_noise(videos):
    assert toy.toy_aesthetic(videos["clean"], PROMPT, 8) == pytest.approx(1.0, abs=1e-3)
    assert toy.toy_aesthetic(videos["noisy"], PROMPT, 8) < 0.9


def test_registry_scores_model_range_batches_like_the_per_video_functions(videos):
    batch = torch.from_numpy(to_model_range(np.stack([videos["clean"], videos["noisy"]])))
    sources = RewardSources()
    scores = score_videos({n: build_reward(n, sources) for n in REWARD_NAMES}, batch, [PROMPT, PROMPT], fps=8)
    assert set(scores) == set(REWARD_NAMES)
    assert scores["iq_IMG"][0] > scores["iq_IMG"][1]
    assert float(scores["videoalign_TA"][0]) == 1.0
    assert float(scores["aq_AES"][1]) == pytest.approx(toy.toy_aesthetic(videos["noisy"], PROMPT, 8))


def test_a_failing_video_is_nan_and_the_others_are_scored(videos, caplog):
    batch = torch.from_numpy(to_model_range(np.stack([videos["clean"], videos["clean"]])))
    reward = build_reward("videoalign_TA", RewardSources())
    scores = score_videos({"videoalign_TA": reward}, batch, [PROMPT, "purple cube on mars"], fps=8)["videoalign_TA"]
    assert float(scores[0]) == 1.0 and torch.isnan(scores[1])
    assert "excluded" in caplog.text


def test_unknown_reward_name_is_an_error():
    with pytest.raises(KeyError, match="raft_RAFT"):
        build_reward("raft", RewardSources())
