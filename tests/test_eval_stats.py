"""The two-level bootstrap of table cells and comparisons, on units with known answers."""

import numpy as np
import pytest

from raven.evaluation.scores import DIMENSIONS, UNIT_BOUNDS, vbench_scores
from raven.evaluation.stats import Units, cell_intervals, compare, units_of

PROMPTS = tuple(f"p{i}" for i in range(400))


def units(values: np.ndarray, prompts=PROMPTS) -> Units:
    return Units(prompts[: values.shape[1]], {"total": values})


def test_constant_units_have_a_zero_width_interval():
    cell = cell_intervals(units(np.full((3, 50), 0.7)))["total"]
    assert cell["mean"] == pytest.approx(0.7) and cell["ci"] == pytest.approx([0.7, 0.7])


def test_prompt_noise_interval_matches_the_normal_theory_width():
    values = np.random.default_rng(1).normal(0.0, 1.0, size=(1, 400))
    cell = cell_intervals(units(values))["total"]
    half_width = (cell["ci"][1] - cell["ci"][0]) / 2
    assert half_width == pytest.approx(1.96 / np.sqrt(400), rel=0.15)
    assert cell["ci"][0] < cell["mean"] < cell["ci"][1]


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(2)
    prompt_only = rng.normal(0.0, 0.1, size=(1, 200)).repeat(3, axis=0)
    with_seeds = prompt_only + np.array([[-0.3], [0.0], [0.3]])
    narrow, wide = (cell_intervals(units(v))["total"]["ci"] for v in (prompt_only, with_seeds))
    assert wide[1] - wide[0] > 3 * (narrow[1] - narrow[0])


def test_comparison_pairs_prompts_so_shared_prompt_noise_cancels():
    hardness = np.random.default_rng(3).uniform(0.0, 1.0, size=(2, 300))
    hardness[1] = hardness[0]  # no seed effect: both seeds score each prompt alike
    a, b = units(hardness + 0.05), units(hardness)
    result = compare(a, b)
    assert result["diff"] == pytest.approx(0.05) and result["ci"] == pytest.approx([0.05, 0.05])
    assert result["significant"]
    # unpaired, the same 0.05 would drown in the prompts' spread (sd 0.29 over 300 prompts: ±0.033)
    assert cell_intervals(b)["total"]["ci"][1] - cell_intervals(b)["total"]["ci"][0] > 0.05


def test_seed_paired_comparison_cancels_the_seed_noise_the_rows_share():
    rng = np.random.default_rng(5)
    # three seeds far apart (which weights training reached), shared by b and by a, which continues b
    before = rng.normal(0.5, 0.1, size=(1, 200)).repeat(3, axis=0) + np.array([[-0.3], [0.0], [0.3]])
    a, b = units(before + 0.02), units(before)
    paired, independent = compare(a, b, paired_seeds=True), compare(a, b)
    assert paired["ci"] == pytest.approx([0.02, 0.02]) and paired["significant"] and paired["seeds_paired"]
    assert independent["ci"][0] < 0 < independent["ci"][1] and not independent["seeds_paired"]
    with pytest.raises(ValueError, match="as many seeds"):
        compare(a, units(before[:2]), paired_seeds=True)


def test_a_difference_inside_the_noise_is_not_significant():
    rng = np.random.default_rng(4)
    a, b = units(rng.normal(0.5, 0.2, size=(3, 64))), units(rng.normal(0.5, 0.2, size=(3, 64)))
    result = compare(a, b)
    assert result["ci"][0] < 0 < result["ci"][1] and not result["significant"]


def test_comparison_aligns_prompts_by_name_and_rejects_other_prompts():
    values = np.arange(6.0).reshape(1, 6)
    a = Units(PROMPTS[:6], {"total": values})
    b = Units(tuple(reversed(PROMPTS[:6])), {"total": values[:, ::-1]})
    assert compare(a, b)["ci"] == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="different prompts"):
        compare(a, Units(PROMPTS[1:7], {"total": values}))


def test_units_average_each_prompts_samples_and_keep_totals_affine():
    def record(prompt, level):
        return {"prompt": prompt, **{d: level for d in DIMENSIONS}, "dyn_deg": 1 + 3 * level}

    seeds = [[record("a", 0.2), record("a", 0.4), record("b", 1.0)], [record("b", 0.0), record("a", 0.6)]]
    result = units_of(seeds, UNIT_BOUNDS)
    assert result.prompts == ("a", "b") and result.seeds == 2
    expected_a = vbench_scores({d: 0.3 for d in DIMENSIONS}, UNIT_BOUNDS)["total"]
    assert result.values["total"][0, 0] == pytest.approx(expected_a)
    assert result.values["dyn_deg"][1].tolist() == pytest.approx([2.8, 1.0])
    with pytest.raises(ValueError, match="other prompts"):
        units_of([seeds[0], [record("c", 0.1)]], UNIT_BOUNDS)


def test_intervals_are_deterministic_and_survive_json():
    values = np.round(np.random.default_rng(5).uniform(size=(3, 32)), 6)  # JSON keeps 6 decimals
    first = units(values)
    again = Units.from_json(first.to_json())
    assert cell_intervals(first) == cell_intervals(again)
