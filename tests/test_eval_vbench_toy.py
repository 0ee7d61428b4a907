"""The toy scales' stand-ins in VBench's protocol: suite, names, static filter, scored set, through the same
wiring as VBench (`raven eval vbench-protocol --suite`, `raven eval toy --plan`), on rendered toy videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from raven.cli import main
from raven.config import write_spec
from raven.data.prompts import read_prompt_file, write_prompt_file
from raven.evaluation.samples import write_samples
from raven.evaluation.toy import benchmark
from raven.evaluation.vbench_toy import is_static, toy_suite
from raven.world.render import render

PROMPTS = ["red square up fast on black", "blue circle right fast on white", "green triangle left slow on grey"]
STILL = "yellow square still on black"  # what a sample of a flickering prompt looks like when it is static


def protocol_spec(tmp_path, smoke_spec, **counts):
    spec = smoke_spec.model_copy(update={"seed": 40, "stages": {**smoke_spec.stages, "toy_protocol": counts}})
    write_spec(spec, tmp_path / "spec.yaml")
    write_prompt_file(tmp_path / "heldout.txt", PROMPTS)
    assert main(["eval", "vbench-protocol", "--spec", str(tmp_path / "spec.yaml"), "--suite", str(tmp_path / "heldout.txt"),
                 "--out", str(tmp_path / "plan.json"), "--prompts", str(tmp_path / "protocol.txt")]) == 0
    return spec, json.loads((tmp_path / "plan.json").read_text()), read_prompt_file(tmp_path / "protocol.txt")


def test_suite_marks_the_first_prompts_flickering():
    assert [e["dimension"] for e in toy_suite(PROMPTS, 1)] == [["temporal_flickering"], ["toy_world"], ["toy_world"]]
    with pytest.raises(ValueError, match="flicker_prompts is 4.*3 prompts"):
        toy_suite(PROMPTS, 4)
    assert is_static(render(STILL, 0, 16, 16, 9)) and not is_static(render(PROMPTS[0], 0, 16, 16, 9))


def test_without_flickering_prompts_the_protocol_scores_exactly_the_held_out_samples(tmp_path, smoke_spec):
    """Tiny's setting (no flickering prompts, one sample each): same prompts, seeds and scores as before."""
    spec, plan, texts = protocol_spec(tmp_path, smoke_spec)
    assert texts == PROMPTS and [e["seed"] for e in plan] == [40, 41, 42]
    videos = np.stack([render(p, s, 16, 16, 9) for p, s in zip(PROMPTS, [40, 41, 42])])
    write_samples(tmp_path / "samples", videos, PROMPTS, [40, 41, 42], fps=8)
    assert main(["eval", "toy", "--spec", str(tmp_path / "spec.yaml"), "--samples", str(tmp_path / "samples"),
                 "--plan", str(tmp_path / "plan.json"), "--work", str(tmp_path / "work"), "--out",
                 str(tmp_path / "toy.json")]) == 0
    report = json.loads((tmp_path / "toy.json").read_text())
    direct = benchmark(videos, PROMPTS, 8)
    assert report["total"] == direct["total"] and report["per_video"] == direct["per_video"] and report["scored"] == 3
    assert (tmp_path / "work/videos" / f"{PROMPTS[1]}-0.mp4").resolve() == (tmp_path / "samples/videos/00001.mp4")


def test_static_filter_keeps_the_static_clips_of_flickering_prompts(tmp_path, smoke_spec):
    spec, plan, texts = protocol_spec(tmp_path, smoke_spec, flicker_prompts=2, flicker_samples=3, samples=1,
                                      static_filter=True)
    assert [(e["name"], e["seed"]) for e in plan][:4] == [(f"{PROMPTS[0]}-0.mp4", 40), (f"{PROMPTS[0]}-1.mp4", 41),
                                                          (f"{PROMPTS[0]}-2.mp4", 42), (f"{PROMPTS[1]}-0.mp4", 43)]
    # prompt 0: its second clip is static (a still scene); prompt 1: no static clip; prompt 2 is not flickering
    made = [STILL if i == 1 else text for i, text in enumerate(texts)]
    videos = np.stack([render(p, 40 + i, 16, 16, 9) for i, p in enumerate(made)])
    write_samples(tmp_path / "samples", videos, texts, [40 + i for i in range(len(texts))], fps=8)
    replica = spec.model_copy(update={"seed": 50})
    write_spec(replica, tmp_path / "replica.yaml")  # a replica samples the same names with its own seeds
    with pytest.raises(ValueError, match="seed 40.*seed 50"):
        main(["eval", "toy", "--spec", str(tmp_path / "replica.yaml"), "--samples", str(tmp_path / "samples"),
              "--plan", str(tmp_path / "plan.json"), "--work", str(tmp_path / "w0"), "--out", str(tmp_path / "r.json")])
    assert main(["eval", "toy", "--spec", str(tmp_path / "spec.yaml"), "--samples", str(tmp_path / "samples"),
                 "--plan", str(tmp_path / "plan.json"), "--work", str(tmp_path / "work"), "--out",
                 str(tmp_path / "toy.json")]) == 0
    report = json.loads((tmp_path / "toy.json").read_text())
    assert report["flicker_prompts_short_of_static"] == [PROMPTS[1]] and report["scored"] == 2
    assert (tmp_path / "work/scored" / f"{PROMPTS[0]}-0.mp4").resolve() == (tmp_path / "samples/videos/00001.mp4")
    assert report["per_video"] == benchmark(videos[[1, 6]], [PROMPTS[0], PROMPTS[2]], 8)["per_video"]
