"""Released inits: a scale's weights.causal_init / weights.bidirectional_init replace the matching ODE init's
trajectories and regression (paper: Causal Forcing; tiny: data/weights/tiny), and `from_scratch` trains both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from raven.config import deep_merge, write_spec
from raven.training.ode_init import released_init, train_ode_init

REPO = Path(__file__).resolve().parents[1]


def with_init(spec, mode, **weights):
    stages = deep_merge(spec.stages, {"ode_pairs": {"mode": mode}})
    return spec.model_copy(update={"stages": stages, "weights": spec.weights.model_copy(update=weights)})


def test_each_init_takes_its_own_released_weights(smoke_spec, tmp_path):
    causal, bidirectional = tmp_path / "causal", tmp_path / "bidirectional"
    assert released_init(with_init(smoke_spec, "chunkwise", causal_init=causal, bidirectional_init=bidirectional)) \
        == causal
    assert released_init(with_init(smoke_spec, "bidirectional", causal_init=causal)) is None
    assert released_init(with_init(smoke_spec, "bidirectional", bidirectional_init=bidirectional)) == bidirectional


def test_a_released_bidirectional_init_is_exported_not_trained(smoke_spec, tmp_path):
    from raven.training.base import ModelParts

    from raven.models.transformer import build_transformer

    parts = ModelParts.build(smoke_spec)
    released = build_transformer(smoke_spec)
    released.save_pretrained(tmp_path / "released", safe_serialization=True)
    spec = with_init(smoke_spec, "bidirectional", bidirectional_init=tmp_path / "released")
    write_spec(spec, tmp_path / "spec.yaml")
    summary = train_ode_init(tmp_path / "spec.yaml", pairs=tmp_path / "no-pairs", init=tmp_path / "no-base",
                             out=tmp_path / "out")
    assert summary == {"stage": "ode_init", "source": str(tmp_path / "released"), "trained": False}
    exported = parts.load(tmp_path / "out" / "model_ema")
    for name, value in released.state_dict().items():
        assert torch.equal(exported.state_dict()[name], value), name


def test_from_scratch_clears_the_released_weights_in_every_spec():
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    plan = subprocess.run([snakemake, "--profile", "local", "-n", "-p", "results/tiny/specs/_ode_causal.yaml",
                           "--config", "from_scratch=true"], cwd=REPO, check=True, capture_output=True,
                          text=True).stdout
    assert """--set weights='{"base": null, "causal_init": null, "bidirectional_init": null}'""" in plan


def test_bidirectional_pairs_from_a_given_base_folder_equal_those_from_a_trained_base(smoke_spec, tmp_path):
    """`raven ode pairs --teacher` takes the base as weights.base gives it (a model folder, as the released
    tiny base) as well as a base stage's output folder (summary.json + model_ema): the same trajectories."""
    import json

    from raven.data.prompts import write_prompt_file
    from raven.models.transformer import build_transformer
    from raven.training.ode_init import OdePairs, ode_pairs_stage

    spec = with_init(smoke_spec, "bidirectional")
    spec = spec.model_copy(update={"stages": deep_merge(spec.stages, {"ode_pairs": {"samples_per_prompt": 1,
                                                                                     "euler_steps": 2}})})
    write_spec(spec, tmp_path / "spec.yaml")
    write_prompt_file(tmp_path / "prompts.txt", ["a red circle moves left", "two blue squares move up"])
    torch.manual_seed(0)
    build_transformer(spec).save_pretrained(tmp_path / "given", safe_serialization=True)
    stage = tmp_path / "stage"
    build_transformer(spec).from_pretrained(tmp_path / "given").save_pretrained(stage / "model_ema")
    (stage / "summary.json").write_text(json.dumps({"stage": "base"}))
    given = ode_pairs_stage(tmp_path / "spec.yaml", tmp_path / "given", tmp_path / "prompts.txt", tmp_path / "a")
    trained = ode_pairs_stage(tmp_path / "spec.yaml", stage, tmp_path / "prompts.txt", tmp_path / "b")
    assert given["teacher"] == str(tmp_path / "given") and trained["teacher"] == str(stage / "model_ema")
    a, b = OdePairs.read(tmp_path / "a"), OdePairs.read(tmp_path / "b")
    assert a.prompts == b.prompts and len(a.prompts) == 2
    assert torch.equal(a.states, b.states) and torch.equal(a.x0, b.x0) and a.x0.abs().sum() > 0
