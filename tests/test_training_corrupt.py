"""Corrupt files never crash every requeue: resume falls back to the newest intact checkpoint, naming the bad
file, and unreadable checkpoint parts name their file."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file

from loop_fixtures import FlowStep, run
from raven.training.checkpoint import checkpoint_problem, latest_checkpoint, load_part


def truncate(path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_resume_skips_a_truncated_newest_checkpoint_and_names_the_file(tmp_path, caplog):
    whole = tmp_path / "whole"
    run(whole, 6, FlowStep())
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "killed", 6, FlowStep(fail_at=5))
    root = tmp_path / "killed" / "checkpoints"
    bad = root / "iter-00000004" / "model-student.safetensors"
    truncate(bad)
    assert str(bad) in checkpoint_problem(bad.parent)

    with caplog.at_level(logging.WARNING):
        resumed = run(tmp_path / "killed", 6, FlowStep())
    assert resumed["resumed_from"] == 2
    assert str(bad) in caplog.text
    assert (root / "corrupt-iter-00000004" / "model-student.safetensors").is_file()  # kept for inspection
    assert latest_checkpoint(root).name == "iter-00000006"
    for folder in ("model", "model_ema"):  # resuming from the older checkpoint is still bit-identical
        a = load_file(str(whole / folder / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "killed" / folder / "diffusion_pytorch_model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unreadable_part_names_its_file(tmp_path):
    run(tmp_path, 2, FlowStep())
    folder = latest_checkpoint(tmp_path / "checkpoints")
    truncate(folder / "loop.safetensors", keep=3)
    (folder / "model-critic.json").write_text("{not json")
    assert checkpoint_problem(folder).startswith(str(folder / "loop.safetensors"))
    with pytest.raises(ValueError, match=r"part 'loop' is unreadable \(.*header too small"):
        load_part(folder, "loop")
    with pytest.raises(ValueError, match="part 'model-critic' is unreadable"):
        load_part(folder, "model-critic")
