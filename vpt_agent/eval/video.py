"""MP4 recording of evaluation episodes (imageio + imageio-ffmpeg, imported only when used).

A video is written under a temporary name (``episode_NNNNN.partial.mp4``) and renamed when its episode finished,
so a killed run never leaves a truncated file that looks complete; crashed attempts leave no file. An error of
the encoder (or a full disk) drops that episode's video with a warning; it never stops the evaluation.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Dict

import numpy as np

from ..action_mapping import FPS
from .records import CRASHED, EpisodeRecord, EpisodeTask
from .rollout import Action, RolloutListener
from .workers import Transition

logger = logging.getLogger(__name__)

VIDEO_DIR = "videos"
PARTIAL = ".partial.mp4"


class VideoRecorder(RolloutListener):
    """A rollout listener writing one MP4 per episode with index < ``count``; crashed attempts leave no file."""

    def __init__(self, directory: Path, count: int, fps: int = FPS):
        self.directory = Path(directory)
        self.count = count
        self.fps = fps
        self._writers: Dict[int, Any] = {}
        self.dropped: Dict[int, str] = {}  # index -> why its video was dropped
        if self.directory.is_dir():  # partial files of a killed run (the run directory is locked: they are ours)
            for stale in self.directory.glob(f"*{PARTIAL}"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def _path(self, index: int) -> Path:
        return self.directory / f"episode_{index:05d}.mp4"

    def _partial(self, index: int) -> Path:
        return self.directory / f"episode_{index:05d}{PARTIAL}"

    def wants_full_frames(self, task: EpisodeTask) -> bool:
        return task.index < self.count

    def on_reset(self, task: EpisodeTask, obs: Transition) -> None:
        if not self.wants_full_frames(task):
            return
        self._discard(task.index)  # a previous attempt's partial file
        self.dropped.pop(task.index, None)
        try:
            import imageio.v2 as imageio

            self.directory.mkdir(parents=True, exist_ok=True)
            self._writers[task.index] = imageio.get_writer(self._partial(task.index), fps=self.fps,
                                                           codec="libx264", quality=7, macro_block_size=8)
        except Exception as err:
            self._drop(task.index, err)
            return
        self._append(task, obs)

    def on_step(self, task: EpisodeTask, action: Action, obs: Transition) -> None:
        self._append(task, obs)

    def on_episode_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        writer = self._writers.pop(task.index, None)
        if writer is None:
            return
        if record["outcome"] == CRASHED:
            self._close_quietly(writer)
            self._partial(task.index).unlink(missing_ok=True)
            return
        try:
            writer.close()
            os.replace(self._partial(task.index), self._path(task.index))
        except Exception as err:
            self._drop(task.index, err)

    def _append(self, task: EpisodeTask, obs: Transition) -> None:
        writer = self._writers.get(task.index)
        if writer is None:
            return
        try:
            writer.append_data(np.asarray(obs.pov))
        except Exception as err:
            self._drop(task.index, err)

    def _drop(self, index: int, err: Exception) -> None:
        why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
        self.dropped[index] = why
        self._discard(index)
        logger.warning("--video: dropped the video of episode %d (%s); the evaluation goes on", index, why)

    @staticmethod
    def _close_quietly(writer: Any) -> None:
        with contextlib.suppress(Exception):
            writer.close()

    def _discard(self, index: int) -> None:
        writer = self._writers.pop(index, None)
        if writer is not None:
            self._close_quietly(writer)
        with contextlib.suppress(OSError):
            self._partial(index).unlink(missing_ok=True)

    def close(self) -> None:
        """Close all open files (unfinished episodes are deleted)."""
        for index in list(self._writers):
            self._discard(index)

    def session(self) -> Dict[str, Any]:
        """What the summary says about this session's videos."""
        return {"dropped": {str(index): why for index, why in sorted(self.dropped.items())}}
