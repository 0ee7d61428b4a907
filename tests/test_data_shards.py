"""Parquet clip shards: write, read back, resume, and skip (and count) corrupt clips without crashing."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raven.data.shards import SCHEMA, ClipReader, shard_path, write_shards
from raven.data.toy import render_frames, toy_clip
from raven.data.video import encode_mp4
from raven.world.render import render

PROMPTS = ["red circle right slow on black", "green square still on white", "cyan triangle up fast on grey"]


def _clip(i):
    return toy_clip(PROMPTS[i % 3], i, 16, 16, 9, 8, render_fps=4)


def test_toy_clips_round_trip_through_shards(tmp_path):
    paths = write_shards(tmp_path, 5, _clip, shard_size=2)
    assert [p.name for p in paths] == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    clips = list(ClipReader(tmp_path))
    assert [c.caption for c in clips] == [PROMPTS[i % 3] for i in range(5)]
    assert all(c.frames.shape == (9, 16, 16, 3) and c.fps == 8 for c in clips)
    np.testing.assert_array_equal(clips[1].frames[::2], render(PROMPTS[1], 1, 16, 16, 5, fps=4))
    assert render_frames(9, 8, 4) == 5
    with pytest.raises(ValueError, match="whole frames"):
        render_frames(9, 8, 2.5)


def test_rerun_keeps_complete_shards(tmp_path):
    write_shards(tmp_path, 4, _clip, shard_size=2)
    before = shard_path(tmp_path, 0).stat().st_mtime_ns
    calls = []
    write_shards(tmp_path, 4, lambda i: calls.append(i) or _clip(i), shard_size=2)
    assert calls == [] and shard_path(tmp_path, 0).stat().st_mtime_ns == before


def test_reader_skips_and_counts_corrupt_clips_and_shards(tmp_path):
    good = encode_mp4(render(PROMPTS[0], 0, 16, 16, 9), 8)
    rows = [{"key": k, "caption": PROMPTS[0], "video": v, "fps": 8.0, "frames": 9, "height": 16, "width": 16}
            for k, v in [("a", good), ("bad", good[: len(good) // 3]), ("c", good)]]
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), shard_path(tmp_path, 0))
    shard_path(tmp_path, 1).write_bytes(b"PAR1 this is not parquet")
    reader = ClipReader(tmp_path)
    assert [c.key for c in reader] == ["a", "c"]
    assert reader.skipped == 1 and reader.skipped_shards == 1
    assert any(":bad:" in p for p in reader.problems) and any("shard-00001" in p for p in reader.problems)


def test_reader_errors_on_missing_shards(tmp_path):
    with pytest.raises(FileNotFoundError, match="no shard-"):
        ClipReader(tmp_path)
