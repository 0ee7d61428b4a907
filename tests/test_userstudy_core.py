"""User study: balanced blinded pairs, atomic SQLite judgements with validation and resume, exact
win/tie/loss analysis, and simulated raters driven by the toy-world benchmark."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from raven.evaluation.samples import write_samples
from raven.evaluation.userstudy import (
    JudgementStore,
    SubmissionError,
    analyze,
    plot_preferences,
    prepare,
    simulate,
)
from raven.world.render import render

PROMPTS = ["red square right slow on black", "green circle down slow on grey", "blue triangle still on white",
           "yellow square left slow and magenta circle still on black"]
SEEDS = 2


def sample_folder(path, freeze: bool = False):
    prompts = [p for p in PROMPTS for _ in range(SEEDS)]
    videos = np.stack([render(p, i, 16, 16, 9, 8) for i, p in enumerate(prompts)])
    if freeze:
        videos = np.repeat(videos[:, :1], videos.shape[1], axis=1)
    write_samples(path, videos, prompts, list(range(len(prompts))), fps=8)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    folders = {"raven": sample_folder(root / "raven"), "causvid": sample_folder(root / "causvid", freeze=True),
               "self_forcing": sample_folder(root / "self_forcing")}
    manifest = prepare("raven", folders, root / "study", samples_per_prompt=SEEDS, seed=0)
    return root / "study", manifest


def test_pairs_are_balanced_blinded_and_complete(study):
    folder, manifest = study
    pairs = manifest["pairs"]
    assert len(pairs) == 2 * len(PROMPTS) * SEEDS
    for opponent in ("causvid", "self_forcing"):
        mine = [p for p in pairs if p["opponent"] == opponent]
        assert Counter(p["A"]["method"] == "raven" for p in mine) == {True: 4, False: 4}
        assert sorted((p["prompt"], p["A"]["index"] if p["A"]["method"] == "raven" else p["B"]["index"])
                      for p in mine) == sorted((p, i) for i, p in enumerate(q for q in PROMPTS for _ in range(SEEDS)))
    names = [p[side]["video"] for p in pairs for side in "AB"]
    assert len(set(names)) == len(names)
    assert all("raven" not in n and "causvid" not in n for n in names)
    assert all((folder / "videos" / n).stat().st_size > 0 for n in names)
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_store_validates_replaces_and_resumes(tmp_path, study):
    _, manifest = study
    ids = [p["pair"] for p in manifest["pairs"]]
    store = JudgementStore(tmp_path / "j.sqlite", ids)
    good = {"quality": "A", "semantic": "tie", "overall": "B"}
    for bad_pair, bad_annotator, bad_answers in [("nope", "ann", good), (ids[0], "", good),
                                                 (ids[0], "ann", {"quality": "A", "semantic": "tie"}),
                                                 (ids[0], "ann", {**good, "overall": "C"}),
                                                 (ids[0], "ann", {**good, "extra": "A"})]:
        with pytest.raises(SubmissionError):
            store.record(bad_pair, bad_annotator, bad_answers)
    assert store.rows() == []
    assert store.next_pair("ann") == ids[0]
    store.record(ids[0], "ann", good)
    store.record(ids[0], "ann", {**good, "overall": "A"})  # a re-submission replaces
    rows = store.rows()
    assert len(rows) == 3 and {r["dimension"]: r["choice"] for r in rows}["overall"] == "A"
    assert store.next_pair("ann") == ids[1] and store.next_pair("other") == ids[0]
    reopened = JudgementStore(tmp_path / "j.sqlite", ids)
    assert reopened.next_pair("ann") == ids[1]


def test_analysis_counts_from_the_methods_point_of_view(tmp_path, study):
    _, manifest = study
    store = JudgementStore(tmp_path / "j.sqlite", [p["pair"] for p in manifest["pairs"]])
    causvid = [p for p in manifest["pairs"] if p["opponent"] == "causvid"]
    for pair in causvid[:3]:  # raven chosen on every dimension
        side = "A" if pair["A"]["method"] == "raven" else "B"
        store.record(pair["pair"], "ann", {d: side for d in ("quality", "semantic", "overall")})
    other = "B" if causvid[3]["A"]["method"] == "raven" else "A"
    store.record(causvid[3]["pair"], "ann", {"quality": other, "semantic": "tie", "overall": other})
    result = analyze(manifest, store.rows(), bootstrap=500)["results"]["causvid"]
    assert result["quality"]["counts"] == {"win": 3, "tie": 0, "loss": 1}
    assert result["semantic"]["rates"] == {"win": 0.75, "tie": 0.25, "loss": 0.0}
    low, high = result["quality"]["ci95"]["win"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    plot_preferences(analyze(manifest, store.rows(), bootstrap=50), tmp_path / "fig6.png")
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG"


def test_simulated_raters_prefer_ground_truth_over_frozen_videos(tmp_path, study):
    _, manifest = study
    store = JudgementStore(tmp_path / "sim.sqlite", [p["pair"] for p in manifest["pairs"]])
    assert simulate(manifest, store, raters=1, margin=0.01, temperature=0.0, seed=0) == 3 * len(manifest["pairs"])
    results = analyze(manifest, store.rows(), bootstrap=100)["results"]
    for dimension in ("quality", "semantic", "overall"):
        # three of four prompts move: frozen loses them; the still prompt is identical: a tie
        assert results["causvid"][dimension]["rates"] == {"win": 0.75, "tie": 0.25, "loss": 0.0}
        assert results["self_forcing"][dimension]["rates"] == {"win": 0.0, "tie": 1.0, "loss": 0.0}


def test_cli_prepare_simulate_analyze(tmp_path, smoke_spec):
    from raven.cli import main
    from raven.config import write_spec

    spec = smoke_spec.model_copy(update={"stages": {**smoke_spec.stages, "userstudy": {
        "prompts": 3, "samples_per_prompt": SEEDS, "bootstrap": 100}}})
    write_spec(spec, tmp_path / "spec.yaml")
    raven, causvid = sample_folder(tmp_path / "raven"), sample_folder(tmp_path / "causvid", freeze=True)
    study = tmp_path / "study"
    assert main(["userstudy", "prepare", "--spec", str(tmp_path / "spec.yaml"), "--samples", f"raven={raven}",
                 "--samples", f"causvid={causvid}", "--out", str(study)]) == 0
    manifest = json.loads((study / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 3 * SEEDS and manifest["opponents"] == ["causvid"]
    assert main(["userstudy", "simulate", "--study", str(study), "--raters", "2", "--temperature", "0"]) == 0
    assert main(["userstudy", "tally", "--study", str(study), "--bootstrap", "100", "--out", str(tmp_path / "a.json"),
                 "--plot", str(tmp_path / "fig6.png")]) == 0
    analysis = json.loads((tmp_path / "a.json").read_text())
    assert analysis["annotators"] == 2 and analysis["judgements"] == 2 * 3 * 3 * SEEDS
    # prompts 1-2 move (frozen loses), prompt 3 is still (identical: tie)
    assert analysis["results"]["causvid"]["overall"]["counts"] == {"win": 8, "tie": 4, "loss": 0}
