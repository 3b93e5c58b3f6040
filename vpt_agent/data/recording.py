"""Finding and reading recordings: ``NAME.mp4`` (20 Hz video) + ``NAME.jsonl`` (one action record per frame).

Line i of the jsonl belongs to frame i of the video. Reading follows the official data loader: every line is
converted (:mod:`.actions`), null actions are skipped, and each kept frame gets the cursor drawn while the GUI
is open, is converted BGR -> RGB and resized with the agent's resize (:func:`vpt_agent.frames.preprocess_pov`).
"""
from __future__ import annotations

import logging
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..frames import preprocess_pov
from .actions import decode_records
from .cursor import cursor_position, draw_cursor
from .errors import DataError
from .jsonl import read_jsonl
from .options import ReadOptions
from .video import count_frames, iter_video_frames

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
VIDEO_SUFFIX, ACTIONS_SUFFIX = ".mp4", ".jsonl"
AGENT_SIZE = (128, 128)


class RecordingFiles(NamedTuple):
    """The two files of one recording."""

    name: str
    video: Path  # NAME.mp4
    actions: Path  # NAME.jsonl


def recording_files(directory: PathLike, name: str) -> RecordingFiles:
    """The (possibly not yet existing) files of recording ``name`` in ``directory``."""
    directory = Path(directory)
    return RecordingFiles(name, directory / (name + VIDEO_SUFFIX), directory / (name + ACTIONS_SUFFIX))


def find_recordings(paths: Union[PathLike, Sequence[PathLike]]) -> List[RecordingFiles]:
    """The recordings in ``paths``: directories (every ``NAME.mp4`` with its ``NAME.jsonl``, sorted by name;
    not recursive) and/or explicit ``.mp4``/``.jsonl`` files (in the order given, each paired with its sibling).

    Raises:
        DataError: a path does not exist, an mp4 has no jsonl (or the reverse), or no recording was found.
    """
    found: List[RecordingFiles] = []
    for entry in list_recordings(paths):
        if isinstance(entry, DataError):
            raise entry
        found.append(entry)
    if not found:
        raise no_recordings(paths)
    return found


def no_recordings(paths: Union[PathLike, Sequence[PathLike]]) -> DataError:
    """The error for paths that hold no recording."""
    return DataError(f"{', '.join(map(str, _as_list(paths)))}: no recordings (NAME.mp4 + NAME.jsonl) found")


def path_problem(path: PathLike) -> Optional[DataError]:
    """Why ``path`` cannot hold recordings (missing, or a file that is not an mp4/jsonl), or None."""
    path = Path(path)
    if path.is_dir() or (path.is_file() and path.suffix in (VIDEO_SUFFIX, ACTIONS_SUFFIX)):
        return None
    if path.exists():
        return DataError(f"{path}: not a recording (expected a directory, NAME.mp4 or NAME.jsonl)")
    return DataError(f"{path}: no such file or directory")


def list_recordings(paths: Union[PathLike, Sequence[PathLike]]) -> List[Union[RecordingFiles, DataError]]:
    """What :func:`find_recordings` finds, with each problem (a missing path, an mp4 without its jsonl, ...) in
    its place as a :class:`DataError` instead of raised, so that a check can report all of them."""
    found: Dict[Any, Union[RecordingFiles, DataError]] = {}  # one entry per recording (or problem) however named
    for path in map(Path, _as_list(paths)):
        problem = path_problem(path)
        if problem is not None:
            found[str(path)] = problem
            continue
        if path.is_dir():
            try:
                names = sorted({p.stem for p in path.iterdir() if p.suffix in (VIDEO_SUFFIX, ACTIONS_SUFFIX)
                                and p.is_file() and not p.name.startswith(".")})
            except OSError as err:
                names, found[str(path)] = [], DataError(f"{path}: cannot list the directory ({err.strerror})")
            entries = [_pair(path, name) for name in names]
        else:  # an mp4 or a jsonl
            entries = [_pair(path.parent, path.stem)]
        for entry in entries:
            found.setdefault(_identity(entry), entry)
    return list(found.values())


def _identity(entry: Union[RecordingFiles, DataError]) -> Any:
    """The same recording named through another path (relative/absolute, a symlinked directory) is one entry."""
    return entry.video.resolve() if isinstance(entry, RecordingFiles) else str(entry)


def _as_list(paths: Union[PathLike, Sequence[PathLike]]) -> List[PathLike]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _pair(directory: Path, name: str) -> Union[RecordingFiles, DataError]:
    files = recording_files(directory, name)
    for present, missing in ((files.video, files.actions), (files.actions, files.video)):
        if present.is_file() and not missing.is_file():
            return DataError(f"{present}: has no matching {missing.name} (each recording needs both files)")
    return files


# ----------------------------------------------------------------------------- actions

@dataclass
class RecordingActions:
    """The training steps of one recording, from its jsonl (and the frame count of its mp4).

    Attributes:
        files: the recording.
        actions: MineRL env actions (24 keys; ``camera`` float32 [pitch, yaw] degrees), one per kept step.
        frame_index: (N,) int64 video frame index of each kept step (= its jsonl line index, from 0).
        gui_open: (N,) bool: the GUI was open (the cursor is drawn on the frame).
        mouse_xy: (N, 2) float64 recorder mouse position (1280x720 window pixels) where the cursor is drawn.
        num_lines: lines in the jsonl; num_frames: frames in the mp4; num_null: null actions skipped.
    """

    files: RecordingFiles
    actions: List[Dict[str, Any]]
    frame_index: np.ndarray
    gui_open: np.ndarray
    mouse_xy: np.ndarray
    num_lines: int
    num_frames: int
    num_null: int

    def __len__(self) -> int:
        return len(self.actions)


def as_recording(files: Union[RecordingFiles, PathLike]) -> RecordingFiles:
    """``files`` as :class:`RecordingFiles`: one already, or a path naming one recording (``DIR/NAME``,
    ``DIR/NAME.mp4`` or ``DIR/NAME.jsonl``)."""
    if isinstance(files, RecordingFiles):
        return files
    path = Path(files)
    if path.is_dir():
        raise DataError(f"{path}: a directory, not a recording; find_recordings lists the recordings in it")
    if path.suffix in (VIDEO_SUFFIX, ACTIONS_SUFFIX):
        return find_recordings([path])[0]
    return recording_files(path.parent, path.name)


def load_actions(files: Union[RecordingFiles, PathLike], options: ReadOptions = ReadOptions()) -> RecordingActions:
    """Parse ``files.actions`` and keep the steps training uses (no video decoding; the mp4 is only opened
    to count its frames). ``files``: see :func:`as_recording`.

    Raises:
        DataError: a bad jsonl line, an mp4 OpenCV cannot open, or (with ``options.length_mismatch ==
        "error"``) a frame count that differs from the line count.
    """
    files = as_recording(files)
    records = read_jsonl(files.actions)
    num_frames = count_frames(files.video)
    usable = _usable_lines(files, len(records), num_frames, options)
    steps = decode_records(records[:usable], files.actions, options)
    keep = np.flatnonzero(~steps.is_null)
    return RecordingActions(
        files=files, actions=[steps.actions[i] for i in keep], frame_index=keep.astype(np.int64),
        gui_open=steps.gui_open[keep], mouse_xy=steps.mouse_xy[keep], num_lines=len(records),
        num_frames=num_frames, num_null=int(steps.is_null.sum()))


def _usable_lines(files: RecordingFiles, num_lines: int, num_frames: int, options: ReadOptions) -> int:
    """Lines that have a frame; a mismatch is an error unless ``options`` asks for the official truncation."""
    if num_lines == 0:
        raise DataError(f"{files.actions}: empty action file")
    if num_lines != num_frames:
        if options.length_mismatch == "error":
            raise DataError(
                f"{files.video}: {num_frames} frames but {files.actions.name} has {num_lines} lines (one per "
                f"frame expected; --official-loader, or ReadOptions(length_mismatch='truncate') in Python, pairs "
                f"line i with frame i and drops the rest, like the official loader)")
        logger.warning("%s: %d frames for %d jsonl lines; using the first %d steps",
                       files.video, num_frames, num_lines, min(num_lines, num_frames))
    return min(num_lines, num_frames)


# ----------------------------------------------------------------------------- frames

def iter_recording(files: Union[RecordingFiles, PathLike], size: Optional[Tuple[int, int]] = AGENT_SIZE,
                   options: ReadOptions = ReadOptions(),
                   actions: Optional[RecordingActions] = None) -> Iterator[Tuple[np.ndarray, Dict[str, Any]]]:
    """Stream ``(frame, env_action)`` for the kept steps of one recording, decoding one frame at a time.

    ``frame`` is RGB uint8 (h, w, 3): the video frame with the cursor drawn while the GUI is open, converted
    from BGR and resized to ``size`` = (h, w) with the agent's resize (``None``: the video's resolution).
    Pass ``actions`` (from :func:`load_actions`) to avoid parsing the jsonl twice.
    """
    files, size = as_recording(files), _checked_size(size)
    if actions is None:
        actions = load_actions(files, options)
    for step, (_, frame) in enumerate(iter_video_frames(files.video, actions.frame_index)):
        yield prepare_frame(frame, actions.gui_open[step], actions.mouse_xy[step], size), actions.actions[step]


def _checked_size(size: Any) -> Optional[Tuple[int, int]]:
    """``size`` if it is None or (h, w) of two integers >= 1; else DataError."""
    if size is None:
        return None
    try:
        h, w = (operator.index(v) for v in size)
    except (TypeError, ValueError):
        h = w = 0
    if h < 1 or w < 1:
        raise DataError(f"size must be None or (height, width) of two integers >= 1, got {size!r}")
    return h, w


def prepare_frame(frame_bgr: np.ndarray, gui_open: bool, mouse_xy: Sequence[float],
                  size: Optional[Tuple[int, int]] = AGENT_SIZE) -> np.ndarray:
    """One decoded video frame (BGR, modified in place) -> the agent's RGB input, as the official loader does."""
    if gui_open:
        draw_cursor(frame_bgr, *cursor_position(mouse_xy[0], mouse_xy[1], frame_bgr.shape[0]))
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    return rgb if size is None else preprocess_pov({"pov": rgb}, size)


@dataclass
class Recording:
    """A whole recording in memory: ``frames`` (N, h, w, 3) uint8 RGB and N env ``actions``."""

    files: RecordingFiles
    frames: np.ndarray
    actions: List[Dict[str, Any]]
    frame_index: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


def load_recording(files: Union[RecordingFiles, PathLike], size: Optional[Tuple[int, int]] = AGENT_SIZE,
                   options: ReadOptions = ReadOptions()) -> Recording:
    """:func:`iter_recording` collected into arrays (for small recordings and tests; training streams)."""
    files, size = as_recording(files), _checked_size(size)
    actions = load_actions(files, options)
    frames = [frame for frame, _ in iter_recording(files, size, options, actions)]
    if frames:
        stacked = np.stack(frames)
    else:
        height, width = size if size is not None else (0, 0)
        stacked = np.zeros((0, height, width, 3), np.uint8)
    return Recording(files, stacked, actions.actions, actions.frame_index)
