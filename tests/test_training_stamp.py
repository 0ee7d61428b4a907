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


def test_fields_added_or_dropped_since_a_run_started_do_not_set_its_checkpoints_aside(smoke_spec):
    """Checkpoints of a long run (the released tiny base) outlive code changes that add a spec field at its
    default or drop one that held nothing; any real change of value still starts over."""
    from raven.training.checkpoint import identity_changes, identity_defaults, run_identity

    new = run_identity(smoke_spec, "base", {"prompts": None})
    at_default = identity_defaults(smoke_spec)
    added = sorted(k for k in at_default if k.startswith("sampler."))[0]
    section, field = added.split(".", 1)
    old = {**new, section: {k: v for k, v in new[section].items() if k != field},
           "inputs": {"prompts": None, "clips": None}}
    assert identity_changes(old, new, at_default) == []
    assert identity_changes(old, new) == [f"{added} None -> {new[section][field]}"]  # without the defaults
    changed = {**new, section: {**new[section], field: "another value"}}
    assert identity_changes(changed, new, at_default) == [f"{added} another value -> {new[section][field]}"]
    dropped = {**new, "inputs": {"prompts": None, "clips": "a stamp"}}
    assert identity_changes(dropped, new, at_default) == ["inputs.clips a stamp -> None"]
