"""Parser: recovers colour, shape, count and direction from rendered videos without ground truth."""

import numpy as np

from raven.world.grammar import heldout_triples, sample_prompts
from raven.world.parser import (by_objects, dynamic_degree, frame_metrics, object_matches, parse_video, prompt_metrics,
                               video_metrics)
from raven.world.render import as_prompt, render


def test_parser_accuracy_on_500_random_prompts():
    prompts = sample_prompts(400, "train", seed=11) + sample_prompts(100, "heldout", seed=11)
    hits = {"colour": 0, "shape": 0, "count": 0, "direction": 0}
    for seed, prompt in enumerate(prompts):
        parsed = parse_video(render(prompt, seed, 16, 16, 9))
        matches = object_matches(parsed, prompt)
        for i, key in enumerate(("colour", "shape", "direction")):
            hits[key] += all(match[i] for match in matches)
        hits["count"] += len(parsed.objects) == len(prompt.objects)
    accuracy = {key: value / len(prompts) for key, value in hits.items()}
    assert min(accuracy.values()) >= 0.99, accuracy


def test_video_metrics_against_right_and_wrong_prompts():
    video = render("red circle right fast and blue square still on grey", 2, 16, 16, 9)
    right = video_metrics(video, "red circle right fast and blue square still on grey")
    assert right["colour"] == right["shape"] == right["direction"] == right["count"] == right["background"] == 1.0
    assert right["identity"] == 1.0 and right["background_stability"] == 1.0
    wrong = video_metrics(video, "red triangle left fast on black")
    assert wrong["colour"] == 1.0 and wrong["shape"] == 0.0 and wrong["direction"] == 0.0
    assert wrong["count"] == 0.0 and wrong["background"] == 0.0
    blank = np.full_like(video, 110)  # grey background only: nothing found
    mean = prompt_metrics([video, blank], "red circle right fast and blue square still on grey")
    assert mean["colour"] == mean["shape"] == mean["count"] == 0.5


def test_video_metrics_use_a_given_parse_instead_of_parsing_again():
    prompt = "red circle right fast and blue square still on grey"
    video = render(prompt, 2, 16, 16, 9)
    assert video_metrics(video, prompt, parse_video(video)) == video_metrics(video, prompt)
    # the objects come from the parse given, the pixel metrics from the frames
    given = video_metrics(video, prompt, parse_video(np.full_like(video, 110)))
    assert given["colour"] == given["shape"] == given["count"] == 0.0
    assert given["flicker"] == video_metrics(video, prompt)["flicker"] < 1.0


def test_objects_are_judged_one_by_one_and_split_by_how_many_a_prompt_names():
    two = "red circle right fast and blue square still on grey"
    swapped = render("red square right fast and blue circle still on grey", 2, 16, 16, 9)  # shapes bound the other way
    assert object_matches(parse_video(render(two, 2, 16, 16, 9)), two) == [(True, True, True)] * 2
    assert object_matches(parse_video(swapped), two) == [(True, False, True)] * 2
    one = "green triangle up slow on black"  # green-triangle-up is a held-out triple; the other two are not
    assert [o.triple in heldout_triples() for o in as_prompt(two).objects + as_prompt(one).objects] == [0, 0, 1]
    split = by_objects([object_matches(parse_video(swapped), two), [(True, True, False)]], [two, one])
    assert split["two_objects"] == {"objects": 2, "colour_acc": 1.0, "shape_acc": 0.0, "direction_acc": 1.0}
    assert split["one_object"] == split["unseen_triple"] == {"objects": 1, "colour_acc": 1.0, "shape_acc": 1.0,
                                                             "direction_acc": 0.0}


def test_motion_metrics_distinguish_still_moving_and_noisy_videos():
    still = render("green triangle still on black", 0, 16, 16, 9)
    moving = render("green triangle down slow on black", 0, 16, 16, 9)
    assert dynamic_degree(still).max() < 0.01 and dynamic_degree(moving).mean() > 0.5
    still_scores, moving_scores = video_metrics(still, "green triangle still on black"), video_metrics(
        moving, "green triangle down slow on black")
    assert still_scores["flicker"] == 1.0 and moving_scores["flicker"] < 1.0
    assert moving_scores["motion_smoothness"] > 0.9 and still_scores["noise"] == 0.0
    noisy = np.clip(still + np.random.default_rng(0).normal(0, 12, still.shape), 0, 255).astype(np.uint8)
    assert video_metrics(noisy, "green triangle still on black")["noise"] > 5.0


def test_frame_metrics_are_frame_indexed_drift_curves():
    video = render("yellow square left slow on white", 4, 16, 16, 9)
    video[3:] = 245  # the object vanishes from frame 3 on: most frames lack it, the curve still shows it
    curves = frame_metrics(video, "yellow square left slow on white")
    assert all(len(curve) == 9 for curve in curves.values())
    np.testing.assert_array_equal(curves["colour"], [1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(curves["shape"], [1, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(curves["count"], [1, 1, 1, 0, 0, 0, 0, 0, 0])
    assert "yellow" not in parse_video(video).objects


def test_noise_holds_no_objects():
    """Uniform colour noise contains every palette colour somewhere; scattered colour is not an object."""
    noise = np.random.default_rng(0).integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    assert parse_video(noise).objects == {}
    scores = video_metrics(noise, "red circle left slow and blue square still on black")
    assert scores["colour"] == 0.0 and scores["count"] == 0.0


def test_an_object_on_mild_noise_is_still_found():
    video = render("red circle still on black", 3, 16, 16, 9).astype(float)
    noisy = np.clip(video + np.random.default_rng(1).normal(0, 8, video.shape), 0, 255).astype(np.uint8)
    scores = video_metrics(noisy, "red circle still on black")
    assert scores["colour"] == 1.0 and scores["shape"] == 1.0 and scores["count"] == 1.0
