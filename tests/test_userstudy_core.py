"""User study: balanced blinded pairs with content ids, an append-only vote store (history, latest
counts, per-annotator order, single-use form tokens), votes that survive a regenerated manifest,
exact win/tie/loss analysis, and simulated raters driven by the toy-world benchmark."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from raven.evaluation.judgements import JudgementStore, RefusedError, SubmissionError, describe, votes_stamp
from raven.evaluation.samples import write_samples
from raven.evaluation.userstudy import analyze, plot_preferences, prepare, simulate
from raven.world.render import render

PROMPTS = ["red square right slow on black", "green circle down slow on grey", "blue triangle still on white",
           "yellow square left slow and magenta circle still on black"]
SEEDS = 2
DIMS = ("quality", "semantic", "overall")


def sample_folder(path, freeze: bool = False, prompts=PROMPTS):
    prompts = [p for p in prompts for _ in range(SEEDS)]
    videos = np.stack([render(p, i, 16, 16, 9, 8) for i, p in enumerate(prompts)])
    if freeze:
        videos = np.repeat(videos[:, :1], videos.shape[1], axis=1)
    write_samples(path, videos, prompts, list(range(len(prompts))), fps=8)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    return {"raven": sample_folder(root / "raven"), "causvid": sample_folder(root / "causvid", freeze=True),
            "self_forcing": sample_folder(root / "self_forcing")}


@pytest.fixture(scope="module")
def study(tmp_path_factory, folders):
    root = tmp_path_factory.mktemp("study")
    return root, prepare("raven", folders, root, samples_per_prompt=SEEDS, seed=0)


def side_of(pair, method="raven"):
    return "A" if pair["A"]["method"] == method else "B"


def test_pairs_are_balanced_blinded_and_complete(study):
    folder, manifest = study
    pairs = manifest["pairs"]
    assert len(pairs) == 2 * len(PROMPTS) * SEEDS and len({p["pair"] for p in pairs}) == len(pairs)
    for opponent in ("causvid", "self_forcing"):
        mine = [p for p in pairs if p["opponent"] == opponent]
        assert Counter(p["A"]["method"] == "raven" for p in mine) == {True: 4, False: 4}
        assert sorted((p["prompt"], p[side_of(p)]["index"]) for p in mine) == \
            sorted((p, i) for i, p in enumerate(q for q in PROMPTS for _ in range(SEEDS)))
    names = [p[side]["video"] for p in pairs for side in "AB"]
    assert len(set(names)) == len(names)
    assert all("raven" not in n and "causvid" not in n for n in names)
    assert all((folder / "videos" / n).stat().st_size > 0 for n in names)
    assert json.loads((folder / "manifest.json").read_text()) == manifest


def test_pair_ids_are_content_ids(tmp_path, folders, study):
    _, manifest = study
    ids = {p["pair"]: (p["prompt"], p["opponent"], p["sample"]) for p in manifest["pairs"]}
    # another study seed: other order and sides, the same pairs
    reshuffled = prepare("raven", folders, tmp_path / "a", samples_per_prompt=SEEDS, seed=7)
    assert [p["pair"] for p in reshuffled["pairs"]] != [p["pair"] for p in manifest["pairs"]]
    assert {p["pair"]: (p["prompt"], p["opponent"], p["sample"]) for p in reshuffled["pairs"]} == ids
    # fewer prompts: the remaining pairs keep their ids
    fewer = prepare("raven", folders, tmp_path / "b", samples_per_prompt=SEEDS, seed=0, max_prompts=2)
    assert {p["pair"] for p in fewer["pairs"]} == {i for i, v in ids.items() if v[0] in PROMPTS[:2]}
    # other frames for causvid (a retrained model): its pairs get new ids, except on the still prompt,
    # whose frames do not change when frozen
    changed = {**folders, "causvid": sample_folder(tmp_path / "causvid")}
    regenerated = prepare("raven", changed, tmp_path / "c", samples_per_prompt=SEEDS, seed=0)
    kept = {p["pair"] for p in regenerated["pairs"]} & set(ids)
    assert kept == {i for i, v in ids.items() if v[1] == "self_forcing" or v[0] == PROMPTS[2]}


def test_store_validates_keeps_history_and_orders_per_annotator(tmp_path, study):
    _, manifest = study
    ids = [p["pair"] for p in manifest["pairs"]]
    store = JudgementStore(tmp_path / "j.sqlite", manifest)
    good = {"quality": "A", "semantic": "tie", "overall": "B"}
    for bad_pair, bad_annotator, bad_answers in [("nope", "ann", good), (ids[0], "", good), (ids[0], "x" * 65, good),
                                                 (ids[0], "ann", {"quality": "A", "semantic": "tie"}),
                                                 (ids[0], "ann", {**good, "overall": "C"}),
                                                 (ids[0], "ann", {**good, "extra": "A"})]:
        with pytest.raises(SubmissionError):
            store.record(bad_pair, bad_annotator, bad_answers)
    assert store.rows() == [] and votes_stamp(tmp_path / "j.sqlite") == "0:0"
    order = store.order("ann")
    assert sorted(order) == sorted(ids) and order == JudgementStore(tmp_path / "j.sqlite", manifest).order("ann")
    assert order != store.order("bob") and store.next_pair("ann") == order[0]
    store.record(order[0], "ann", good)
    store.record(order[0], "ann", {**good, "overall": "A"})  # a second vote: history, the latest counts
    assert len(store.rows(history=True)) == 6
    latest = {r["dimension"]: r for r in store.rows()}
    assert len(latest) == 3 and latest["overall"]["choice"] == "A" and latest["semantic"]["preferred"] == "tie"
    assert latest["quality"]["preferred"] == manifest["pairs"][ids.index(order[0])]["A"]["method"]
    assert store.summary() == {"counted": 3, "superseded": 3, "revised_pairs": 1, "pairs_judged": 1,
                               "archived": 0, "archived_pairs": 0}
    assert votes_stamp(tmp_path / "j.sqlite") == "6:6" and votes_stamp(tmp_path / "none.sqlite") == "none"
    reopened = JudgementStore(tmp_path / "j.sqlite", manifest)
    assert reopened.next_pair("ann") == order[1] and reopened.next_pair("bob") == store.order("bob")[0]


def test_form_tokens_allow_only_shown_pairs_once(tmp_path, study):
    _, manifest = study
    ids = [p["pair"] for p in manifest["pairs"]]
    store = JudgementStore(tmp_path / "j.sqlite", manifest)
    answers = dict.fromkeys(DIMS, "A")
    token = store.issue("alice", ids[0])
    assert store.issue("alice", ids[0]) == token  # a reload shows the same form
    with pytest.raises(RefusedError):
        store.record_shown("forged", "alice", answers)  # a pair never shown
    with pytest.raises(RefusedError):
        store.record_shown(token, "bob", answers)  # shown to alice, not to bob
    with pytest.raises(SubmissionError):
        store.record_shown(token, "alice", {"quality": "A"})  # malformed: the token stays unspent
    assert store.record_shown(token, "alice", answers) == ids[0]
    with pytest.raises(RefusedError):
        store.record_shown(token, "alice", {**answers, "overall": "B"})  # a replayed form
    assert store.was_shown("alice", ids[0]) and not store.was_shown("alice", ids[1])
    again = store.issue("alice", ids[0])  # re-opening a shown pair: a fresh form, a second vote
    assert again != token
    store.record_shown(again, "alice", {**answers, "overall": "tie"})
    assert {r["dimension"]: r["choice"] for r in store.rows()} == {"quality": "A", "semantic": "A", "overall": "tie"}


def test_votes_survive_a_regenerated_manifest(tmp_path, folders):
    study = tmp_path / "study"
    first = prepare("raven", folders, study, samples_per_prompt=SEEDS, seed=0)
    store = JudgementStore(study / "judgements.sqlite", first)
    for pair in first["pairs"]:
        store.record(pair["pair"], "ann", dict.fromkeys(DIMS, side_of(pair)))
    before = analyze(first, store.rows(), bootstrap=50)["results"]
    # the same inputs again (a forced rerun): every vote kept, the same tally
    again = prepare("raven", folders, study, samples_per_prompt=SEEDS, seed=0)
    store = JudgementStore(study / "judgements.sqlite", again)
    assert store.summary()["counted"] == 3 * len(first["pairs"]) and store.summary()["archived"] == 0
    assert analyze(again, store.rows(), bootstrap=50)["results"] == before
    # causvid's videos change (but on the still prompt): those votes are archived (kept, uncounted),
    # said so; the rest still count
    changed = {**folders, "causvid": sample_folder(tmp_path / "retrained")}
    regenerated = prepare("raven", changed, study, samples_per_prompt=SEEDS, seed=0)
    summary = JudgementStore(study / "judgements.sqlite", regenerated).summary()
    assert summary == {"counted": 30, "superseded": 0, "revised_pairs": 0, "pairs_judged": 10,
                       "archived": 18, "archived_pairs": 6}
    assert "18 votes on 6 pairs this manifest no longer has are archived" in describe(summary, "j.sqlite")
    # and back: the archived votes count again
    store = JudgementStore(study / "judgements.sqlite", prepare("raven", folders, study, SEEDS, 0))
    assert store.summary()["counted"] == 48 and store.summary()["archived"] == 0


def test_analysis_counts_from_the_methods_point_of_view(tmp_path, study):
    _, manifest = study
    store = JudgementStore(tmp_path / "j.sqlite", manifest)
    causvid = [p for p in manifest["pairs"] if p["opponent"] == "causvid"]
    for pair in causvid[:3]:  # raven chosen on every dimension
        store.record(pair["pair"], "ann", dict.fromkeys(DIMS, side_of(pair)))
    other = side_of(causvid[3], "causvid")
    store.record(causvid[3]["pair"], "ann", {"quality": "A" if other == "B" else "B", "semantic": "A", "overall": "A"})
    store.record(causvid[3]["pair"], "ann", {"quality": other, "semantic": "tie", "overall": other})  # latest counts
    analysis = analyze(manifest, store.rows(), bootstrap=500, votes=store.summary())
    result = analysis["results"]["causvid"]
    assert result["quality"]["counts"] == {"win": 3, "tie": 0, "loss": 1}
    assert result["semantic"]["rates"] == {"win": 0.75, "tie": 0.25, "loss": 0.0}
    assert analysis["judgements"] == 12 and analysis["votes"]["superseded"] == 3
    low, high = result["quality"]["ci95"]["win"]
    assert 0.0 <= low <= 0.75 <= high <= 1.0
    plot_preferences(analyze(manifest, store.rows(), bootstrap=50), tmp_path / "fig6.png")
    assert (tmp_path / "fig6.png").read_bytes()[:4] == b"\x89PNG"


def test_simulated_raters_prefer_ground_truth_over_frozen_videos(tmp_path, study):
    _, manifest = study
    store = JudgementStore(tmp_path / "sim.sqlite", manifest)
    assert simulate(manifest, store, raters=1, margin=0.01, temperature=0.0, seed=0) == 3 * len(manifest["pairs"])
    assert simulate(manifest, store, raters=1, margin=0.01, temperature=0.0, seed=0) == 0  # a rerun resumes
    results = analyze(manifest, store.rows(), bootstrap=100)["results"]
    for dimension in DIMS:
        # three of four prompts move: frozen loses them; the still prompt is identical: a tie
        assert results["causvid"][dimension]["rates"] == {"win": 0.75, "tie": 0.25, "loss": 0.0}
        assert results["self_forcing"][dimension]["rates"] == {"win": 0.0, "tie": 1.0, "loss": 0.0}


def test_cli_prepare_simulate_export_analyze(tmp_path, smoke_spec, capsys):
    from raven.cli import main
    from raven.config import write_spec

    spec = smoke_spec.model_copy(update={"stages": {**smoke_spec.stages, "userstudy": {
        "prompts": 3, "samples_per_prompt": SEEDS, "bootstrap": 100}}})
    write_spec(spec, tmp_path / "spec.yaml")
    raven, causvid = sample_folder(tmp_path / "raven"), sample_folder(tmp_path / "causvid", freeze=True)
    study = tmp_path / "study"
    prepare_args = ["userstudy", "prepare", "--spec", str(tmp_path / "spec.yaml"), "--samples", f"raven={raven}",
                    "--samples", f"causvid={causvid}", "--out", str(study)]
    assert main(prepare_args) == 0
    manifest = json.loads((study / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 3 * SEEDS and manifest["opponents"] == ["causvid"]
    assert main(["userstudy", "export", "--study", str(study), "--out", str(tmp_path / "v.json")]) == 1
    assert "No judgements yet: run `raven userstudy serve" in capsys.readouterr().out
    assert main(["userstudy", "simulate", "--study", str(study), "--raters", "2", "--temperature", "0"]) == 0
    assert main(["userstudy", "export", "--study", str(study), "--out", str(tmp_path / "v.json")]) == 0
    assert main(["userstudy", "tally", "--study", str(study), "--bootstrap", "100", "--out", str(tmp_path / "a.json"),
                 "--plot", str(tmp_path / "fig6.png")]) == 0
    analysis = json.loads((tmp_path / "a.json").read_text())
    assert analysis["annotators"] == 2 and analysis["judgements"] == 2 * 3 * 3 * SEEDS
    # prompts 1-2 move (frozen loses), prompt 3 is still (identical: tie)
    assert analysis["results"]["causvid"]["overall"]["counts"] == {"win": 8, "tie": 4, "loss": 0}
    assert main(["userstudy", "analyze", "--study", str(study), "--votes", str(tmp_path / "v.json"), "--bootstrap",
                 "100", "--out", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text()) == analysis
    # a regenerated manifest over changed samples says which votes it keeps and which it archives
    shutil.rmtree(causvid)
    sample_folder(causvid, freeze=True, prompts=PROMPTS[:1] + ["cyan circle up slow on black"] + PROMPTS[2:])
    capsys.readouterr()
    assert main(prepare_args) == 0
    assert ("24 votes on 4 pairs of this manifest are kept (0 earlier ones kept as history); 12 votes on 2 pairs "
            "this manifest no longer has are archived") in capsys.readouterr().out
