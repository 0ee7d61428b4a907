"""`raven train dmd` end to end at smoke scale (docs/method.md §4, §7): real micro Wan student/critic, the toy
world's exact teacher, rollouts by the consistency sampler, the one training loop.

A 4-iteration run writes model/model_ema/summary; a rerun resumes from the last checkpoint without
retraining, and a run killed half-way resumes to bit-identical weights; every history mode runs a generator step; with the real causal forwards, RAVEN's generator
loss reaches the history's keys and SF's does not.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

pytest.importorskip("raven.models", reason="raven.models (causal forwards, builders) is written by the lead")
pytest.importorskip("raven.diffusion.streaming", reason="the consistency sampler is written by helper 'sampler'")

from raven.config import resolve_spec, write_spec
from raven.data.prompts import write_prompt_file
from raven.data.shards import SCHEMA, shard_path
from raven.data.video import encode_mp4
from raven.training.dmd import train_dmd
from raven.world.grammar import prompt_text, sample_prompts
from raven.world.render import render

PROMPTS = [prompt_text(p) for p in sample_prompts(4, "train", seed=0)]


def smoke_spec_file(repo_root, path, **dmd):
    overrides = {"tracking_uri": f"sqlite:///{path.parent}/mlflow.db", "stages": {"dmd": dmd}}
    spec = resolve_spec(repo_root / "config", "smoke", overrides=overrides)
    write_spec(spec, path)
    return spec


def smoke_run_files(repo_root, tmp_path, **dmd):
    """Spec, prompt file, a base model folder and an ODE-init folder whose summary names that base."""
    from raven.models import build_transformer

    spec = smoke_spec_file(repo_root, tmp_path / "spec.yaml", **dmd)
    write_prompt_file(tmp_path / "prompts.txt", PROMPTS)
    torch.manual_seed(0)
    model = build_transformer(spec)
    model.save_pretrained(tmp_path / "base" / "model_ema")
    model.save_pretrained(tmp_path / "ode_init" / "model")
    (tmp_path / "ode_init" / "summary.json").write_text(json.dumps({"init": str(tmp_path / "base" / "model_ema")}))
    return tmp_path / "spec.yaml", tmp_path / "ode_init" / "model", tmp_path / "prompts.txt"


def clip_shards(folder, spec_video):
    """Toy clips of the prompts plus one corrupt clip (truncated mp4), which must be skipped and counted."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = [encode_mp4(render(p, i, spec_video["height"], spec_video["width"], spec_video["frames"]), 8)
              for i, p in enumerate(PROMPTS)]
    rows = [{"key": f"c{i}", "caption": p, "video": v, "fps": 8.0, "frames": spec_video["frames"],
             "height": spec_video["height"], "width": spec_video["width"]} for i, (p, v) in enumerate(zip(PROMPTS, videos))]
    rows.append({**rows[0], "key": "bad", "video": videos[0][: len(videos[0]) // 3]})
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), shard_path(folder, 0))
    return folder


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(next(folder.glob("*.safetensors"))))


def test_smoke_run_writes_models_resumes_without_retraining_and_bit_identically(repo_root, tmp_path):
    spec, init, prompts = smoke_run_files(repo_root, tmp_path)
    out = tmp_path / "dmd"
    summary = train_dmd(spec, init, prompts, out)
    assert summary["iterations"] == 4 and summary["resumed_from"] == 0 and summary["history_mode"] == "raven"
    assert summary["critic_init"] == str(tmp_path / "base" / "model_ema") and summary["teacher"] == "toy-exact"
    assert summary["skipped_steps"] == {"critic": 0, "student": 0}
    assert {"loss/critic", "loss/student", "grad_norm/student"} <= set(summary["last_metrics"])
    assert json.loads((out / "summary.json").read_text())["iterations"] == 4
    trained, ema, start = weights(out / "model"), weights(out / "model_ema"), weights(init)
    assert any(not torch.equal(trained[k], start[k]) for k in start)
    assert any(not torch.equal(ema[k], trained[k]) for k in trained)

    again = train_dmd(spec, init, prompts, out)
    assert again["resumed_from"] == 4 and again["iterations"] == 4 and again["last_metrics"] == {}
    assert all(torch.equal(weights(out / "model")[k], trained[k]) for k in trained)

    # killed after 2 iterations (a shorter spec stands in for the kill), then rerun: bit-identical weights
    short = tmp_path / "short.yaml"
    smoke_spec_file(repo_root, short, iterations=2)
    train_dmd(short, init, prompts, tmp_path / "resumed")
    assert train_dmd(spec, init, prompts, tmp_path / "resumed")["resumed_from"] == 2
    assert all(torch.equal(weights(tmp_path / "resumed" / "model")[k], trained[k]) for k in trained)
    assert all(torch.equal(weights(tmp_path / "resumed" / "model_ema")[k], ema[k]) for k in ema)


@pytest.mark.parametrize("mode", ["raven", "sf", "df", "tf", "df_self_rollout"])
def test_every_history_mode_takes_a_generator_step(repo_root, tmp_path, mode):
    spec, init, prompts = smoke_run_files(repo_root, tmp_path, history_mode=mode, iterations=2, checkpoint_every=2)
    video = resolve_spec(repo_root / "config", "smoke").video.model_dump()
    clips = clip_shards(tmp_path / "clips", video) if mode in ("tf", "df") else None
    summary = train_dmd(spec, init, prompts, tmp_path / "out", clips=clips)
    metrics = summary["last_metrics"]
    assert summary["history_mode"] == mode and summary["skipped_steps"]["student"] == 0
    assert torch.isfinite(torch.tensor(metrics["loss/student"])) and metrics["grad_norm/student"] > 0
    assert summary["skipped_clips"] == (1 if clips else 0)


def test_reward_weighted_dmd_runs_with_a_registry_reward(repo_root, tmp_path):
    reward = {"reward": "raft_RAFT", "beta": 1.0}
    spec, init, prompts = smoke_run_files(repo_root, tmp_path, history_mode="sf", reward_weighting=reward,
                                          iterations=2, checkpoint_every=2)
    summary = train_dmd(spec, init, prompts, tmp_path / "out")
    assert summary["skipped_steps"]["student"] == 0 and summary["last_metrics"]["grad_norm/student"] > 0


def test_a_batch_in_slices_steps_once_per_iteration(repo_root, tmp_path):
    """Batch 2 in slices of 1 (the release's ablations at paper scale: 8 in slices of 1), real clips sliced too."""
    spec, init, prompts = smoke_run_files(repo_root, tmp_path, history_mode="tf", batch_size=2, micro_batch_size=1,
                                          iterations=2, checkpoint_every=2)
    video = resolve_spec(repo_root / "config", "smoke").video.model_dump()
    summary = train_dmd(spec, init, prompts, tmp_path / "out", clips=clip_shards(tmp_path / "clips", video))
    metrics = summary["last_metrics"]
    assert summary["skipped_steps"] == {"critic": 0, "student": 0}
    assert torch.isfinite(torch.tensor(metrics["loss/critic"])) and metrics["grad_norm/student"] > 0
