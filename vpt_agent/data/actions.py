"""VPT recorder records <-> MineRL env actions, with the semantics of the official data loader.

A record (one jsonl line, one video frame) holds the raw input of one tick: held keyboard keys by name, held
mouse buttons by number, the mouse movement in pixels, the selected hotbar slot and whether a GUI was open.
Reading a recording turns each record into MineRL's 24-key env action:

* keys: ``key.keyboard.w`` -> ``forward`` etc. (:data:`KEYBOARD_BUTTONS`); other keys are ignored;
* mouse buttons 0/1/2 -> ``attack``/``use``/``pickItem``;
* ``camera = [dy, dx] * 360/2400`` degrees (MineRL's mouse sensitivity), dx/dy optionally scaled while the
  GUI is open (:class:`~vpt_agent.data.options.ReadOptions`);
* a step with no mapped key, no mouse button and no mouse movement is a *null action*; training skips it;
* across steps: a change of the selected slot (e.g. by the scroll wheel, which is not recorded) presses
  ``hotbar.N`` for the new slot N (the step still counts as null if nothing else happened); an attack button
  already reported as newly pressed on the first line is taken to be stuck from before the recording and is
  dropped until the attack button is pressed again.

:func:`env_action_to_json` goes the other way, so that our own episodes can be stored in the same format.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..action_mapping import MINERL_ACTION_KEYS
from .errors import DataError
from .options import ReadOptions

#: Degrees of camera rotation per pixel of mouse movement (MineRL's mouse sensitivity).
CAMERA_DEGREES_PER_PIXEL = 360.0 / 2400.0
#: Mouse dx/dy multiplier while the GUI is open, by recorder version (other versions: 1).
GUI_CAMERA_SCALE: Dict[str, float] = {"5.7": 0.5, "5.8": 0.5, "6.7": 2.0, "6.8": 2.0, "6.9": 2.0}
KEY_PREFIX = "key.keyboard."
#: Recorder key name -> MineRL button.
KEYBOARD_BUTTONS: Dict[str, str] = {KEY_PREFIX + name: button for name, button in (
    ("escape", "ESC"), ("s", "back"), ("q", "drop"), ("w", "forward"),
    *((str(slot), f"hotbar.{slot}") for slot in range(1, 10)),
    ("e", "inventory"), ("space", "jump"), ("a", "left"), ("d", "right"),
    ("left.shift", "sneak"), ("left.control", "sprint"), ("f", "swapHands"),
)}
#: Recorder mouse button number -> MineRL button.
MOUSE_BUTTONS: Tuple[str, ...] = ("attack", "use", "pickItem")
ATTACK_MOUSE_BUTTON = MOUSE_BUTTONS.index("attack")
HOTBAR_SLOTS = 9
#: Mouse position written into our own records (the centre of the 1280x720 window the recorder assumes).
CENTRE_X, CENTRE_Y = 640.0, 360.0


def noop_env_action() -> Dict[str, Any]:
    """MineRL env action with every button released (``0``) and ``camera = [0, 0]`` (float32)."""
    action: Dict[str, Any] = {key: 0 for key in MINERL_ACTION_KEYS}
    action["camera"] = np.zeros(2, np.float32)
    return action


def gui_camera_scale(recorder_version: Optional[str]) -> float:
    """The dx/dy multiplier for GUI-open steps of ``recorder_version`` (``None``: 1, as the official loader)."""
    if recorder_version is None:
        return 1.0
    return GUI_CAMERA_SCALE.get(str(recorder_version), 1.0)


# ----------------------------------------------------------------------------- one record

@dataclass
class RecordInput:
    """The fields of one record that the conversion reads (validated)."""

    keys: List[str]
    buttons: List[int]
    new_buttons: List[int]
    dx: float
    dy: float
    hotbar: int
    gui_open: bool
    x: float
    y: float


_KIND_NAMES = {Real: "a finite number", int: "an integer", bool: "true or false", list: "a list"}


def _get(record: Mapping[str, Any], path: str, where: str, kind: type, default: Any = ...) -> Any:
    """``record[a][b]`` for ``path`` "a.b", checked to be a ``kind``; missing -> ``default`` or DataError."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            if default is not ...:
                return default
            raise DataError(f"{where}: missing '{path}'")
        value = value[part]
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is Real:  # JSON numbers: ints and floats, not booleans
        ok = ok and math.isfinite(value)
    if not ok:
        raise DataError(f"{where}: '{path}' must be {_KIND_NAMES.get(kind, kind.__name__)}, got {value!r}")
    return value


def _int_list(record: Mapping[str, Any], path: str, where: str, default: Any = ...) -> List[int]:
    values = _get(record, path, where, list, default)
    if any(not isinstance(v, int) or isinstance(v, bool) for v in values):
        raise DataError(f"{where}: '{path}' must be a list of integers, got {values!r}")
    return values


def parse_record(record: Mapping[str, Any], where: str) -> RecordInput:
    """Validate one record; ``where`` ("file:line") prefixes error messages.

    ``mouse.newButtons`` may be missing (read as ``[]``); ``mouse.x``/``y`` are needed only while the GUI is
    open (they place the cursor).
    """
    keys = _get(record, "keyboard.keys", where, list)
    if any(not isinstance(k, str) for k in keys):
        raise DataError(f"{where}: 'keyboard.keys' must be a list of strings, got {keys!r}")
    hotbar = _get(record, "hotbar", where, int)
    if not 0 <= hotbar < HOTBAR_SLOTS:
        raise DataError(f"{where}: 'hotbar' must be a slot 0..{HOTBAR_SLOTS - 1}, got {hotbar}")
    gui_open = _get(record, "isGuiOpen", where, bool)
    x = y = 0.0  # the mouse position matters only where the cursor is drawn
    if gui_open:
        x, y = (float(_get(record, f"mouse.{axis}", where, Real)) for axis in "xy")
    return RecordInput(
        keys=keys,
        buttons=_int_list(record, "mouse.buttons", where),
        new_buttons=_int_list(record, "mouse.newButtons", where, default=[]),
        dx=float(_get(record, "mouse.dx", where, Real)),
        dy=float(_get(record, "mouse.dy", where, Real)),
        hotbar=hotbar, gui_open=gui_open, x=x, y=y,
    )


def record_to_env_action(step: RecordInput, integer_camera: bool = False,
                         gui_scale: float = 1.0) -> Tuple[Dict[str, Any], bool]:
    """One record -> ``(env_action, is_null)``, without the across-step rules (hotbar, stuck attack).

    ``is_null`` is True when no mapped key, no mouse button (0/1/2) and no mouse movement was recorded.
    """
    action = noop_env_action()
    is_null = True
    for key in step.keys:
        button = KEYBOARD_BUTTONS.get(key)
        if button is not None:
            action[button] = 1
            is_null = False
    scale = CAMERA_DEGREES_PER_PIXEL * (gui_scale if step.gui_open else 1.0)
    camera = np.array([step.dy * scale, step.dx * scale])
    if integer_camera:
        camera = np.trunc(camera)
    action["camera"] = camera.astype(np.float32)
    if step.dx != 0 or step.dy != 0:
        is_null = False
    for number, button in enumerate(MOUSE_BUTTONS):
        if number in step.buttons:
            action[button] = 1
            is_null = False
    return action, is_null


# ----------------------------------------------------------------------------- a whole file

@dataclass
class DecodedSteps:
    """Every line of an action file converted (nothing skipped yet); arrays have one row per line."""

    actions: List[Dict[str, Any]]
    is_null: np.ndarray  # (n,) bool
    gui_open: np.ndarray  # (n,) bool
    mouse_xy: np.ndarray  # (n, 2) float64: recorder mouse x, y (1280x720 window pixels)


def decode_records(records: Sequence[Mapping[str, Any]], path: Path,
                   options: ReadOptions = ReadOptions()) -> DecodedSteps:
    """Convert the records of one file, applying the across-step rules in line order."""
    gui_scale = gui_camera_scale(options.recorder_version)
    actions, is_null = [], np.zeros(len(records), bool)
    gui_open, mouse_xy = np.zeros(len(records), bool), np.zeros((len(records), 2))
    attack_stuck = False
    last_slot = 0  # the official loader assumes slot 0 (hotbar.1) before the first line
    for index, record in enumerate(records):
        step = parse_record(record, f"{path}:{index + 1}")
        # An attack reported as *newly* pressed on the very first tick was held before the recording
        # started; some recordings keep it "down" until the player really clicks, so it is dropped until then.
        if index == 0:
            attack_stuck = step.new_buttons == [ATTACK_MOUSE_BUTTON]
        elif attack_stuck and ATTACK_MOUSE_BUTTON in step.new_buttons:
            attack_stuck = False
        if attack_stuck:
            step.buttons = [b for b in step.buttons if b != ATTACK_MOUSE_BUTTON]
        action, null = record_to_env_action(step, options.integer_camera, gui_scale)
        # The scroll wheel changes the slot without a key press; the recorder does not log it.
        if step.hotbar != last_slot:
            action[f"hotbar.{step.hotbar + 1}"] = 1
        last_slot = step.hotbar
        actions.append(action)
        is_null[index] = null
        gui_open[index] = step.gui_open
        mouse_xy[index] = (step.x, step.y)
    return DecodedSteps(actions, is_null, gui_open, mouse_xy)


# ----------------------------------------------------------------------------- env action -> record

def _camera_pixels(degrees: float) -> float:
    """Mouse pixels whose conversion back (``pixels * 360/2400`` in float64, then float32) gives ``degrees``."""
    target = np.float32(degrees)
    pixels = float(target) / CAMERA_DEGREES_PER_PIXEL
    for _ in range(4):  # float64 rounding can land one ulp off; step toward the exact value
        back = np.float32(pixels * CAMERA_DEGREES_PER_PIXEL)
        if back == target:
            break
        pixels = float(np.nextafter(pixels, math.inf if back < target else -math.inf))
    return pixels


def env_action_to_json(action: Mapping[str, Any], previous: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """One MineRL env action -> one record in VPT's recorder format.

    Reading the record back (:func:`decode_records`, i.e. the official semantics without the integer camera)
    gives back the same env action: buttons exactly, camera to the float32 bit. ``previous`` is the record
    written for the step before (``None`` for the first step of a recording); it carries the selected hotbar
    slot over and defines ``newKeys``/``newButtons``.

    * A pressed ``hotbar.N`` also selects slot N-1 in ``hotbar`` (the highest N if several are pressed).
    * The first record reports no newly pressed mouse button, so a real attack on the first step is not taken
      for the stuck-attack quirk.
    * ``mouse.x``/``y`` are the window centre and ``isGuiOpen`` is false: our envs have no GUI.

    Raises:
        DataError: ``action`` is not a MineRL action (unknown key, camera not 2 finite numbers, ...).
    """
    act = _normalise(action)
    keys = [key for key, button in KEYBOARD_BUTTONS.items() if act[button]]
    buttons = [number for number, button in enumerate(MOUSE_BUTTONS) if act[button]]
    slots = [slot for slot in range(1, HOTBAR_SLOTS + 1) if act[f"hotbar.{slot}"]]
    if slots:
        hotbar = slots[-1] - 1
    else:
        hotbar = int(previous.get("hotbar", 0)) if previous is not None else 0
    if previous is None:
        new_keys, new_buttons = list(keys), []
    else:
        old_keys = set(previous.get("keyboard", {}).get("keys", []))
        old_buttons = set(previous.get("mouse", {}).get("buttons", []))
        new_keys = [k for k in keys if k not in old_keys]
        new_buttons = [b for b in buttons if b not in old_buttons]
    pitch, yaw = (float(v) for v in act["camera"])
    return {
        "mouse": {"x": CENTRE_X, "y": CENTRE_Y, "dx": _camera_pixels(yaw), "dy": _camera_pixels(pitch),
                  "scaledX": 0.0, "scaledY": 0.0, "dwheel": 0.0, "buttons": buttons, "newButtons": new_buttons},
        "keyboard": {"keys": keys, "newKeys": new_keys, "chars": ""},
        "isGuiOpen": False,
        "isGuiInventory": False,
        "hotbar": hotbar,
    }


def _normalise(action: Mapping[str, Any]) -> Dict[str, Any]:
    """``action`` with every MineRL key: buttons as 0/1 ints, camera as float32 (2,); unknown keys refused."""
    if not isinstance(action, Mapping):
        raise DataError(f"an env action must be a dict of MineRL action keys, got {type(action).__name__}")
    unknown = sorted(set(action) - set(MINERL_ACTION_KEYS))
    if unknown:
        raise DataError(f"unknown env action keys {unknown}; expected a subset of {list(MINERL_ACTION_KEYS)}")
    out = noop_env_action()
    for key, value in action.items():
        flat = np.asarray(value).reshape(-1)
        if key == "camera":
            camera = flat.astype(np.float32)
            if camera.shape != (2,) or not np.all(np.isfinite(camera)):
                raise DataError(f"env action camera must be 2 finite numbers [pitch, yaw], got {value!r}")
            out["camera"] = camera
        else:
            # As the env takes it: exactly 0 or 1 (True/False, 1.0 too); "no" or 2 would be recorded as pressed.
            if flat.size != 1 or flat[0] not in (0, 1):
                raise DataError(f"env action button {key!r} must be one 0/1 value, got {value!r}")
            out[key] = int(flat[0])
    return out
