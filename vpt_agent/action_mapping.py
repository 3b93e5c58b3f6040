"""VPT's action spaces and the mappings between them, vectorised in numpy.

Three views of one action:

* **env**: MineRL's 24-key dict (buttons 0/1, ``camera`` = [pitch, yaw] in degrees).
* **factored**: 20 binary buttons (:data:`BUTTONS`) + 2 camera bins in ``0..10`` (mu-law quantised).
* **joint** (what the policy outputs): one button index in ``0..8640`` and one camera index in ``0..120``.

The joint button space is the Cartesian product of mutually exclusive button groups plus a
camera on/off meta-action (last group varies fastest); index 8640 is "inventory" alone.
"""
from __future__ import annotations

import functools
import itertools
from typing import Dict, List, Mapping, NamedTuple, Sequence, Tuple

import numpy as np

#: Factored buttons, in the order the official agent uses.
BUTTONS: Tuple[str, ...] = (
    "attack", "back", "forward", "jump", "left", "right", "sneak", "sprint", "use", "drop", "inventory",
    *(f"hotbar.{i}" for i in range(1, 10)),
)
#: MineRL 1.0's 24 action keys (23 buttons + camera). The agent never presses the extra three.
MINERL_ACTION_KEYS: Tuple[str, ...] = tuple(sorted(BUTTONS + ("ESC", "pickItem", "swapHands", "camera")))
NEVER_PRESSED: Tuple[str, ...] = ("ESC", "pickItem", "swapHands")
#: MineRL steps at 20 Hz, one action per frame, and VPT's recordings (frames + action lines) are 20 Hz.
FPS = 20

# Mutually exclusive groups; option 0 of each is "none". Order defines the joint index.
BUTTON_GROUPS: Dict[str, Tuple[str, ...]] = {
    "hotbar": ("none", *(f"hotbar.{i}" for i in range(1, 10))),
    "fore_back": ("none", "forward", "back"),
    "left_right": ("none", "left", "right"),
    "sprint_sneak": ("none", "sprint", "sneak"),
    "use": ("none", "use"),
    "drop": ("none", "drop"),
    "attack": ("none", "attack"),
    "jump": ("none", "jump"),
    "camera": ("none", "camera"),  # meta-action: does the camera head's output apply?
}
N_JOINT_BUTTONS = int(np.prod([len(g) for g in BUTTON_GROUPS.values()])) + 1  # 8641
INVENTORY_JOINT = N_JOINT_BUTTONS - 1  # 8640

# Camera quantisation (ActionTransformer in the official code).
CAMERA_MAXVAL = 10.0
CAMERA_BINSIZE = 2
CAMERA_MU = 10.0
N_CAMERA_BINS = int(2 * CAMERA_MAXVAL / CAMERA_BINSIZE) + 1  # 11
CAMERA_NULL_BIN = N_CAMERA_BINS // 2  # 5
N_JOINT_CAMERA = N_CAMERA_BINS ** 2  # 121
CAMERA_NULL_JOINT = CAMERA_NULL_BIN * N_CAMERA_BINS + CAMERA_NULL_BIN  # 60

_BUTTON_INDEX = {b: i for i, b in enumerate(BUTTONS)}


def _build_joint_tables() -> Tuple[np.ndarray, np.ndarray]:
    """joint button index -> (factored buttons (8641, 20) uint8, camera-meta-off flag (8641,) bool)."""
    buttons = np.zeros((N_JOINT_BUTTONS, len(BUTTONS)), dtype=np.uint8)
    camera_off = np.zeros(N_JOINT_BUTTONS, dtype=bool)
    for idx, combo in enumerate(itertools.product(*BUTTON_GROUPS.values())):
        for choice in combo[:-1]:
            if choice != "none":
                buttons[idx, _BUTTON_INDEX[choice]] = 1
        camera_off[idx] = combo[-1] == "none"
    # "inventory" alone. It is *not* flagged camera-off (official quirk): the camera head's sample passes through.
    buttons[INVENTORY_JOINT, _BUTTON_INDEX["inventory"]] = 1
    buttons.setflags(write=False)
    camera_off.setflags(write=False)
    return buttons, camera_off


JOINT_TO_BUTTONS, JOINT_CAMERA_OFF = _build_joint_tables()
# Place value of each group in the joint index (last group fastest).
_GROUP_SIZES = [len(g) for g in BUTTON_GROUPS.values()]
_GROUP_STRIDES = np.cumprod([1] + _GROUP_SIZES[::-1])[:-1][::-1]


# ----------------------------------------------------------------------------- camera quantisation
# Both directions repeat the official ActionTransformer's operations in its order and precision, so that values
# on a rounding boundary land in the same bin: float inputs are computed in their own dtype (float32 stays
# float32, with the constants rounded to it, as numpy 1.x does for the official code), anything else in float64.
# A 0-d input counts as a scalar there: np.clip with integer bounds turns it into float64.
def _compute_type(a: np.ndarray) -> type:
    return a.dtype.type if a.ndim and np.issubdtype(a.dtype, np.floating) else np.float64


def discretize_camera(degrees: np.ndarray) -> np.ndarray:
    """Mu-law quantise camera angles (degrees, any shape) to bins ``0..10`` (int64). Rounds half to even."""
    x = np.asarray(degrees)
    t = _compute_type(x)
    x = np.clip(x.astype(t, copy=False), t(-CAMERA_MAXVAL), t(CAMERA_MAXVAL)) / t(CAMERA_MAXVAL)
    encoded = np.sign(x) * (np.log(t(1.0) + t(CAMERA_MU) * np.abs(x)) / t(np.log(1.0 + CAMERA_MU)))
    encoded = encoded * t(CAMERA_MAXVAL)
    return np.round((encoded + t(CAMERA_MAXVAL)) / t(CAMERA_BINSIZE)).astype(np.int64)


def undiscretize_camera(bins: np.ndarray) -> np.ndarray:
    """Inverse of :func:`discretize_camera`: bins -> degrees (bin centres; float64 for integer bins)."""
    b = np.asarray(bins)
    t = _compute_type(b)
    u = (b.astype(t, copy=False) * t(CAMERA_BINSIZE) - t(CAMERA_MAXVAL)) / t(CAMERA_MAXVAL)
    decoded = np.sign(u) * t(1.0 / CAMERA_MU) * (t(1.0 + CAMERA_MU) ** np.abs(u) - t(1.0))
    return decoded * t(CAMERA_MAXVAL)


# ----------------------------------------------------------------------------- joint <-> factored
def joint_to_factored(buttons: np.ndarray, camera: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Policy actions -> factored. ``buttons``, ``camera``: int arrays of joint indices, shape (B,) or (B, 1).

    Returns ``(buttons (B, 20) uint8, camera_bins (B, 2) int64)``. Camera bins are forced to the null bin
    when the joint button action has the camera meta-action off. Lookup tables are never written to.
    """
    b = _as_index(buttons, N_JOINT_BUTTONS, "buttons")
    c = _as_index(camera, N_JOINT_CAMERA, "camera")
    bins = np.stack([c // N_CAMERA_BINS, c % N_CAMERA_BINS], axis=-1)  # fresh array: safe to write
    bins[JOINT_CAMERA_OFF[b]] = CAMERA_NULL_BIN
    return JOINT_TO_BUTTONS[b].copy(), bins


def factored_to_joint(buttons: np.ndarray, camera_bins: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Factored actions -> policy's joint indices (as used for behavioural cloning).

    ``buttons``: (B, 20) 0/1; ``camera_bins``: (B, 2) ints in 0..10. Rules (as the official mapping):
    forward+back or left+right together mean neither; otherwise the later option of a group wins
    (sneak over sprint, the highest hotbar); the camera meta-action is on iff a bin is not null;
    inventory overrides everything and forces the null camera. Returns two int64 arrays of shape (B,).
    """
    buttons = np.asarray(buttons)
    camera_bins = np.asarray(camera_bins, dtype=np.int64)
    if buttons.ndim != 2 or buttons.shape[1] != len(BUTTONS):
        raise ValueError(f"buttons must have shape (B, {len(BUTTONS)}), got {buttons.shape}")
    if camera_bins.shape != (buttons.shape[0], 2):
        raise ValueError(f"camera_bins must have shape ({buttons.shape[0]}, 2), got {camera_bins.shape}")
    if camera_bins.min(initial=0) < 0 or camera_bins.max(initial=0) >= N_CAMERA_BINS:
        raise ValueError(f"camera bins must lie in 0..{N_CAMERA_BINS - 1}")
    pressed = buttons.astype(bool)
    camera_on = np.any(camera_bins != CAMERA_NULL_BIN, axis=1)
    joint = np.zeros(len(pressed), dtype=np.int64)
    for stride, (name, options) in zip(_GROUP_STRIDES, BUTTON_GROUPS.items()):
        if name == "camera":
            choice = camera_on.astype(np.int64)
        else:
            choice = _group_choice(pressed, options)
        joint += stride * choice
    camera = camera_bins[:, 0] * N_CAMERA_BINS + camera_bins[:, 1]
    inventory = pressed[:, _BUTTON_INDEX["inventory"]]
    joint[inventory] = INVENTORY_JOINT
    camera[inventory] = CAMERA_NULL_JOINT
    return joint, camera


def _group_choice(pressed: np.ndarray, options: Sequence[str]) -> np.ndarray:
    """Index of the chosen option of one exclusive group (0 = none); the last pressed option wins."""
    cols = pressed[:, [_BUTTON_INDEX[o] for o in options[1:]]].copy()
    if set(options[1:]) in ({"forward", "back"}, {"left", "right"}):
        cols[cols.all(axis=1)] = False  # opposite directions cancel out
    n = cols.shape[1]
    last = n - np.argmax(cols[:, ::-1], axis=1)  # 1-based index of the last True
    return np.where(cols.any(axis=1), last, 0).astype(np.int64)


def _as_index(a: np.ndarray, n: int, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array of shape (B,) or (B, 1), got {a.dtype} {a.shape}")
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"{name} indices must lie in 0..{n - 1}")
    return a.astype(np.int64)


# ----------------------------------------------------------------------------- env <-> policy
def policy_to_env(buttons: np.ndarray, camera: np.ndarray) -> List[Dict[str, object]]:
    """Joint policy actions (B,) -> list of B MineRL action dicts with all 24 keys.

    Buttons are Python ints (MineRL's Java side parses integers only); ``camera`` is a float32 array
    ``[pitch, yaw]`` in degrees. Same dicts as ``factored_to_env(*joint_to_factored(buttons, camera))``, built
    from one cached template per joint button index (a 256-env batch maps in a fraction of the time).
    """
    _, bins = joint_to_factored(buttons, camera)
    degrees = undiscretize_camera(bins).astype(np.float32)
    out = []
    for index, cam in zip(_as_index(buttons, N_JOINT_BUTTONS, "buttons").tolist(), degrees):
        action = _env_template(index).copy()
        action["camera"] = cam
        out.append(action)
    return out


@functools.lru_cache(maxsize=None)
def _env_template(joint_button: int) -> Dict[str, object]:
    """The 24-key MineRL dict of one joint button index, in key order, with the camera still to fill in."""
    pressed = dict(zip(BUTTONS, JOINT_TO_BUTTONS[joint_button].tolist()))
    return {key: None if key == "camera" else pressed.get(key, 0) for key in MINERL_ACTION_KEYS}


class JointAction(NamedTuple):
    """One env's action as the policy's two joint indices: the compact form the evaluator sends to env workers
    (two ints instead of a 24-key dict); :meth:`to_env` gives the MineRL dict."""

    buttons: int
    camera: int

    def to_env(self) -> Dict[str, object]:
        action = _env_template(self.buttons).copy()
        action["camera"] = np.array(_camera_degrees(self.buttons, self.camera), dtype=np.float32)
        return action


@functools.lru_cache(maxsize=None)
def _camera_degrees(joint_button: int, joint_camera: int) -> Tuple[float, float]:
    """[pitch, yaw] of one joint action (null when its button index has the camera off), cached."""
    _, bins = joint_to_factored(np.array([joint_button]), np.array([joint_camera]))
    pitch, yaw = undiscretize_camera(bins[0]).astype(np.float32).tolist()
    return pitch, yaw


def factored_to_env(buttons: np.ndarray, camera_bins: np.ndarray) -> List[Dict[str, object]]:
    """Factored actions (buttons (B, 20) 0/1, camera bins (B, 2)) -> B MineRL action dicts with all 24 keys."""
    degrees = undiscretize_camera(np.asarray(camera_bins)).astype(np.float32)
    out = []
    for row, cam in zip(np.asarray(buttons).astype(np.int64).tolist(), degrees):
        action: Dict[str, object] = dict(zip(BUTTONS, row))
        action.update({k: 0 for k in NEVER_PRESSED})
        action["camera"] = cam
        out.append({k: action[k] for k in MINERL_ACTION_KEYS})
    return out


def env_to_factored(actions: Sequence[Mapping[str, object]]) -> Tuple[np.ndarray, np.ndarray]:
    """MineRL action dicts -> (buttons (B, 20) uint8, camera bins (B, 2) int64). Missing buttons count as 0."""
    buttons = np.array([[_flat_scalar(a.get(b, 0)) for b in BUTTONS] for a in actions], dtype=np.float64)
    if buttons.size and not np.isin(buttons, (0, 1)).all():
        raise ValueError("button values must be 0 or 1")
    cameras = [np.asarray(a.get("camera", (0.0, 0.0))).reshape(-1) for a in actions]
    if any(c.shape != (2,) or not np.issubdtype(c.dtype, np.number) for c in cameras):
        raise ValueError("camera must hold two numbers [pitch, yaw] per action")
    if len({c.dtype for c in cameras}) <= 1:
        bins = discretize_camera(np.array(cameras).reshape(-1, 2))
    else:  # each camera quantised in its own precision, as the official code does one dict at a time
        bins = np.array([discretize_camera(c) for c in cameras])
    return buttons.astype(np.uint8).reshape(len(actions), len(BUTTONS)), bins


def env_to_policy(actions: Sequence[Mapping[str, object]]) -> Tuple[np.ndarray, np.ndarray]:
    """MineRL action dicts -> joint (buttons (B,), camera (B,)) policy indices."""
    return factored_to_joint(*env_to_factored(actions))


def _flat_scalar(v: object) -> float:
    arr = np.asarray(v).reshape(-1)
    if arr.size != 1:
        raise ValueError(f"a button value must be a scalar, got shape {np.asarray(v).shape}")
    return float(arr[0])
