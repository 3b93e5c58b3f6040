"""Writing our own episodes as VPT recordings (``NAME.mp4`` + ``NAME.jsonl``), so they feed training and any
tool that reads VPT's contractor data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional

import numpy as np

from .actions import env_action_to_json
from .errors import DataError
from .jsonl import format_jsonl_line
from .recording import PathLike, RecordingFiles, recording_files
from .video import DEFAULT_QUALITY, FPS, VideoEncoder

PARTIAL_SUFFIX = ".partial"


def partial_path(path: Path) -> Path:
    """The temporary name a recording file has until it is complete: ``NAME.mp4.partial``, ``NAME.jsonl.partial``."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def action_record(action: Mapping[str, Any], previous: Optional[Dict[str, Any]], tick: int) -> Dict[str, Any]:
    """The jsonl record of step ``tick`` (VPT's recorder format: it encodes changes relative to ``previous``)."""
    record = env_action_to_json(action, previous)
    record["tick"] = tick
    return record


def write_actions(path: Path, actions: Iterable[Mapping[str, Any]]) -> None:
    """Write a whole episode's env actions as VPT jsonl records (ticks 0, 1, ...), flushed to disk."""
    previous = None
    with open(path, "w", encoding="utf-8") as f:
        for tick, action in enumerate(actions):
            previous = action_record(action, previous, tick)
            f.write(format_jsonl_line(previous))
        f.flush()
        os.fsync(f.fileno())


class RecordingWriter:
    """Write one recording step by step; nothing looks complete until :meth:`close` returns.

    Frames go to ``NAME.mp4.partial`` (H.264, see :mod:`.video` for ``quality``) and records to
    ``NAME.jsonl.partial``; ``close`` renames the video, then the jsonl (so a complete-looking pair exists only
    after both are final). Leaving the ``with`` block by an exception discards both.

    Example::

        with RecordingWriter("demos", "episode_00000") as rec:
            rec.write(obs["pov"], action)
    """

    def __init__(self, out_dir: PathLike, name: str, fps: int = FPS, quality: str = DEFAULT_QUALITY,
                 overwrite: bool = False):
        if not name or os.sep in name or name.startswith("."):
            raise DataError(f"{name!r}: a recording name must be a plain file name")
        self.files: RecordingFiles = recording_files(out_dir, name)
        if not overwrite:
            for path in self.files[1:]:
                if path.exists():
                    raise DataError(f"{path}: already exists (pass overwrite=True to replace it)")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self._video = VideoEncoder(partial_path(self.files.video), fps=fps, quality=quality)
        self._jsonl_path = partial_path(self.files.actions)
        self._jsonl = open(self._jsonl_path, "w", encoding="utf-8")
        self._previous: Optional[Dict[str, Any]] = None
        self.steps = 0
        self.closed = False

    def write(self, frame: np.ndarray, action: Mapping[str, Any],
              extra: Optional[Mapping[str, Any]] = None) -> None:
        """Append one step: the frame the agent saw (RGB uint8 HxWx3) and the env action it then took.

        ``extra`` adds fields to the record (e.g. ``{"reward": 1.0}``); it cannot replace the action fields.
        """
        if self.closed:
            raise DataError(f"{self.files.actions}: the recording is already closed")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise DataError(f"{self.files.video}: a frame must be RGB uint8 (H, W, 3), got "
                            f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}")
        record = action_record(action, self._previous, self.steps)
        if extra:
            clash = sorted(set(extra) & set(record))
            if clash:
                raise DataError(f"extra fields {clash} would replace the action record's own fields")
            record.update(extra)
        try:  # before the frame goes to the video: a refused step must leave the pair in step
            line = format_jsonl_line(record)
        except (TypeError, ValueError) as err:
            raise DataError(f"{self.files.actions}: step {self.steps} cannot be written as JSON ({err}); extra "
                            "values must be plain finite numbers, strings, lists or dicts") from None
        self._video.write(frame)
        self._jsonl.write(line)
        self._previous = record
        self.steps += 1

    def close(self) -> RecordingFiles:
        """Finish both files and give them their final names; returns the recording's files."""
        if self.closed:
            return self.files
        if self.steps == 0:
            self.discard()
            raise DataError(f"{self.files.video}: no steps were written; nothing saved")
        try:
            self._video.close()
            self._jsonl.flush()
            os.fsync(self._jsonl.fileno())
            self._jsonl.close()
            os.replace(self._video.path, self.files.video)
        except BaseException:
            self.discard()
            raise
        os.replace(self._jsonl_path, self.files.actions)  # last: the pair is complete from here on
        self.closed = True
        return self.files

    def discard(self) -> None:
        """Drop the recording: stop the encoder and delete both partial files."""
        if self.closed:
            return
        self.closed = True
        self._video.abort()
        self._jsonl.close()
        self._jsonl_path.unlink(missing_ok=True)

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
