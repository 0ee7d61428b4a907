"""`raven data prompts` and `raven data clips` on the smoke spec; summaries written last; clear errors."""

import json

import pytest

from raven.cli import main
from raven.config import write_spec
from raven.data.shards import ClipReader


@pytest.fixture
def spec_path(tmp_path, smoke_spec):
    path = tmp_path / "spec.yaml"
    write_spec(smoke_spec, path)
    return path


def test_prompts_then_clips(tmp_path, spec_path):
    train, heldout = tmp_path / "train.txt", tmp_path / "heldout.txt"
    assert main(["data", "prompts", "--spec", str(spec_path), "--out-train", str(train),
                 "--out-heldout", str(heldout)]) == 0
    summary = json.loads((tmp_path / "prompts_summary.json").read_text())
    assert summary["train"] == len(train.read_text().splitlines()) == 32 and summary["heldout"] == 8
    out = tmp_path / "clips"
    assert main(["data", "clips", "--spec", str(spec_path), "--prompts", str(train), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 32 and summary["skipped"] == 0 and summary["shards"] == 2
    clips = list(ClipReader(out))
    assert len(clips) == 32 and clips[0].frames.shape == (9, 16, 16, 3)


def test_bad_inputs(tmp_path, spec_path, smoke_spec, capsys):
    hostile = tmp_path / "hostile.txt"
    hostile.write_bytes(b"\x00\x01binary")
    assert main(["data", "clips", "--spec", str(spec_path), "--prompts", str(hostile), "--out", str(tmp_path / "c")]) == 2
    assert "NUL bytes" in capsys.readouterr().err
    assert not (tmp_path / "c" / "summary.json").exists()
    bad = smoke_spec.model_copy(update={"stages": {**smoke_spec.stages, "data": {"prompt_source": "vidprom"}}})
    write_spec(bad, tmp_path / "bad.yaml")
    assert main(["data", "prompts", "--spec", str(tmp_path / "bad.yaml"), "--out-train", "x", "--out-heldout", "y"]) == 2
    assert "needs vidprom_path" in capsys.readouterr().err


@pytest.mark.parametrize("scale", ["smoke", "tiny", "paper"])
def test_every_scale_has_valid_data_options(repo_root, scale):
    from raven.config import resolve_spec, stage_options
    from raven.data.options import DataOptions

    options = stage_options(resolve_spec(repo_root / "config", scale), "data", DataOptions)
    assert options.prompt_source == ("file" if scale == "paper" else "toy")  # paper: the release's prompt file
