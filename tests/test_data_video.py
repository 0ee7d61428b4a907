"""mp4 I/O: lossless round trip, clear errors on corrupt or truncated files."""

import numpy as np
import pytest

from raven.data.video import VideoError, decode_mp4, encode_mp4, read_mp4, write_mp4
from raven.world.render import render


def test_mp4_round_trip_is_lossless(tmp_path):
    video = render("magenta triangle up-left fast on white", 3, 16, 16, 9)
    write_mp4(tmp_path / "clip.mp4", video, fps=8)
    frames, fps = read_mp4(tmp_path / "clip.mp4")
    assert fps == 8 and np.array_equal(frames, video)


def test_truncated_and_corrupt_files_name_the_file(tmp_path):
    data = encode_mp4(render("red circle still on black", 0, 16, 16, 9), fps=8)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_mp4(truncated)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError, match="garbage.mp4: corrupt or truncated"):
        read_mp4(garbage)
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_mp4(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="clip-7"):
        decode_mp4(data[:100], name="clip-7")
