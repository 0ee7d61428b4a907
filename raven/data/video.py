"""mp4 video I/O with PyAV. On disk: uint8 [T, H, W, 3] RGB frames; in a shard: the mp4 bytes.

Encoding is libx264rgb at `crf` (0 = lossless, the default: toy clips are 16 px and a lossy codec
would blur their colours); decoding returns every frame and the stream's frame rate.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter
import numpy as np

from raven.io import atomic_path


class VideoError(ValueError):
    """A video that cannot be decoded: corrupt, truncated or not a video."""


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 0, codec: str = "libx264rgb", pix_fmt: str = "rgb24") -> bytes:
    """uint8 [T, H, W, 3] -> mp4 bytes. The default libx264rgb has no chroma subsampling (any H and W, exact
    at crf 0); browsers need `codec="libx264", pix_fmt="yuv420p"` and even H and W."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"encode_mp4 expects non-empty uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=int(round(fps)))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def decode_mp4(data: bytes | Path | str, name: str | None = None) -> tuple[np.ndarray, float]:
    """mp4 bytes or path -> (uint8 [T, H, W, 3], fps). A corrupt or truncated video raises VideoError naming it."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    label = name or (str(data) if not isinstance(data, bytes) else "<mp4 bytes>")
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise VideoError(f"{label}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.base_rate or 0)
            # one reformatter for the whole video: to_ndarray(format=...) builds a new swscale context per
            # frame, which made decoding 10x slower than the decoding itself on small frames
            reformatter = VideoReformatter()
            frames = [reformatter.reformat(frame, format="rgb24").to_ndarray() for frame in container.decode(video=0)]
    except (av.error.FFmpegError, EOFError) as error:
        raise VideoError(f"{label}: corrupt or truncated video ({error}); re-export it or drop it") from None
    if not frames:
        raise VideoError(f"{label}: no decodable frames (truncated file?)")
    if fps <= 0:
        raise VideoError(f"{label}: the video stream has no frame rate")
    return np.stack(frames), fps


def write_mp4(path: str | Path, frames: np.ndarray, fps: float, crf: int = 0) -> None:
    """Write an mp4 atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(encode_mp4(frames, fps, crf))


def read_mp4(path: str | Path) -> tuple[np.ndarray, float]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    return decode_mp4(path, name=str(path))


def read_mp4_frames(path: str | Path, pick: Callable[[int, float], Sequence[int]]) -> tuple[np.ndarray, float]:
    """Only the frames `pick(frame count, fps)` of an mp4 file, and its fps: frames are decoded one at a time
    and the others dropped, so a long or large video never sits in memory whole."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: video file not found")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is None:
                raise VideoError(f"{path}: no video stream")
            fps = float(stream.average_rate or stream.base_rate or 0)
            count = stream.frames or sum(packet.size > 0 for packet in container.demux(stream))
        wanted = set(pick(count, fps))
        with av.open(str(path)) as container:
            frames = {index: frame.to_ndarray(format="rgb24")
                      for index, frame in enumerate(container.decode(video=0)) if index in wanted}
    except (av.error.FFmpegError, EOFError) as error:
        raise VideoError(f"{path}: corrupt or truncated video ({error}); re-export it or drop it") from None
    if fps <= 0 or len(frames) != len(wanted):
        raise VideoError(f"{path}: {len(frames)} of the frames {sorted(wanted)[:5]}... decoded at fps {fps}; "
                         "truncated file?")
    return np.stack([frames[index] for index in sorted(wanted)]), fps
