"""``--record DIR``: every evaluated episode written as a VPT recording (``NAME.mp4`` + ``NAME.jsonl``).

A rollout listener. Each step pairs the full-resolution frame the agent saw with the env action that was then
sent to the env (the rollout's ``on_step`` gets exactly that action), written with
:class:`vpt_agent.data.RecordingWriter`, so :func:`vpt_agent.data.load_recording` reads the episodes back like
VPT's contractor data (and ``python -m vpt_agent.train --data DIR`` trains on them). The step's reward goes into
the record as an extra ``reward`` field. The last observation of an episode has no action and is not written.

Files are atomic per episode: the writer uses temporary names until the episode finished; a crashed attempt is
discarded (its retry writes the same name again), and a finished episode's pair is complete before the episode
enters ``episodes.jsonl``. An error while writing (disk full, encoder failure) drops that episode's recording
with a warning and is listed in the summary; it never stops the run. The directory is locked like ``--out``.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..action_mapping import FPS, JointAction
from .records import CRASHED, EpisodeRecord, EpisodeTask
from .rollout import Action, RolloutListener
from .workers import Transition

logger = logging.getLogger(__name__)


def recording_name(task: EpisodeTask) -> str:
    """``episode_00012_seed112``: the episode index and its env seed (an index is re-run with the same seed)."""
    return f"episode_{task.index:05d}_seed{task.seed}"


def recorded_already(directory: Path, tasks: List[EpisodeTask]) -> List[str]:
    """The names of ``tasks`` that ``directory`` already holds a recording file of (a new run would replace them)."""
    from ..data.recording import recording_files  # OpenCV: not imported by the evaluator's --help

    files = [recording_files(directory, recording_name(t)) for t in tasks]
    return [f.name for f in files if f.video.exists() or f.actions.exists()]


class EpisodeRecorder(RolloutListener):
    """Writes each episode attempt as a VPT recording in ``directory``; see the module docstring."""

    def __init__(self, directory: Path, fps: int = FPS, quality: Optional[str] = None):
        self.directory = Path(directory)
        self.fps = fps
        self.quality = quality
        self._writers: Dict[int, Any] = {}
        self._pending: Dict[int, np.ndarray] = {}  # index -> the frame awaiting its action
        self.saved: List[str] = []
        self.dropped: Dict[int, str] = {}  # index -> why its recording was dropped
        if self.directory.is_dir():  # partial files of a killed run (the directory is locked: they are ours)
            from ..data.writer import PARTIAL_SUFFIX  # OpenCV: not imported by the evaluator's --help

            for stale in self.directory.glob(f"episode_*{PARTIAL_SUFFIX}"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def wants_full_frames(self, task: EpisodeTask) -> bool:
        return True

    def on_reset(self, task: EpisodeTask, obs: Transition) -> None:
        self._discard(task.index)  # a previous attempt's partial files
        self.dropped.pop(task.index, None)
        from ..data import RecordingWriter

        options = {} if self.quality is None else {"quality": self.quality}
        try:
            self._writers[task.index] = RecordingWriter(self.directory, recording_name(task), fps=self.fps,
                                                        overwrite=True, **options)
        except Exception as err:
            self._drop(task, err)
            return
        self._pending[task.index] = self._frame(obs)

    def on_step(self, task: EpisodeTask, action: Action, obs: Transition) -> None:
        writer = self._writers.get(task.index)
        if writer is None:
            return
        if isinstance(action, JointAction):
            action = action.to_env()
        try:
            writer.write(self._pending.pop(task.index), action, extra={"reward": float(obs.reward)})
        except Exception as err:
            self._drop(task, err)
            return
        if not obs.done:
            self._pending[task.index] = self._frame(obs)

    def on_episode_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        writer = self._writers.pop(task.index, None)
        self._pending.pop(task.index, None)
        if writer is None:
            return
        if record["outcome"] == CRASHED:
            writer.discard()
            return
        try:
            writer.close()
        except Exception as err:
            self._drop(task, err, writer)
            return
        self.saved.append(recording_name(task))

    @staticmethod
    def _frame(obs: Transition) -> np.ndarray:
        return np.asarray(obs.pov)

    def _drop(self, task: EpisodeTask, err: Exception, writer: Any = None) -> None:
        writer = writer or self._writers.pop(task.index, None)
        self._pending.pop(task.index, None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.discard()
        why = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        self.dropped[task.index] = why
        logger.warning("--record: dropped the recording of episode %d (%s); the evaluation goes on", task.index, why)

    def _discard(self, index: int) -> None:
        writer = self._writers.pop(index, None)
        self._pending.pop(index, None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.discard()

    def close(self) -> None:
        """Discard unfinished episodes (an interrupted run); finished ones are already complete."""
        for index in list(self._writers):
            self._discard(index)

    def session(self) -> Dict[str, Any]:
        """What the summary says about the recordings of this session."""
        return {"directory": str(self.directory), "saved": len(self.saved),
                "dropped": {str(index): why for index, why in sorted(self.dropped.items())}}
