"""Behavioural-cloning targets and loss: the recorded env action's negative log-likelihood under the policy.

The policy's action is the *joint* pair (button index in 0..8640, camera index in 0..120). The button index
includes the camera meta-action (is the camera moving at all?), and the camera head always contributes: a
still camera is the null camera bin. So the log-likelihood of a recorded action is
``logp["buttons"][b] + logp["camera"][c]`` with the policy's *tempered* log-probs (the official head divides
the logits by the model's temperature before the log-softmax, and ``behavioural_cloning.py`` trains on exactly
those log-probs).

A step is a *null action* when, after the camera is quantised, no button is pressed and the camera is in its
null bin (the official trainer skips such steps entirely: the frame never reaches the model).
"""
from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Sequence

import numpy as np
import torch

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


def action_nll(logp: Mapping[str, torch.Tensor], buttons: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Per-step negative log-likelihood (float32, shape of ``buttons``) of the joint actions.

    ``logp``: the policy's tempered log-probs, ``"buttons"`` (..., 8641) and ``"camera"`` (..., 121);
    ``buttons``/``camera``: integer joint indices of shape (...).
    """
    lb = logp["buttons"].float().gather(-1, buttons.long().unsqueeze(-1)).squeeze(-1)
    lc = logp["camera"].float().gather(-1, camera.long().unsqueeze(-1)).squeeze(-1)
    return -(lb + lc)


def bc_loss(logp: Mapping[str, torch.Tensor], buttons: torch.Tensor, camera: torch.Tensor,
            mask: torch.Tensor) -> torch.Tensor:
    """Mean NLL over the steps where ``mask`` is True (padding and skipped steps are False).

    Shapes: ``logp`` values (B, T, n), ``buttons``/``camera``/``mask`` (B, T). Returns a float32 scalar;
    0 (still differentiable) when no step is valid.
    """
    nll = action_nll(logp, buttons, camera)
    m = mask.to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp_min(1.0)


def batch_targets(actions: Sequence[Sequence[Mapping[str, object]]]) -> Dict[str, np.ndarray]:
    """Convenience for (B, T) nested lists of env actions -> ``buttons``, ``camera``, ``null`` arrays (B, T)."""
    B = len(actions)
    T = len(actions[0]) if B else 0
    if any(len(row) != T for row in actions):
        raise ValueError("every row of actions must have the same length")
    flat = action_targets([a for row in actions for a in row])
    return {k: getattr(flat, k).reshape(B, T) for k in ActionTargets._fields}
