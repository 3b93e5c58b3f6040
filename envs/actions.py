"""MineRL 1.0's 24-key action space (the space VPT's agents act in) and helpers to fill/normalise actions."""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
from gymnasium import spaces

# The key list lives in vpt_agent.action_mapping (importing it loads numpy only: vpt_agent's __init__ is lazy).
from vpt_agent.action_mapping import MINERL_ACTION_KEYS

from .errors import EnvArgumentError

#: All 24 action keys of MineRL 1.0, sorted as gym's Dict sorts them: the 23 buttons plus ``camera``.
ACTION_KEYS: tuple[str, ...] = tuple(MINERL_ACTION_KEYS)
#: The 23 buttons; each is Discrete(2).
BUTTON_KEYS: tuple[str, ...] = tuple(key for key in ACTION_KEYS if key != "camera")
CAMERA_LIMIT = 180.0


class MineRLActionSpace(spaces.Dict):
    """A Gymnasium ``Dict`` with MineRL 1.0's no-op helpers, so MineRL code such as
    ``env.action_space.noop()`` runs unchanged."""

    def no_op(self) -> dict[str, Any]:
        """A fresh no-op action: :func:`noop_action` (what MineRL's ``action_space.no_op()`` returns)."""
        return noop_action()

    def noop(self) -> dict[str, Any]:
        """:meth:`no_op` with the ``DeprecationWarning`` MineRL 1.0 gives for this older name."""
        warnings.warn("space.noop() is deprecated in MineRL 1.0 in favour of space.no_op()", DeprecationWarning,
                      stacklevel=2)
        return self.no_op()


def action_space() -> MineRLActionSpace:
    """Gymnasium version of MineRL's action space: 23 ``Discrete(2)`` buttons + ``camera`` Box(-180, 180, (2,)),
    with MineRL's ``no_op()``/``noop()``."""
    entries: dict[str, spaces.Space] = {key: spaces.Discrete(2) for key in BUTTON_KEYS}
    entries["camera"] = spaces.Box(-CAMERA_LIMIT, CAMERA_LIMIT, shape=(2,), dtype=np.float32)
    return MineRLActionSpace({key: entries[key] for key in ACTION_KEYS})


def noop_action() -> dict[str, Any]:
    """All buttons released (``0``) and ``camera = [0, 0]``."""
    action: dict[str, Any] = {key: 0 for key in BUTTON_KEYS}
    action["camera"] = np.zeros(2, np.float32)
    return {key: action[key] for key in ACTION_KEYS}


def fill_action(action: Mapping[str, Any], strict: bool = False) -> dict[str, Any]:
    """Complete and normalise an action dict.

    Missing keys become no-ops (MineRL: a missing key is a released button). Buttons become Python ``int``
    0/1 (MineRL's Java side parses buttons as integers, so ``1.0`` would crash it; a value other than 0/1, which it
    would take as a release, is a ``ValueError``); values with a leading batch
    dimension of size 1, as VPT's agent emits them (``(1,)`` buttons, ``(1, 2)`` camera), are squeezed.
    ``camera`` becomes a float32 array ``[pitch, yaw]`` in degrees.

    Args:
        action: mapping from action key to value.
        strict: if True, unknown keys raise ``ValueError`` (otherwise they are dropped, as MineRL ignores them).
    """
    if not isinstance(action, Mapping):
        raise EnvArgumentError(f"action must be a mapping of MineRL action keys, got {type(action).__name__}")
    unknown = sorted(set(action) - set(ACTION_KEYS))
    if unknown and strict:
        raise EnvArgumentError(f"unknown action keys {unknown}; expected a subset of {list(ACTION_KEYS)}")
    filled = noop_action()
    for key in ACTION_KEYS:
        if key not in action:
            continue
        value = action[key]
        if key == "camera":
            camera = np.asarray(value, np.float32).reshape(-1)
            if camera.shape != (2,):
                raise EnvArgumentError(f"camera must hold 2 numbers [pitch, yaw], got shape {np.shape(value)}")
            if not np.all(np.isfinite(camera)):
                raise EnvArgumentError(f"camera must be finite, got {camera}")
            filled["camera"] = camera
        else:
            flat = np.asarray(value).reshape(-1)
            if flat.size != 1:
                raise EnvArgumentError(f"button {key!r} must be a single 0/1 value, got shape {np.shape(value)}")
            if flat[0] not in (0, 1):  # MineRL's Java side presses on exactly 1 and releases on anything else
                raise EnvArgumentError(f"button {key!r} must be 0 or 1, got {flat[0]!r}")
            filled[key] = int(flat[0] == 1)
    return filled
