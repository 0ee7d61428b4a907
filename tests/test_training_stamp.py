"""Input stamps decide whether checkpoints may be resumed: by content, so that committed checkpoints
resume in a fresh clone (new mtimes), and any change of content starts over."""

import os
import shutil

from raven.training import checkpoint
from raven.training.checkpoint import input_stamp


def test_a_touched_or_copied_input_keeps_its_stamp(tmp_path):
    folder = tmp_path / "base"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(b"\x01" * 100)
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "iter-1").write_text("ignored")
    stamp = input_stamp(folder)
    os.utime(folder / "model" / "weights.bin", (1, 1))
    assert input_stamp(folder) == stamp
    shutil.copytree(folder, tmp_path / "clone" / "base")  # a clone elsewhere: same relative names
    assert input_stamp(tmp_path / "clone" / "base") == stamp
    (folder / "checkpoints" / "iter-2").write_text("own checkpoints never count")
    assert input_stamp(folder) == stamp


def test_new_content_of_the_same_size_changes_the_stamp(tmp_path, monkeypatch):
    prompts = tmp_path / "train.txt"
    prompts.write_text("red circle\n")
    stamp = input_stamp(prompts)
    prompts.write_text("red square\n"[:11])
    assert input_stamp(prompts) != stamp
    # large files are read at head and tail only
    monkeypatch.setattr(checkpoint, "STAMP_FULL_BYTES", 64)
    monkeypatch.setattr(checkpoint, "STAMP_EDGE_BYTES", 8)
    big = tmp_path / "shard.bin"
    big.write_bytes(bytes(range(200)))
    stamp = input_stamp(big)
    big.write_bytes(bytes(range(199)) + b"\xff")
    assert input_stamp(big) != stamp
    assert input_stamp(None) is None
