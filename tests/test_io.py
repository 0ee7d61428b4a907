"""Atomic writes: the user's umask decides the mode; a failing writer leaves the old file and no temp."""

from __future__ import annotations

import os
import stat

import pytest

from raven.io import atomic_path, atomic_write_json, atomic_write_text, save_tensors


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_writes_keep_the_users_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        atomic_write_text(tmp_path / "sub" / "b.txt", "hi")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "sub" / "b.txt").stat().st_mode) == mode


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_weights_keep_the_users_umask(smoke_spec, tmp_path, umask, mode):
    """safetensors writes 0600 whatever the umask; tensors and exported models still get the umask's mode."""
    import torch
    from safetensors.torch import load_file

    from raven.models.transformer import build_transformer
    from raven.training.loop import export_pretrained

    model = build_transformer(smoke_spec)
    old = os.umask(umask)
    try:
        save_tensors({"a": torch.arange(3.0)}, tmp_path / "t.safetensors", metadata={"format": "pt"})
        export_pretrained(model, model.state_dict(), tmp_path / "model")
    finally:
        os.umask(old)
    assert torch.equal(load_file(tmp_path / "t.safetensors")["a"], torch.arange(3.0))
    files = [tmp_path / "t.safetensors", *sorted((tmp_path / "model").iterdir())]
    assert len(files) == 3  # the tensors, config.json, diffusion_pytorch_model.safetensors
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: mode for f in files}
