"""`raven sample` end to end on a tiny random student: files, exact pixels, seeds, rerun skip, rolling mode."""

import json

import numpy as np
import pytest
import torch

from raven.cli import main
from raven.config import write_spec
from raven.data.prompts import write_prompt_file
from raven.data.video import read_mp4

PROMPTS = ["red circle left fast on black", "blue square still on white"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, repo_root):
    from raven.config import resolve_spec
    from raven.models import build_transformer

    root = tmp_path_factory.mktemp("sample")
    spec = resolve_spec(repo_root / "config", "smoke")
    write_spec(spec, root / "spec.yaml")
    write_prompt_file(root / "prompts.txt", PROMPTS)
    torch.manual_seed(0)
    build_transformer(spec).save_pretrained(root / "model")
    return spec, root


def sample(root, out, *extra):
    return main(["sample", "--spec", str(root / "spec.yaml"), "--model", str(root / "model"),
                 "--prompts", str(root / "prompts.txt"), "--out", str(out), *extra])


def test_sample_writes_videos_pixels_listing_and_summary_last(setup, capsys):
    from raven.diffusion.streaming import generate
    from raven.models import build_codec, build_text_encoder, causal_forwards, load_transformer
    from raven.world.render import to_uint8

    spec, root = setup
    out = root / "out"
    assert sample(root, out, "--seeds-per-prompt", "2", "--batch-size", "3") == 0
    samples = json.loads((out / "samples.json").read_text())
    assert [(s["index"], s["prompt"], s["seed"]) for s in samples] == [
        (0, PROMPTS[0], spec.seed), (1, PROMPTS[0], spec.seed + 1), (2, PROMPTS[1], spec.seed + 2),
        (3, PROMPTS[1], spec.seed + 3)]
    videos = np.load(out / "videos.npy")
    assert videos.dtype == np.uint8 and videos.shape == (4, 9, 16, 16, 3)
    # the pixels are the decoded latents of the same seeds, whatever the batching
    forwards = causal_forwards(load_transformer(root / "model", spec).eval(), spec)
    with torch.no_grad():
        latents = generate(forwards, build_text_encoder(spec)([PROMPTS[1]]), [spec.seed + 3],
                           timesteps=[1000, 938, 833, 625]).latents
    assert np.abs(to_uint8(build_codec(spec).decode(latents).numpy())[0].astype(int) - videos[3]).max() <= 1
    frames, fps = read_mp4(out / samples[0]["file"])
    assert fps == spec.video.fps and frames.shape == videos[0].shape
    summary = json.loads((out / "summary.json").read_text())
    assert summary["videos"] == 4 and summary["timesteps"] == [1000, 938, 833, 625] and summary["generation_fps"] > 0
    assert summary["fps"] == spec.video.fps  # the videos' frame rate, which eval and the user study read
    assert len(summary["latency_per_chunk_s"]) == 3 and summary["time_to_first_chunk_s"] > 0
    # a rerun with the summary present does nothing
    stamp = (out / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert sample(root, out) == 0
    assert "nothing to do" in capsys.readouterr().out and (out / "summary.json").stat().st_mtime_ns == stamp


def test_rolling_mode_and_longer_videos(setup):
    from raven.config.spec import SamplerSpec

    spec, root = setup
    rolling = spec.model_copy(update={"sampler": SamplerSpec(kind="rolling", num_steps=5, rolling_window=5)})
    write_spec(rolling, root / "rolling.yaml")
    out = root / "rolling"
    assert main(["sample", "--spec", str(root / "rolling.yaml"), "--model", str(root / "model"), "--prompts",
                 str(root / "prompts.txt"), "--out", str(out), "--mode", "rolling", "--chunks", "5"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rolling_window"] == 5 and summary["chunks"] == 5
    assert np.load(out / "videos.npy").shape == (2, 15, 16, 16, 3)


def test_bad_arguments_are_clear(setup):
    _, root = setup
    with pytest.raises(ValueError, match="--chunks must be positive"):
        sample(root, root / "bad", "--chunks", "0")
    assert sample(root, root / "missing", "--model", str(root / "nowhere")) == 2


def test_a_released_base_plus_lora_samples_as_its_merged_model(setup):
    """LongLive's layout (docs/method.md §9): `--model base.pt --model-key generator_ema --lora lora.pt` samples exactly
    what the merged model sampled from a folder does."""
    import copy

    from test_models_checkpoints import original_wan_keys, wrapped_original
    from test_models_lora import LONGLIVE_TARGETS, with_trained_lora

    from raven.models import load_transformer
    from raven.models.lora import lora_state_dict, merge_lora

    spec, root = setup
    ema = load_transformer(root / "model", spec)
    torch.save({"generator": {k: torch.zeros_like(v) for k, v in wrapped_original(ema).items()},
                "generator_ema": wrapped_original(ema)}, root / "longlive_base.pt")
    adapted = with_trained_lora(copy.deepcopy(ema), rank=4, alpha=4, targets=LONGLIVE_TARGETS)
    adapter = {f"base_model.model.{k}": v for k, v in original_wan_keys(lora_state_dict(adapted)).items()}
    torch.save({"generator_lora": adapter}, root / "lora.pt")
    merge_lora(adapted).save_pretrained(root / "merged")
    assert main(["sample", "--spec", str(root / "spec.yaml"), "--model", str(root / "longlive_base.pt"),
                 "--model-key", "generator_ema", "--lora", str(root / "lora.pt"), "--prompts", str(root / "prompts.txt"),
                 "--out", str(root / "released")]) == 0
    assert main(["sample", "--spec", str(root / "spec.yaml"), "--model", str(root / "merged"),
                 "--prompts", str(root / "prompts.txt"), "--out", str(root / "from_merged")]) == 0
    assert main(["sample", "--spec", str(root / "spec.yaml"), "--model", str(root / "longlive_base.pt"),
                 "--model-key", "generator_ema", "--prompts", str(root / "prompts.txt"), "--out", str(root / "base")]) == 0
    released, merged = np.load(root / "released/videos.npy"), np.load(root / "from_merged/videos.npy")
    assert np.abs(released.astype(int) - merged).max() <= 1
    assert np.abs(released.astype(int) - np.load(root / "base/videos.npy")).max() > 8  # the LoRA matters
    assert json.loads((root / "released/summary.json").read_text())["model"] == str(root / "longlive_base.pt")
