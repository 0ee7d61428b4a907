"""The text-embedding cache (raven.data.text_cache): prompts encoded once by parts (ranks), stored trimmed
to their token length, read back per batch equal to the encoder's output."""

from __future__ import annotations

import json

import pytest
import torch

from raven.cli import main
from raven.config import resolve_spec, write_spec
from raven.data.text_cache import INDEX, TextCache, merge_parts, write_part
from raven.models import build_text_encoder

PROMPTS = ["red circle left fast on black", "blue square still on white", "", "green triangle up slow on white"]


def test_two_parts_merge_into_a_cache_that_reads_back_the_encoder_output(tmp_path):
    spec = resolve_spec("config", "tiny")
    encoder = build_text_encoder(spec)
    for part in (0, 1):  # two ranks, each its share
        write_part(tmp_path, PROMPTS, encoder, part=part, parts=2, batch=1, shard_prompts=1, dtype=torch.float32)
    merge_parts(tmp_path, 2, {"empty": ""})
    cache = TextCache(tmp_path)
    assert sorted(cache.prompts) == sorted(PROMPTS)
    batch = ["green triangle up slow on white", "red circle left fast on black"]
    assert torch.equal(cache(batch), encoder(batch))
    assert torch.equal(cache.negative("empty"), encoder([""]))
    lengths = encoder.tokenizer(PROMPTS, return_tensors="pt", padding=True).attention_mask.sum(1).tolist()
    assert [cache.tensor(prompt).shape[0] for prompt in PROMPTS] == lengths  # trimmed to the tokens
    assert len(list(tmp_path.glob("part-*.safetensors"))) == len(PROMPTS)  # one prompt per shard here


def test_bf16_storage_and_clear_errors(tmp_path):
    encoder = build_text_encoder(resolve_spec("config", "tiny"))
    write_part(tmp_path, PROMPTS, encoder)
    with pytest.raises(FileNotFoundError, match="index.json is written last"):
        TextCache(tmp_path)
    with pytest.raises(ValueError, match="were not encoded"):
        merge_parts(tmp_path, 1, {"teacher": "a negative prompt never encoded"})
    with pytest.raises(FileNotFoundError, match="part-1.json"):
        merge_parts(tmp_path, 2, {})
    merge_parts(tmp_path, 1, {"empty": ""})
    cache = TextCache(tmp_path)
    assert cache.tensor(PROMPTS[0]).dtype == torch.bfloat16
    torch.testing.assert_close(cache(PROMPTS[:1]), encoder(PROMPTS[:1]), rtol=1e-2, atol=1e-2)
    with pytest.raises(KeyError, match="not in the text cache"):
        cache(["purple hexagon"])


def test_batches_land_on_the_placed_device(tmp_path):
    """ModelParts.place sets the cache's device (a GPU at paper scale; `meta` here, so a forgotten move fails)."""
    from raven.training.base import ModelParts
    from raven.training.distributed import World

    spec = resolve_spec("config", "tiny")
    write_part(tmp_path, PROMPTS, build_text_encoder(spec))
    merge_parts(tmp_path, 1, {"empty": ""})
    parts = ModelParts.build(spec, tmp_path).place(World(device=torch.device("meta")))
    assert parts.encode_text(PROMPTS[:2]).device.type == "meta"
    assert not hasattr(parts.encode_text, "model")  # no text encoder is loaded beside the cache


def test_cli_caches_prompt_files_empty_and_negative_prompts(tmp_path):
    from raven.training.teachers import NEGATIVE_PROMPTS

    spec, prompts = tmp_path / "spec.yaml", tmp_path / "train.txt"
    write_spec(resolve_spec("config", "tiny"), spec)
    prompts.write_text("\n".join(PROMPTS[:2]) + "\n")
    assert main(["data", "text-cache", "--spec", str(spec), "--prompts", str(prompts), "--out", str(tmp_path / "c")]) == 0
    index = json.loads((tmp_path / "c" / INDEX).read_text())
    assert set(index["negatives"]) == {"empty", *NEGATIVE_PROMPTS}
    assert set(PROMPTS[:2]) | {""} | set(NEGATIVE_PROMPTS.values()) == set(index["entries"])
    assert index["dtype"] == "float32"  # bf16 on a GPU


def test_a_trainer_reading_the_cache_trains_exactly_as_one_encoding(tmp_path):
    """The smoke base stage for 2 iterations, once encoding its prompts and once reading an fp32 text cache
    (its encoder never loaded): the exported weights are equal."""
    from safetensors.torch import load_file

    from raven.data.prompts import write_prompt_file
    from raven.training.base import train_base

    spec_path, prompts = tmp_path / "base.yaml", tmp_path / "prompts.txt"
    spec = resolve_spec("config", "smoke", None, {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
                                                  "stages": {"base": {"iterations": 2, "checkpoint_every": 2}}})
    write_spec(spec, spec_path)
    write_prompt_file(prompts, PROMPTS[:2])
    write_part(tmp_path / "cache", ["", *PROMPTS], build_text_encoder(spec), dtype=torch.float32)
    merge_parts(tmp_path / "cache", 1, {"empty": ""})
    train_base(spec_path, prompts=prompts, out=tmp_path / "encoded")
    train_base(spec_path, prompts=prompts, out=tmp_path / "cached", text_cache=tmp_path / "cache")
    weights = [load_file(next((tmp_path / run / "model").glob("*.safetensors"))) for run in ("encoded", "cached")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
