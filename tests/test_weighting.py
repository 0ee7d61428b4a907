"""Chunk-wise loss weighting (docs/method.md §5) on hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm

from raven.config.spec import chunk_frames
from raven.diffusion.schedule import mode_curve
from raven.training.weighting import chunk_weighted_loss, chunk_weights, participation


def close(actual: torch.Tensor, expected: list[float]) -> None:
    assert torch.allclose(actual, torch.tensor(expected, dtype=torch.float64), atol=1e-9, rtol=0), (actual, expected)


def test_participation_of_unequal_chunks():
    assert participation([2, 1, 1]) == [1.0, 0.5, 0.25, 0.0]


def test_alpha_minus_one_weighs_later_chunks_k_times_more():
    # p = [1, 2/3, 1/3], r = p_K/p = [1/3, 1/2, 1]; normalised by 3 / (11/6)
    weights = chunk_weights([5, 5, 5], -1)
    close(weights, [6 / 11, 9 / 11, 18 / 11])
    assert weights[-1] / weights[0] == pytest.approx(3.0)
    assert chunk_weights([7] * 7, -1)[-1] / chunk_weights([7] * 7, -1)[0] == pytest.approx(7.0)


def test_alpha_one_is_participation_earlier_chunks_heavier():
    close(chunk_weights([1, 1, 1], 1), [1.5, 1.0, 0.5])
    # unequal chunks: n = [2, 1, 1], p = [1, 1/2, 1/4], Σ p n = 2.75 -> w = p * 4 / 2.75
    close(chunk_weights([2, 1, 1], 1.0), [16 / 11, 8 / 11, 4 / 11])


def test_alpha_zero_is_uniform_for_any_sizes():
    close(chunk_weights([4, 1, 9], 0), [1.0, 1.0, 1.0])


def test_positive_shift_two():
    # p = [1, 1/2], ŵ = 2p/(1+p) = [1, 2/3], normalised by 2 / (5/3)
    close(chunk_weights([3, 3], 2), [1.2, 0.8])


def test_negative_shift_two_on_unequal_chunks():
    # n = [1, 3]: p = [1, 3/4], r = [3/4, 1], ŵ = 2r/(1+r) = [6/7, 1], normalised by 4 / (27/7)
    close(chunk_weights([1, 3], -2), [8 / 9, 28 / 27])
    close(chunk_weights([1, 3], "-2"), [8 / 9, 28 / 27])


def test_mean_per_element_weight_is_one():
    numel = [5, 2, 7, 3]
    for spec in (-1, 0, 1, 3, -4, "ln_0_1", "ln_0.5_2", "mode_0.81", "mode_-0.54"):
        weights = chunk_weights(numel, spec)
        assert float((weights * torch.tensor(numel, dtype=torch.float64)).sum()) == pytest.approx(sum(numel))


def test_logit_normal_two_equal_chunks():
    # p = [1, 1/2, 0]: ŵ_1 = (1 − Φ(−1)) / 0.5, ŵ_2 = Φ(−1) / 0.5 for ln_1_1 (logit 1/2 = 0); already mean 1
    expected = [2 * norm.cdf(1.0), 2 * norm.cdf(-1.0)]
    close(chunk_weights([4, 4], "ln_1_1"), expected)
    close(chunk_weights([4, 4], "ln_0_1"), [1.0, 1.0])


def test_mode_weights_match_an_independent_root_finder():
    numel, scale = [3, 2, 4, 1], 0.81
    p = participation(numel)
    inverse = [brentq(lambda u: mode_curve(u, scale) - value, 0, 1, xtol=1e-14) for value in p]
    raw = [(inverse[k + 1] - inverse[k]) / (p[k] - p[k + 1]) for k in range(len(numel))]
    total = sum(w * n for w, n in zip(raw, numel))
    close(chunk_weights(numel, f"mode_{scale}"), [w * sum(numel) / total for w in raw])


def test_mode_zero_is_uniform_and_mode_weights_are_positive():
    close(chunk_weights([2, 5, 1], "mode_0"), [1.0, 1.0, 1.0])
    assert (chunk_weights([1] * 7, "mode_-0.54") > 0).all()


@pytest.mark.parametrize("spec", ["mode_5", "mode_-1.5", "ln_0", "ln_0_-1", "foo", "mode_x"])
def test_bad_specs_are_errors_naming_the_spec(spec):
    with pytest.raises(ValueError, match="weighting spec"):
        chunk_weights([1, 1, 1], spec)


def test_bad_chunk_sizes_are_errors():
    with pytest.raises(ValueError, match="positive"):
        chunk_weights([3, 0], 1)


def test_chunk_frames_with_first_chunk():
    assert chunk_frames(9, 3) == [3, 3, 3]
    assert chunk_frames(21, 3, first_chunk_size=1) == [1, 3, 3, 3, 3, 3, 3, 2]


def test_weighted_loss_hand_computed():
    # chunk frames [2, 1] of 1 element each: w = [9/7, 3/7]; ℓ = [1 + 2, 3]; L = (27/7 + 9/7) / 3 = 12/7
    per_element = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 1, 3, 1, 1)
    assert float(chunk_weighted_loss(per_element, [2, 1], 1)) == pytest.approx(12 / 7)
    # a per-sample weight of 2 on the only sample doubles the numerator only
    assert float(chunk_weighted_loss(per_element, [2, 1], 1, torch.tensor([2.0]))) == pytest.approx(24 / 7)


def test_uniform_weighted_loss_is_the_plain_mean():
    per_element = torch.rand(3, 2, 9, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(chunk_weighted_loss(per_element, [3, 3, 3], 0)) == pytest.approx(float(per_element.mean()))


def test_weighted_loss_rejects_wrong_chunking():
    with pytest.raises(ValueError, match="latent frames"):
        chunk_weighted_loss(torch.zeros(1, 1, 4, 1, 1), [3, 3], 1)


def test_plot_writes_a_png(tmp_path, smoke_spec):
    from raven.cli import main
    from raven.config import write_spec

    spec_file = tmp_path / "spec.yaml"
    write_spec(smoke_spec, spec_file)
    out = tmp_path / "weights.png"
    assert main(["weights", "plot", "--spec", str(spec_file), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 2000
