"""Training targets of recorded env actions (numpy only, so decoding workers need not import torch).

See :mod:`vpt_agent.train.loss` for how they enter the loss.

A step is a *null action* when, after the camera is quantised, no button is pressed and the camera is in
its null bin. The VPT paper drops such steps; the official ``behavioural_cloning.py`` means to (its
``check_if_null``) but compares the camera with a bound method, so in fact it trains on them.
"""
from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Sequence

import numpy as np

from ..action_mapping import CAMERA_NULL_BIN, env_to_factored, factored_to_joint


class ActionTargets(NamedTuple):
    """Joint policy indices of recorded env actions, and which steps are null actions."""

    buttons: np.ndarray  # (N,) int64 in 0..8640
    camera: np.ndarray  # (N,) int64 in 0..120
    null: np.ndarray  # (N,) bool


def action_targets(actions: Sequence[Mapping[str, object]]) -> ActionTargets:
    """MineRL env action dicts -> :class:`ActionTargets` (the official env -> policy mapping)."""
    if len(actions) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ActionTargets(empty, empty.copy(), np.zeros(0, dtype=bool))
    factored, bins = env_to_factored(actions)
    null = (factored.sum(axis=1) == 0) & np.all(bins == CAMERA_NULL_BIN, axis=1)
    buttons, camera = factored_to_joint(factored, bins)
    return ActionTargets(buttons, camera, null)


def batch_targets(actions: Sequence[Sequence[Mapping[str, object]]]) -> Dict[str, np.ndarray]:
    """Convenience for (B, T) nested lists of env actions -> ``buttons``, ``camera``, ``null`` arrays (B, T)."""
    B = len(actions)
    T = len(actions[0]) if B else 0
    if any(len(row) != T for row in actions):
        raise ValueError("every row of actions must have the same length")
    flat = action_targets([a for row in actions for a in row])
    return {k: getattr(flat, k).reshape(B, T) for k in ActionTargets._fields}
