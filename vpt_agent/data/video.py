"""Video files of recordings: decoding with OpenCV (as the official loader does) and encoding with ffmpeg.

Decoding uses ``cv2.VideoCapture``, so frames come out exactly as the official loader sees them (BGR, the same
ffmpeg decoder and colour conversion). Encoding uses the ffmpeg binary that ``imageio-ffmpeg`` ships, because
OpenCV's wheels cannot write H.264 (only MPEG-4 part 2 ``mp4v``: larger files and ~3 grey levels of error).
Two qualities (sizes and errors measured on 640x360 frames of the embedded env, see docs/recordings.md):

* ``"standard"`` (default): H.264 yuv420p ``-crf 18`` (``-preset veryfast``), the kind of video VPT's contractor
  data is: plays everywhere, 5-16 kB per frame, decodes ~3x faster than lossless; after the agent's resize to
  128x128 the mean abs error is ~2-2.4 grey levels (p99 10-13; single pixels up to ~120 at sharp colour edges,
  where chroma is subsampled).
* ``"lossless"``: H.264 in RGB (``libx264rgb -qp 0``): decoded frames equal the written ones bit for bit,
  25-80 kB per frame. Plays in ffmpeg/OpenCV/VLC, not in browsers.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import cv2
import numpy as np

from ..action_mapping import FPS
from .errors import DataError

logger = logging.getLogger(__name__)

#: quality name -> (ffmpeg codec, output pixel format, extra ffmpeg arguments)
VIDEO_QUALITIES: Dict[str, tuple] = {
    "standard": ("libx264", "yuv420p", ["-crf", "18", "-preset", "veryfast"]),
    "lossless": ("libx264rgb", "rgb24", ["-qp", "0", "-preset", "veryfast"]),
}
DEFAULT_QUALITY = "standard"


def quiet_ffmpeg() -> None:
    """Silence FFmpeg's own log (hundreds of ``[h264 @ ...]`` lines for one corrupt video) in this process and the
    processes it starts, unless the user set ``OPENCV_FFMPEG_LOGLEVEL``: each problem is reported once, as one
    line, by the reader that met it. For command lines; call before the first video is opened."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def check_file_name(path: Path) -> None:
    """DataError for a path OpenCV cannot take: a name that is not valid UTF-8 (from a file system with another
    encoding) crashes the process inside ``cv2.VideoCapture`` instead of failing."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")  # the undecodable bytes as \xNN
        raise DataError(f"{shown}: the file name is not valid UTF-8 (OpenCV cannot open it); rename it") from None


def open_video(path: Path) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` for ``path`` (DataError if OpenCV cannot open it)."""
    if not Path(path).is_file():
        raise DataError(f"{path}: video file not found")
    check_file_name(path)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DataError(f"{path}: cannot open the video (not an mp4 that OpenCV/ffmpeg can decode)")
    return capture


def count_frames(path: Path, decode: bool = False) -> int:
    """Number of frames of the video at ``path``, from the container (cheap: nothing is decoded).

    Falls back to decoding when the container does not say; an unreadable file is a DataError. ``decode=True``
    always decodes, and counts the frames that decode (slow; finds a truncated or corrupt video).
    """
    capture = open_video(path)
    try:
        count = 0 if decode else int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count > 0:
            return count
        while capture.grab():
            count += 1
        return count
    finally:
        capture.release()


def iter_video_frames(path: Path, wanted: np.ndarray) -> Iterator[tuple]:
    """Yield ``(index, frame)`` (frame BGR uint8, video resolution) for the sorted frame indices ``wanted``.

    Frames in between are grabbed but not converted. A frame that cannot be decoded is a DataError.
    """
    capture = open_video(path)
    try:
        position = 0
        for index in wanted:
            index = int(index)
            while position < index:
                if not capture.grab():
                    raise DataError(f"{path}: frame {position} cannot be decoded (video ends early or is corrupt)")
                position += 1
            ok, frame = capture.read()
            if not ok:
                raise DataError(f"{path}: frame {index} cannot be decoded (video ends early or is corrupt)")
            position += 1
            yield index, frame
    finally:
        capture.release()


class VideoEncoder:
    """Appends RGB frames to an H.264 mp4 through ffmpeg (imageio-ffmpeg's binary; nothing else needed).

    The file is written to exactly ``path`` (any name: the container is given explicitly), so callers can use a
    temporary name and rename it once :meth:`close` returned.
    """

    def __init__(self, path: Path, fps: int = FPS, quality: str = DEFAULT_QUALITY):
        if quality not in VIDEO_QUALITIES:
            raise DataError(f"video quality must be one of {sorted(VIDEO_QUALITIES)}, got {quality!r}")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 1000:
            raise DataError(f"fps must be a number in (0, 1000], got {fps!r}")
        self.path = Path(path)
        self.fps = fps
        self.quality = quality
        self.size: Optional[tuple] = None  # (height, width), set by the first frame
        self.frames = 0
        self._writer: Any = None

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB uint8 (H, W, 3) frame; every frame must have the first frame's size (H, W even)."""
        if self._writer is None:
            self._start(frame.shape[:2])
        elif frame.shape[:2] != self.size:
            raise DataError(f"{self.path}: frame {self.frames} has size {frame.shape[:2]}, "
                            f"the recording started with {self.size}")
        self._writer.send(np.ascontiguousarray(frame))
        self.frames += 1

    def _start(self, size: tuple) -> None:
        import imageio_ffmpeg  # imported here: only writing needs it

        height, width = size
        if height % 2 or width % 2:
            raise DataError(f"{self.path}: frame size {height}x{width} must be even (H.264 needs even sizes)")
        codec, pix_fmt, args = VIDEO_QUALITIES[self.quality]
        self._writer = imageio_ffmpeg.write_frames(
            str(self.path), (width, height), pix_fmt_in="rgb24", pix_fmt_out=pix_fmt, fps=self.fps,
            codec=codec, quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=[*args, "-f", "mp4"])
        self._writer.send(None)  # start ffmpeg
        self.size = (height, width)

    def close(self) -> None:
        """Finish the file (waits for ffmpeg)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial file."""
        try:
            self.close()
        except Exception:  # the file is deleted anyway
            logger.debug("ffmpeg failed while aborting %s", self.path, exc_info=True)
        self.path.unlink(missing_ok=True)


def read_video_rgb(path: Path) -> List[np.ndarray]:
    """All frames of a video as RGB uint8 (for tests and small files)."""
    capture = open_video(path)
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
