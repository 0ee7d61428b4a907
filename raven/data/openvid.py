"""OpenVid(-HD) clips from a local folder → training clips (SPEC §11).

The folder holds OpenVid's CSV (columns `video`: the mp4 file name, `caption`) and the mp4 files, either
beside the CSV or in a `videos/` subfolder. Each clip is resampled to the training fps through the frame
interpolator, `frames` frames are taken from a seeded random start, then centre-cropped and resized.
Clips that are missing, corrupt or too short are skipped and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.csv as pacsv

from raven.data.resample import centre_crop_resize, resample_fps
from raven.data.shards import Clip
from raven.data.video import VideoError, read_mp4

log = logging.getLogger(__name__)


def openvid_index(folder: str | Path, csv_name: str) -> list[tuple[Path, str]]:
    """[(mp4 path, caption)] listed by the OpenVid CSV in `folder`."""
    folder = Path(folder)
    csv_path = folder / csv_name
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: OpenVid CSV not found; put OpenVid's CSV (columns video, caption) "
                                "in stages.data.openvid_path or set stages.data.openvid_csv")
    table = pacsv.read_csv(csv_path)
    missing = [c for c in ("video", "caption") if c not in table.column_names]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {missing}; it has {table.column_names}")
    videos = folder / "videos" if (folder / "videos").is_dir() else folder
    return [(videos / name, caption) for name, caption in
            zip(table.column("video").to_pylist(), table.column("caption").to_pylist())]


@dataclass
class OpenVidClips:
    """Prepared clips of an OpenVid folder; `skipped` counts the clips that could not be used."""

    index: list[tuple[Path, str]]
    height: int
    width: int
    frames: int
    fps: float
    seed: int
    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)

    def __call__(self, number: int) -> Clip | None:
        """The prepared clip of source `number`, or None (skipped and counted)."""
        path, caption = self.index[number]
        try:
            video, source_fps = read_mp4(path)
        except (VideoError, FileNotFoundError) as error:
            return self._skip(str(error))
        video = resample_fps(video, source_fps, self.fps)
        if len(video) < self.frames:
            return self._skip(f"{path}: {len(video)} frames at {self.fps} fps, need {self.frames}")
        start = random.Random(f"{self.seed}:{number}").randint(0, len(video) - self.frames)
        video = centre_crop_resize(video[start: start + self.frames], self.height, self.width)
        return Clip(key=f"openvid-{number:08d}", caption=caption, frames=video, fps=self.fps)

    def _skip(self, message: str) -> None:
        self.skipped += 1
        self.problems.append(message)
        log.warning("skipping %s", message)
        return None
