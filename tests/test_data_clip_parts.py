"""Clip preparation split over workers (the ranks of the launched `raven data clips` job): each writes
every `parts`-th shard and its part summary; the merged summary and shards equal one worker's."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from raven.config import stage_options
from raven.data.options import DataOptions
from raven.data.prompts import write_prompt_file
from raven.data.stage import build_clips, clips_summary
from raven.world.grammar import prompt_text, sample_prompts


def test_two_workers_write_the_shards_of_one(tmp_path, smoke_spec):
    options = stage_options(smoke_spec, "data", DataOptions).model_copy(update={"shard_size": 3, "clips_per_prompt": 1})
    prompts = tmp_path / "train.txt"
    write_prompt_file(prompts, [prompt_text(p) for p in sample_prompts(7, "train", 0, 0.0)])
    one = build_clips(smoke_spec, options, prompts, tmp_path / "one")
    build_clips(smoke_spec, options, prompts, tmp_path / "two", part=1, parts=2)
    with pytest.raises(ValueError, match="part-0.json"):
        clips_summary(tmp_path / "two", 2)  # worker 0 has not finished
    assert [p.name for p in (tmp_path / "two").glob("shard-*.parquet")] == ["shard-00001.parquet"]
    build_clips(smoke_spec, options, prompts, tmp_path / "two", part=0, parts=2)
    two = clips_summary(tmp_path / "two", 2)
    assert {k: v for k, v in two.items() if k != "workers"} == {k: v for k, v in one.items() if k != "workers"}
    assert one["clips"] == 7 and one["shards"] == 3 and two["workers"] == 2
    for shard in sorted((tmp_path / "one").glob("shard-*.parquet")):
        assert pq.read_table(shard).equals(pq.read_table(tmp_path / "two" / shard.name))
