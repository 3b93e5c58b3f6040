"""Behavioural-cloning targets and loss: the recorded env action's negative log-likelihood under the policy.

The policy's action is the *joint* pair (button index in 0..8640, camera index in 0..120). The button index
includes the camera meta-action (is the camera moving at all?), and the camera head always contributes: a
still camera is the null camera bin. So the log-likelihood of a recorded action is
``logp["buttons"][b] + logp["camera"][c]`` with the policy's *tempered* log-probs (the official head divides
the logits by the model's temperature before the log-softmax, and ``behavioural_cloning.py`` trains on exactly
those log-probs).

Null actions: see :mod:`.targets` and ``--null-actions``.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch

from .targets import ActionTargets, action_targets, batch_targets  # noqa: F401  (re-exported)


def action_nll(logp: Mapping[str, torch.Tensor], buttons: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Per-step negative log-likelihood (float32, shape of ``buttons``) of the joint actions.

    ``logp``: the policy's tempered log-probs, ``"buttons"`` (..., 8641) and ``"camera"`` (..., 121);
    ``buttons``/``camera``: integer joint indices of shape (...).
    """
    lb = logp["buttons"].float().gather(-1, buttons.long().unsqueeze(-1)).squeeze(-1)
    lc = logp["camera"].float().gather(-1, camera.long().unsqueeze(-1)).squeeze(-1)
    return -(lb + lc)


def bc_loss(logp: Mapping[str, torch.Tensor], buttons: torch.Tensor, camera: torch.Tensor,
            mask: torch.Tensor, count: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean NLL over the steps where ``mask`` is True (padding and skipped steps are False).

    Shapes: ``logp`` values (B, T, n), ``buttons``/``camera``/``mask`` (B, T). Returns a float32 scalar;
    0 (still differentiable) when no step is valid. ``count``: the number of steps to divide the sum by
    (default: ``mask``'s; data-parallel training passes the count over every process's lanes).
    """
    nll = action_nll(logp, buttons, camera)
    m = mask.to(nll.dtype)
    return (nll * m).sum() / (m.sum() if count is None else count.to(nll.dtype)).clamp_min(1.0)
