"""MP4 recording of evaluation episodes (imageio + imageio-ffmpeg, imported only when used)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from .rollout import EpisodeTask


class VideoRecorder:
    """MP4 per episode for episodes with index < ``count`` (imageio + ffmpeg, imported lazily)."""

    def __init__(self, directory: Path, count: int, fps: int = 20):
        self.directory = directory
        self.count = count
        self.fps = fps
        self._writers: Dict[int, Any] = {}

    def _path(self, index: int) -> Path:
        return self.directory / f"episode_{index:05d}.mp4"

    def frame(self, task: EpisodeTask, obs: Mapping[str, Any], first: bool) -> None:
        """Append the frame of an observation of episode ``task`` (opening its file at the first one)."""
        if task.index >= self.count or "pov" not in obs:
            return
        if first or task.index not in self._writers:
            self.end(task, keep=False)
            import imageio.v2 as imageio

            self.directory.mkdir(parents=True, exist_ok=True)
            self._writers[task.index] = imageio.get_writer(
                self._path(task.index), fps=self.fps, codec="libx264", quality=7, macro_block_size=8)
        self._writers[task.index].append_data(obs["pov"])

    def end(self, task: EpisodeTask, keep: bool) -> None:
        """Close the episode's file; a crashed attempt's partial file is deleted."""
        writer = self._writers.pop(task.index, None)
        if writer is not None:
            writer.close()
            if not keep:
                self._path(task.index).unlink(missing_ok=True)

    def close(self) -> None:
        """Close all open files (unfinished episodes are deleted)."""
        for index in list(self._writers):
            self.end(EpisodeTask(index, 0), keep=False)
