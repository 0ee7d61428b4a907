"""Renderer: deterministic, a finite uniform mixture per prompt, anti-aliased, bouncing at walls."""

import numpy as np

from raven.world.grammar import ToyObject
from raven.world.render import mixture, render, to_model_range, to_uint8, trajectory


def test_render_is_deterministic_and_drawn_from_the_mixture():
    prompt = "red circle right slow on black"
    video = render(prompt, 7, 16, 16, 9)
    assert video.dtype == np.uint8 and video.shape == (9, 16, 16, 3)
    assert np.array_equal(video, render(prompt, 7, 16, 16, 9))
    items = mixture(prompt, 16, 16, 9)
    assert len(items) == 6  # 2 back positions x 3 rows
    assert any(np.array_equal(video, item) for item in items)
    drawn = {next(i for i, item in enumerate(items) if np.array_equal(render(prompt, s, 16, 16, 9), item))
             for s in range(60)}
    assert drawn == set(range(6))


def test_shapes_are_anti_aliased_and_move_one_px_per_frame():
    video = render("green circle right slow on black", 0, 16, 16, 9)
    green = video[..., 1].astype(float)
    assert len(np.unique(green)) > 2  # fractional coverage at the edges
    mass = green.sum(axis=(1, 2))
    centre_x = (green * (np.arange(16) + 0.5)).sum(axis=(1, 2)) / mass
    np.testing.assert_allclose(np.diff(centre_x), 1.0, atol=1e-2)


def test_wall_bounce_reflects_the_centre():
    obj = ToyObject("red", "square", "right", "fast")
    track = trajectory(obj, (3.0, 8.0), 16, 16, frames=12, fps=8)
    # 1.5 px/frame from x = 3 hits the wall x = 13 after 6.67 frames, then comes back.
    np.testing.assert_allclose(track[:, 0], [3, 4.5, 6, 7.5, 9, 10.5, 12, 12.5, 11, 9.5, 8, 6.5])
    np.testing.assert_allclose(track[:, 1], 8.0)


def test_model_range_round_trip():
    video = render("blue triangle still on white", 1, 16, 16, 9)
    model = to_model_range(video)
    assert model.shape == (3, 9, 16, 16) and model.min() >= -1 and model.max() <= 1
    assert np.array_equal(to_uint8(model), video)
