"""The inverse dynamics model's action space (the official ``IDMActionMapping``) and its MineRL form.

Unlike the policy's joint spaces, the IDM predicts each of the 20 buttons (:data:`~vpt_agent.action_mapping.BUTTONS`
order) as an independent yes/no and each camera axis as one of the 11 mu-law bins: the factored view of
:mod:`vpt_agent.action_mapping`, with no exclusivity rules and no camera meta-action.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .action_mapping import BUTTONS, N_CAMERA_BINS, env_to_factored, factored_to_env

#: Head name -> (factored shape, choices per entry); the layout of ``pi_head.*`` in the official IDM.
IDM_HEADS: Dict[str, Tuple[Tuple[int, ...], int]] = {
    "buttons": ((len(BUTTONS),), 2),
    "camera": ((2,), N_CAMERA_BINS),
}


def idm_to_env(buttons: np.ndarray, camera_bins: np.ndarray) -> List[Dict[str, object]]:
    """IDM outputs -> MineRL action dicts with all 24 keys.

    ``buttons``: (N, 20) 0/1; ``camera_bins``: (N, 2) ints in 0..10 ([pitch, yaw]). Buttons become Python ints,
    ``camera`` a float32 array of the bin centres in degrees (as :func:`~vpt_agent.action_mapping.policy_to_env`).
    """
    buttons = np.asarray(buttons)
    camera_bins = np.asarray(camera_bins)
    if buttons.ndim != 2 or buttons.shape[1] != len(BUTTONS):
        raise ValueError(f"buttons must have shape (N, {len(BUTTONS)}), got {buttons.shape}")
    if camera_bins.shape != (len(buttons), 2):
        raise ValueError(f"camera_bins must have shape ({len(buttons)}, 2), got {camera_bins.shape}")
    return factored_to_env(buttons, camera_bins)


def env_to_idm(actions: Sequence[Mapping[str, object]]) -> Tuple[np.ndarray, np.ndarray]:
    """MineRL action dicts -> IDM targets ``(buttons (N, 20) uint8, camera_bins (N, 2) int64)``."""
    return env_to_factored(actions)
