"""MP4 recording of evaluation episodes (imageio + imageio-ffmpeg, imported only when used)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import numpy as np

from .records import CRASHED, EpisodeRecord, EpisodeTask
from .rollout import Action, RolloutListener
from .workers import Transition

VIDEO_DIR = "videos"


class VideoRecorder(RolloutListener):
    """A rollout listener writing one MP4 per episode with index < ``count``; crashed attempts leave no file."""

    def __init__(self, directory: Path, count: int, fps: int = 20):
        self.directory = Path(directory)
        self.count = count
        self.fps = fps
        self._writers: Dict[int, Any] = {}

    def _path(self, index: int) -> Path:
        return self.directory / f"episode_{index:05d}.mp4"

    def wants_full_frames(self, task: EpisodeTask) -> bool:
        return task.index < self.count

    def on_reset(self, task: EpisodeTask, obs: Transition) -> None:
        if not self.wants_full_frames(task):
            return
        self._discard(task.index)  # a previous attempt's partial file
        import imageio.v2 as imageio

        self.directory.mkdir(parents=True, exist_ok=True)
        self._writers[task.index] = imageio.get_writer(self._path(task.index), fps=self.fps, codec="libx264",
                                                       quality=7, macro_block_size=8)
        self._append(task, obs)

    def on_step(self, task: EpisodeTask, action: Action, obs: Transition) -> None:
        self._append(task, obs)

    def on_episode_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        writer = self._writers.pop(task.index, None)
        if writer is not None:
            writer.close()
            if record["outcome"] == CRASHED:
                self._path(task.index).unlink(missing_ok=True)

    def _append(self, task: EpisodeTask, obs: Transition) -> None:
        writer = self._writers.get(task.index)
        if writer is not None:
            writer.append_data(np.asarray(obs.frame if obs.full_frame is None else obs.full_frame))

    def _discard(self, index: int) -> None:
        writer = self._writers.pop(index, None)
        if writer is not None:
            writer.close()
        self._path(index).unlink(missing_ok=True)

    def close(self) -> None:
        """Close all open files (unfinished episodes are deleted)."""
        for index in list(self._writers):
            self._discard(index)
