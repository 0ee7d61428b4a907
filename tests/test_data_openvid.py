"""OpenVid folder -> resampled, cropped training clips in shards; bad clips skipped and counted."""

import numpy as np

from raven.data.options import DataOptions
from raven.data.shards import ClipReader
from raven.data.stage import build_clips
from raven.data.video import write_mp4


def test_openvid_folder_to_shards(tmp_path, smoke_spec):
    folder = tmp_path / "openvid"
    (folder / "videos").mkdir(parents=True)
    frames = np.zeros((17, 24, 40, 3), np.uint8)  # 16 fps, 1 s, wider than the 16x16 target
    for t in range(17):
        frames[t, 8:16, 10 + t: 14 + t] = 255  # a white box moving 1 px per frame, inside the centre crop
    write_mp4(folder / "videos" / "good.mp4", frames, fps=16)
    write_mp4(folder / "videos" / "short.mp4", frames[:3], fps=16)
    (folder / "videos" / "broken.mp4").write_bytes(b"\x00" * 100)
    (folder / "OpenVidHD.csv").write_text(
        'video,caption\ngood.mp4,"a box moves right"\nshort.mp4,too short\nbroken.mp4,broken\nmissing.mp4,gone\n')
    options = DataOptions(clip_source="openvid", openvid_path=folder, openvid_csv="OpenVidHD.csv", shard_size=2)
    summary = build_clips(smoke_spec, options, None, tmp_path / "clips")
    assert summary["sources"] == 4 and summary["clips"] == 1 and summary["skipped"] == 3
    assert any("broken.mp4" in p for p in summary["problems"]) and any("missing.mp4" in p for p in summary["problems"])
    (clip,) = list(ClipReader(tmp_path / "clips"))
    assert clip.caption == "a box moves right" and clip.frames.shape == (9, 16, 16, 3) and clip.fps == 8
    # the box moves 2 source px per output frame (16 -> 8 fps), i.e. 4/3 px after the 24 -> 16 px resize
    mass = clip.frames[..., 0].astype(float)
    centre = (mass * np.arange(16)).sum(axis=(1, 2)) / mass.sum(axis=(1, 2))
    np.testing.assert_allclose(np.diff(centre), 4 / 3, atol=0.2)  # bilinear resampling of a box edge
    assert abs(np.diff(centre).mean() - 4 / 3) < 0.02


def test_zero_usable_clips_is_an_error_naming_the_folder(tmp_path, smoke_spec, capsys):
    from raven.cli import main
    from raven.config import write_spec

    folder = tmp_path / "openvid"
    (folder / "videos").mkdir(parents=True)
    (folder / "videos" / "broken.mp4").write_bytes(b"\x00" * 100)
    (folder / "OpenVidHD.csv").write_text('video,caption\nbroken.mp4,broken\nmissing.mp4,gone\n')
    data = {**smoke_spec.stages.get("data", {}), "clip_source": "openvid", "openvid_path": str(folder),
            "openvid_csv": "OpenVidHD.csv"}
    write_spec(smoke_spec.model_copy(update={"stages": {**smoke_spec.stages, "data": data}}), tmp_path / "spec.yaml")
    out = tmp_path / "clips"
    assert main(["data", "clips", "--spec", str(tmp_path / "spec.yaml"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{folder}: none of its 2 listed clips is usable (2 skipped)" in error and "broken.mp4" in error
    assert not (out / "summary.json").exists()
