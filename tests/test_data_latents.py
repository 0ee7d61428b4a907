"""Clip latents encoded once by parts (raven.data.latents) and streamed: what training draws equals encoding
the drawn clips, the trainers' loader builds them when absent, and geometry errors name the clip."""

from __future__ import annotations

import pytest
import torch

from raven.cli import main
from raven.config import stage_options, write_spec
from raven.data.latents import LatentClips, merge_latent_parts, write_latent_part
from raven.data.options import DataOptions
from raven.data.prompts import write_prompt_file
from raven.data.shards import ClipReader
from raven.data.stage import build_clips
from raven.models import build_codec
from raven.training.base import load_clip_batches
from raven.world.grammar import prompt_text, sample_prompts


@pytest.fixture
def clips(tmp_path, smoke_spec):
    options = stage_options(smoke_spec, "data", DataOptions).model_copy(update={"shard_size": 2, "clips_per_prompt": 1})
    write_prompt_file(tmp_path / "train.txt", [prompt_text(p) for p in sample_prompts(5, "train", 0, 0.0)])
    build_clips(smoke_spec, options, tmp_path / "train.txt", tmp_path / "clips")
    return tmp_path / "clips"


def test_parts_encode_every_clip_and_draws_read_them_back(clips, smoke_spec, tmp_path):
    codec, video = build_codec(smoke_spec), smoke_spec.video
    for part in (0, 1):
        write_latent_part(clips, tmp_path / "latents", codec.encode, (video.frames, video.height, video.width),
                          part=part, parts=2, batch=2)
    with pytest.raises(FileNotFoundError, match="written last"):
        LatentClips(tmp_path / "latents")
    merge_latent_parts(tmp_path / "latents", 2)
    latents = LatentClips(tmp_path / "latents")
    every = {clip.caption: clip for clip in ClipReader(clips)}
    assert sorted(latents.captions) == sorted(every)
    drawn, captions = latents.draw(3, torch.Generator().manual_seed(0))
    pixels = torch.stack([torch.from_numpy(every[c].frames).permute(3, 0, 1, 2) for c in captions]).float() / 127.5 - 1
    assert torch.equal(drawn, codec.encode(pixels))
    again, _ = latents.draw(3, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)


def test_loader_encodes_once_then_streams(clips, smoke_spec):
    codec = build_codec(smoke_spec)
    streamed, skipped = load_clip_batches(clips, smoke_spec, codec.encode)
    assert (clips / "latents" / "index.json").is_file() and skipped == 0 and len(streamed.captions) == 5

    def refuse(pixels):
        raise AssertionError("encoded again")

    again, _ = load_clip_batches(clips, smoke_spec, refuse)
    assert again.captions == streamed.captions


def test_wrong_geometry_names_the_clip(clips, smoke_spec, tmp_path):
    codec = build_codec(smoke_spec)
    with pytest.raises(ValueError, match="has frames of shape"):
        write_latent_part(clips, tmp_path / "bad", codec.encode, (99, 16, 16))


def test_cli_writes_the_index(clips, smoke_spec, tmp_path):
    write_spec(smoke_spec, tmp_path / "spec.yaml")
    assert main(["data", "clip-latents", "--spec", str(tmp_path / "spec.yaml"), "--clips", str(clips)]) == 0
    assert len(LatentClips(clips / "latents").captions) == 5
