"""VBench aggregation (docs/method.md §10) on hand-computed inputs, and the protocol's counts."""

from __future__ import annotations

import pytest

from raven.evaluation import DIMENSIONS, vbench_scores
from raven.evaluation.scores import UNIT_BOUNDS, VBENCH_BOUNDS
from raven.evaluation.vbench_suite import (
    load_full_info,
    protocol,
    read_extended_prompts,
    scored_files,
)


def at_min() -> dict[str, float]:
    return {name: VBENCH_BOUNDS[name][0] for name in DIMENSIONS}


def test_all_at_max_is_one_and_all_at_min_is_zero():
    top = vbench_scores({name: VBENCH_BOUNDS[name][1] for name in DIMENSIONS})
    assert top == pytest.approx({"total": 1.0, "quality": 1.0, "semantic": 1.0})
    assert vbench_scores(at_min()) == pytest.approx({"total": 0.0, "quality": 0.0, "semantic": 0.0})


def test_hand_computed_mix():
    scores = at_min()
    scores["subject_consistency"] = 1.0  # normalised 1, weight 1
    scores["dynamic_degree"] = 1.0  # normalised 1, weight 0.5
    scores["scene"] = 0.4111  # half of Max 0.8222
    scores["temporal_style"] = 0.182  # half of Max 0.364
    quality = (1.0 + 0.5) / 6.5
    semantic = (0.5 + 0.5) / 9
    result = vbench_scores(scores)
    assert result["quality"] == pytest.approx(quality)
    assert result["semantic"] == pytest.approx(semantic)
    assert result["total"] == pytest.approx((4 * quality + semantic) / 5)
    assert result["total"] == pytest.approx(0.20683760683760682)


def test_motion_smoothness_and_appearance_style_bounds():
    scores = at_min()
    scores["motion_smoothness"] = (0.706 + 0.9975) / 2  # half-way: normalised 0.5
    scores["appearance_style"] = 0.2855
    result = vbench_scores(scores)
    assert result["quality"] == pytest.approx(0.5 / 6.5)
    assert result["semantic"] == pytest.approx(1 / 9)


def test_missing_dimension_raises_naming_it():
    scores = at_min()
    del scores["human_action"]
    with pytest.raises(KeyError, match="human_action"):
        vbench_scores(scores)


def test_unit_bounds_for_toy_scores():
    assert vbench_scores({name: 1.0 for name in DIMENSIONS}, UNIT_BOUNDS)["total"] == pytest.approx(1.0)
    half = vbench_scores({name: 0.5 for name in DIMENSIONS}, UNIT_BOUNDS)
    assert half == pytest.approx({"total": 0.5, "quality": 0.5, "semantic": 0.5})


def test_protocol_counts_6220_files_and_4720_scored():
    info = load_full_info()
    assert len(info) == 946
    files = protocol(info)
    assert len(files) == 6220
    assert len({f.name for f in files}) == 6220
    assert sum(f.flicker for f in files) == 75 * 25
    assert len(scored_files(files)) == 4720
    assert [f.seed for f in files] == list(range(6220))
    assert files[0].name == "In a still frame, a stop sign-0.mp4"
    assert files[24].name == "In a still frame, a stop sign-24.mp4" and files[25].index == 0


def test_protocol_uses_extended_text_and_seed_base(tmp_path):
    info = load_full_info()
    path = tmp_path / "extended.txt"
    path.write_text("".join(f"extended {i}\n" for i in range(len(info))))
    files = protocol(info, read_extended_prompts(path, len(info)), base_seed=1000, flicker_samples=2, samples=1,
                     max_prompts=80)
    assert len(files) == 75 * 2 + 5
    assert files[2].text == "extended 1" and files[2].prompt == info[1]["prompt_en"] and files[2].seed == 1002
    short = tmp_path / "short.txt"
    short.write_text("only one line\n")
    with pytest.raises(ValueError, match="946"):
        read_extended_prompts(short, len(info))
    with pytest.raises(FileNotFoundError, match="stages.vbench.extended_prompts"):
        read_extended_prompts(tmp_path / "absent.txt", len(info))
