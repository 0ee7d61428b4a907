"""`raven preflight`: the memory model against measured CPU peaks, exact parameter counts, and the path
checks at paper scale on a machine without the weights."""

from __future__ import annotations

import json

import pytest
import torch

from raven.cli import main
from raven.config import resolve_spec
from raven.preflight_memory import Transformer, training_activations, umt5_params
from raven.preflight_stages import run_preflight, student_of


def small_spec(width: int, ffn: int, layers: int, heads: int):
    return resolve_spec("config", "tiny", None, {"transformer": {
        "num_layers": layers, "num_attention_heads": heads, "attention_head_dim": width // heads, "ffn_dim": ffn}})


def test_parameter_counts_match_the_built_models():
    from transformers import UMT5Config, UMT5EncoderModel

    from raven.models.transformer import build_transformer

    spec = small_spec(96, 160, 3, 4)
    built = build_transformer(spec)
    assert student_of(spec).params == sum(p.numel() for p in built.parameters())
    config = UMT5Config(vocab_size=50, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                        feed_forward_proj="gated-gelu")
    assert umt5_params(32, 48, 2, 4, 8, 50) == sum(p.numel() for p in UMT5EncoderModel(config).parameters())


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("dims", [(96, 192, 3, 2, 6), (160, 320, 2, 4, 4)])
def test_activation_model_matches_measured_cpu_peaks(dims, checkpointing):
    """Dims outside the fit: forward + backward of the project's transformer with per-token timesteps, fp32,
    peak by torch's MemTracker; the estimate (weights + gradients + activations) is within 15%."""
    from torch.distributed._tools.mem_tracker import MemTracker

    from raven.models.transformer import build_transformer

    width, ffn, layers, heads, frames = dims
    spec = small_spec(width, ffn, layers, heads)
    torch.manual_seed(0)
    model = build_transformer(spec)
    if checkpointing:
        model.enable_gradient_checkpointing()
    channels, _, height, side = spec.latent_shape
    x = torch.randn(1, channels, frames, 16, 16)
    tokens = frames * 16 * 16 // 4
    text = torch.randn(1, 8, spec.text_encoder.d_model)
    for parameter in model.parameters():  # gradients persist between steps (zero_grad keeps them), as the model has them
        parameter.grad = torch.zeros_like(parameter)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        out = model(x, torch.full((1, tokens), 500), text, return_dict=False)[0]
        out.pow(2).mean().backward()
    measured = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"] - buffers
    estimate = 8 * params + training_activations(student_of(spec), tokens, 1, checkpointing, compute_bytes=4)
    assert 0.85 < estimate / measured < 1.15, (estimate, measured)


def test_paper_preflight_without_weights_lists_every_missing_path(tmp_path, capsys):
    out = tmp_path / "preflight.json"
    assert main(["preflight", "--scale", "paper", "--out", str(out)]) == 1
    errors = capsys.readouterr().err
    spec = resolve_spec("config", "paper")
    rewards = spec.stages["cmgrpo"]["rewards"]
    for key, path in [("weights.teacher", spec.weights.teacher), ("weights.base", spec.weights.base),
                      ("weights.causal_init", spec.weights.causal_init), ("codec.path", spec.codec.path),
                      ("text_encoder.path", spec.text_encoder.path),
                      ("stages.cmgrpo.rewards.raft", rewards["raft"]),
                      ("stages.unified_reward.model", spec.stages["unified_reward"]["model"])]:
        assert f"{key} = {path}: missing" in errors
    report = json.loads(out.read_text())
    kinds = {"ode_init", "dmd_raven", "dmd_sf", "dmd_df", "dmd_tf", "dmd_df_self_rollout", "cmgrpo", "flow_grpo",
             "sample", "vbench", "unified_reward", "base"}
    assert kinds <= set(report["stages"])
    assert all(stage["gpu_gb"] == 80 and stage["peak_gb_per_gpu"] > 0 for stage in report["stages"].values())


def test_slurm_dry_run_plans_the_preflight_first_and_prints_its_warnings(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["snakemake", "--profile", "slurm", "-n", "--nolock", "--config", f"results_dir={tmp_path}",
                             "--", f"{tmp_path}/paper/data/prompts/train.txt"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    spec = resolve_spec("config", "paper")
    assert f"raven preflight: warning: missing or malformed: weights.teacher = {spec.weights.teacher}: missing" in output
    assert "no memory estimate yet" in output
    assert "raven preflight --scale paper" in output and f"--out {tmp_path}/paper/preflight.json" in output
