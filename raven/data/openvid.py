"""OpenVid(-HD) clips from a local folder → training clips (docs/method.md §11).

The folder holds OpenVid's CSV (columns `video`: the mp4 file name, `caption`) and the mp4 files, either
beside the CSV or in a `videos/` subfolder. Each clip is upsampled through the frame interpolator to
`UPSAMPLE` × the training fps (48 fps for 16) and every `UPSAMPLE`-th frame is kept (the paper's RIFE
recipe), `frames` frames are taken from a seeded random start, then centre-cropped and resized.
Clips that are missing, corrupt or too short are skipped and counted.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.csv as pacsv

from raven.data.resample import Interpolator, centre_crop_resize, flow_interpolate, resample_fps
from raven.data.shards import Clip
from raven.data.video import VideoError, read_mp4

log = logging.getLogger(__name__)

UPSAMPLE = 3  # 16 fps clips: RIFE to 48 fps, then a stride of 3 (docs/method.md §11)


def build_interpolator(kind: str, rife_path: Path | None) -> Interpolator:
    """`flow` (weight-free Farneback, CPU) or `rife` (Practical-RIFE weights at `rife_path`, GPU if any)."""
    if kind == "flow":
        return flow_interpolate
    if rife_path is None:
        raise ValueError("stages.data.interpolator 'rife' needs stages.data.rife_path: Practical-RIFE's flownet.pkl")
    from raven.models.nets.rife import RIFEInterpolator  # torch network; only the paper scale needs it

    return RIFEInterpolator(rife_path)


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
    interpolate: Interpolator = flow_interpolate
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
        video = resample_fps(video, source_fps, self.fps * UPSAMPLE, self.interpolate, keep_every=UPSAMPLE)
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
