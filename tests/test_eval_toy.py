"""The toy-world benchmark: ground truth scores perfectly on the exact dimensions, corruptions lose
exactly what they break; drift curves per chunk; `raven eval toy|drift|row` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from raven.evaluation.samples import read_samples, write_samples
from raven.evaluation.toy import benchmark, drift, pixel_chunk_bounds, video_chunk_bounds, video_scores
from raven.world.render import render

PROMPTS = ["red square right slow on black", "green circle down slow on grey", "blue triangle still on white",
           "yellow square left slow and magenta circle still on black"]
EXACT = ("subject_consistency", "background_consistency", "motion_smoothness", "imaging_quality", "object_class",
         "multiple_objects", "human_action", "color", "spatial_relationship", "scene", "appearance_style",
         "temporal_style", "overall_consistency")


def truth(frames: int = 9, prompts=PROMPTS) -> np.ndarray:
    return np.stack([render(p, i, 16, 16, frames, 8) for i, p in enumerate(prompts)])


def test_ground_truth_scores_perfectly_on_exact_dimensions():
    videos = truth()
    report = benchmark(videos, PROMPTS, fps=8)
    for name in EXACT:
        assert report["dimensions"][name] == 1.0, name
    assert report["dimensions"]["dynamic_degree"] == 0.75  # three of four prompts move
    flicker = np.mean([1 - np.abs(np.diff(v.astype(float), axis=0)).mean() / 255 for v in videos])
    assert report["dimensions"]["temporal_flickering"] == pytest.approx(flicker)
    assert report["semantic"] == 1.0
    assert report["dyn_deg"] == pytest.approx((3.0 + 3.0 + 1.0 + 2.0) / 4)  # slow = 3, still = 1, slow+still = 2
    assert report["kind"] == "toy-world"


def test_wrong_colour_loses_exactly_the_colour_dependent_dimensions():
    videos = truth()
    videos[0] = render("cyan square right slow on black", 0, 16, 16, 9, 8)
    videos[1] = render("red circle down slow on grey", 1, 16, 16, 9, 8)
    dims = benchmark(videos, PROMPTS, fps=8)["dimensions"]
    for name in ("color", "object_class", "human_action", "appearance_style", "overall_consistency"):
        assert dims[name] == 0.5, name
    assert dims["multiple_objects"] == 1.0 and dims["scene"] == 1.0


def test_objects_are_split_by_prompt_and_pooled_over_replicas():
    from raven.evaluation.rows import pool_replicas

    videos = truth()
    right = benchmark(videos, PROMPTS, fps=8)
    perfect = {"colour_acc": 1.0, "shape_acc": 1.0, "direction_acc": 1.0}
    assert right["by_objects"]["one_object"] == {"objects": 3, **perfect}
    assert right["by_objects"]["two_objects"] == {"objects": 2, **perfect}
    videos[3] = render("yellow circle left slow and magenta square still on black", 3, 16, 16, 9, 8)  # shapes swapped
    swapped = benchmark(videos, PROMPTS, fps=8)
    assert swapped["by_objects"]["two_objects"] == {"objects": 2, **perfect, "shape_acc": 0.0}
    assert swapped["by_objects"]["one_object"] == right["by_objects"]["one_object"]
    pooled, _ = pool_replicas([right, swapped])
    assert pooled["by_objects"]["two_objects"] == {"objects": 4, **perfect, "shape_acc": 0.5}
    assert "by_objects" not in pool_replicas([right, {k: v for k, v in swapped.items() if k != "by_objects"}])[0]


def test_frozen_videos_lose_motion_and_noise_loses_quality():
    videos = truth()
    frozen = np.repeat(videos[:, :1], videos.shape[1], axis=1)
    report = benchmark(frozen, PROMPTS, fps=8)
    assert report["dimensions"]["dynamic_degree"] == 0.0
    assert report["dimensions"]["human_action"] == pytest.approx((0 + 0 + 1 + 0.5) / 4)
    assert report["dimensions"]["temporal_flickering"] == 1.0
    assert report["dyn_deg"] == 1.0
    noisy = np.clip(videos + np.random.default_rng(0).normal(0, 25, videos.shape), 0, 255).astype(np.uint8)
    clean, dirty = benchmark(videos, PROMPTS, fps=8), benchmark(noisy, PROMPTS, fps=8)
    assert dirty["quality"] < clean["quality"] - 0.1
    assert dirty["total"] < clean["total"]


def test_dyn_deg_mapping_on_the_one_to_four_scale():
    assert video_scores(render(PROMPTS[0], 0, 16, 16, 9, 8), PROMPTS[0], 8)["dyn_deg"] == pytest.approx(3.0)
    assert video_scores(render(PROMPTS[2], 0, 16, 16, 9, 8), PROMPTS[2], 8)["dyn_deg"] == 1.0


def test_drift_per_chunk_is_flat_for_ground_truth_and_falls_when_identity_changes():
    prompts = PROMPTS[:3]
    videos = truth(36, prompts)
    bounds = pixel_chunk_bounds([3] * 12, 1)
    assert bounds[0] == (0, 3) and bounds[-1] == (33, 36)
    flat = drift(videos, prompts, bounds)
    assert all(value == 1.0 for key in flat["per_chunk"] for value in flat["per_chunk"][key])
    drifting = videos.copy()
    drifting[0, 18:] = render("red circle right slow on black", 0, 16, 16, 36, 8)[18:]  # square becomes a circle
    curves = drift(drifting, prompts, bounds)["per_chunk"]
    assert curves["identity"][:6] == [1.0] * 6
    assert curves["identity"][6:] == pytest.approx([2 / 3] * 6)
    assert curves["colour"] == [1.0] * 12
    noise = np.random.default_rng(0).integers(0, 256, size=(2, 9, 16, 16, 3), dtype=np.uint8)
    assert drift(noise, prompts[:2], bounds[:3])["per_chunk"]["identity"] == [0.0] * 3  # blobs keep no identity


def test_wan_vae_chunk_bounds():
    assert video_chunk_bounds(81, 3, None, 4) == pixel_chunk_bounds([3] * 7, 4)
    assert pixel_chunk_bounds([3, 3, 3, 3, 3, 3, 3], 4) == [(0, 9), (9, 21), (21, 33), (33, 45), (45, 57),
                                                           (57, 69), (69, 81)]


def test_cli_toy_drift_and_row(tmp_path, smoke_spec, repo_root):
    from raven.cli import main
    from raven.config import write_spec
    from raven.tracking import find_row_runs

    spec = smoke_spec.model_copy(update={"results_dir": tmp_path / "results",
                                         "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    write_spec(spec, tmp_path / "spec.yaml")
    write_samples(tmp_path / "samples", truth(), PROMPTS, [0, 1, 2, 3], fps=8)
    assert read_samples(tmp_path / "samples").prompts == PROMPTS
    assert main(["eval", "toy", "--spec", str(tmp_path / "spec.yaml"), "--samples", str(tmp_path / "samples"),
                 "--out", str(tmp_path / "toy.json")]) == 0
    metrics = json.loads((tmp_path / "toy.json").read_text())
    assert metrics["semantic"] == 1.0
    write_samples(tmp_path / "long", truth(36, PROMPTS[:2]), PROMPTS[:2], [0, 1], fps=8)
    assert main(["eval", "drift", "--spec", str(tmp_path / "spec.yaml"), "--samples", f"raven={tmp_path / 'long'}",
                 "--out", str(tmp_path / "drift.json"), "--plot", str(tmp_path / "drift.png")]) == 0
    assert json.loads((tmp_path / "drift.json").read_text())["drift"]["raven"]["per_chunk"]["identity"] == [1.0] * 12
    assert (tmp_path / "drift.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "grid", "--samples", str(tmp_path / "samples"), "--out", str(tmp_path / "grid.png")]) == 0
    assert main(["eval", "row", "--spec", str(tmp_path / "spec.yaml"), "--row", "causvid", "--metrics",
                 str(tmp_path / "toy.json"), "--grid", str(tmp_path / "grid.png"),
                 "--config-dir", str(repo_root / "config")]) == 0
    row = json.loads((tmp_path / "results" / "smoke" / "rows" / "causvid.json").read_text())
    assert row["total"] == metrics["total"] and row["kind"] == "toy-world" and row["recipe"].startswith("bidirectional")
    runs = find_row_runs(spec.tracking_uri, "smoke")
    assert {(r.data.tags["table"], r.data.tags["row"]) for r in runs} >= {("main", "causvid")}
    assert runs[0].data.metrics["Total"] == pytest.approx(metrics["total"])
    # the row's run: its sample grid beside the JSON, and stage options the scale leaves at their defaults
    artifacts = Path(runs[0].info.artifact_uri.removeprefix("file://"))
    assert sorted(p.name for p in artifacts.iterdir()) == ["causvid.json", "grid.png"]
    assert "ttur" not in spec.stages["dmd"] and runs[0].data.params["stages.dmd.ttur"] == "2"
    assert runs[0].data.params["stages.dmd.iterations"] == str(spec.stages["dmd"]["iterations"])
    assert "adv_clip_max" not in spec.stages["cmgrpo"] and runs[0].data.params["stages.cmgrpo.adv_clip_max"] == "5.0"


def test_incomplete_samples_folder_is_refused(tmp_path):
    write_samples(tmp_path / "s", truth()[:1], PROMPTS[:1], [0], fps=8)
    (tmp_path / "s" / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match="summary.json"):
        read_samples(tmp_path / "s")
