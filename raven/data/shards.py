"""Parquet shards of clips, OpenVid-style: one row per clip with its mp4 bytes and caption.

Columns: key (str), caption (str), video (mp4 bytes), fps (float), frames, height, width (int).
Shard i holds the clips made from source indexes [i·shard_size, (i+1)·shard_size) (fewer rows when a
source clip is skipped); shards are written atomically, so an existing shard is complete and a rerun
keeps it.
The reader skips a clip that does not decode (and a shard that does not open), counts it, logs a
warning naming it and goes on: a long training run never dies on one bad clip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from raven.data.video import VideoError, decode_mp4, encode_mp4
from raven.io import atomic_path

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("key", pa.string()), ("caption", pa.string()), ("video", pa.binary()), ("fps", pa.float64()),
    ("frames", pa.int32()), ("height", pa.int32()), ("width", pa.int32()),
])


@dataclass
class Clip:
    key: str
    caption: str
    frames: np.ndarray  # uint8 [T, H, W, 3]
    fps: float


def shard_path(directory: Path, index: int) -> Path:
    return Path(directory) / f"shard-{index:05d}.parquet"


def _row(clip: Clip) -> dict:
    frames, height, width = clip.frames.shape[:3]
    return {"key": clip.key, "caption": clip.caption, "video": encode_mp4(clip.frames, clip.fps),
            "fps": float(clip.fps), "frames": frames, "height": height, "width": width}


def write_shards(directory: str | Path, count: int, make_clip: Callable[[int], Clip | None],
                 shard_size: int, part: int = 0, parts: int = 1) -> list[Path]:
    """Write make_clip(0 .. count-1) (None = skipped source) into shards; existing shards are kept.
    With `parts` workers (ranks of a launched job) worker `part` writes shards part, part + parts, ...;
    returns the paths of the shards it wrote or kept."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    directory = Path(directory)
    paths = []
    for index, first in enumerate(tqdm(range(0, count, shard_size), desc="shards")):
        if index % parts != part:
            continue
        path = shard_path(directory, index)
        if not path.exists():
            clips = (make_clip(i) for i in range(first, min(first + shard_size, count)))
            table = pa.Table.from_pylist([_row(c) for c in clips if c is not None], schema=SCHEMA)
            with atomic_path(path) as tmp:
                pq.write_table(table, tmp)
        paths.append(path)
    return paths


def count_rows(paths: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


@dataclass
class ClipReader:
    """Iterate the clips of every shard in a directory, skipping (and counting) the corrupt ones."""

    directory: Path
    part: int = 0  # with `parts` workers, this one reads shards part, part + parts, ...
    parts: int = 1
    skipped: int = 0
    skipped_shards: int = 0
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory}: clip shard directory not found; write it with `raven data clips`")
        every = sorted(self.directory.glob("shard-*.parquet"))
        if not every:
            raise FileNotFoundError(f"{self.directory}: no shard-*.parquet files; write them with `raven data clips`")
        self.paths = every[self.part :: self.parts]

    def _skip(self, message: str) -> None:
        self.problems.append(message)
        log.warning("skipping %s", message)

    def __iter__(self) -> Iterator[Clip]:
        for path in self.paths:
            yield from self.shard(path)

    def shard(self, path: Path) -> Iterator[Clip]:
        """The readable clips of one shard."""
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=64)
            for batch in batches:
                yield from self._clips(path, batch.to_pylist())
        except (OSError, pa.ArrowException) as error:
            self.skipped_shards += 1
            self._skip(f"{path}: unreadable shard ({error})")

    def _clips(self, path: Path, rows: list[dict]) -> Iterator[Clip]:
        for row in rows:
            name = f"{path}:{row.get('key')}"
            try:
                frames, fps = decode_mp4(row["video"], name=name)
            except (VideoError, KeyError, TypeError) as error:
                self.skipped += 1
                self._skip(f"{name}: {error}")
                continue
            yield Clip(str(row["key"]), str(row["caption"]), frames, fps)
