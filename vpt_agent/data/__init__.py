"""VPT's recording format, both directions (numpy, OpenCV and json only: no torch).

Reading: :func:`find_recordings` -> :func:`load_actions` (cheap, jsonl only) / :func:`iter_recording`
(streams ``(frame, env_action)`` pairs) / :func:`load_recording` (all in memory), with the official data
loader's semantics (see :mod:`.actions`). Writing: :class:`RecordingWriter` and :func:`env_action_to_json`.
Checking a whole data set before training: :mod:`.check` (``python -m vpt_agent.data``).
"""
from .actions import (CAMERA_DEGREES_PER_PIXEL, GUI_CAMERA_SCALE, KEYBOARD_BUTTONS, MOUSE_BUTTONS,
                      env_action_to_json, gui_camera_scale, noop_env_action)
from .errors import DataError
from .options import ReadOptions
from .recording import (Recording, RecordingActions, RecordingFiles, as_recording, find_recordings, iter_recording,
                        list_recordings, load_actions, load_recording, prepare_frame, recording_files)
from .writer import RecordingWriter

__all__ = [
    "CAMERA_DEGREES_PER_PIXEL", "GUI_CAMERA_SCALE", "KEYBOARD_BUTTONS", "MOUSE_BUTTONS", "DataError",
    "ReadOptions", "Recording", "RecordingActions", "RecordingFiles", "RecordingWriter", "as_recording",
    "env_action_to_json",
    "find_recordings", "gui_camera_scale", "iter_recording", "list_recordings", "load_actions", "load_recording",
    "noop_env_action", "prepare_frame", "recording_files",
]
