"""Frame pre-processing shared by the agent and the env workers (numpy + OpenCV only: no torch here)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np


def preprocess_pov(obs: Mapping[str, Any], size: Sequence[int] = (128, 128)) -> np.ndarray:
    """Validate ``obs["pov"]`` (RGB uint8 HxWx3) and resize it to ``size`` = (h, w) like the official agent.

    cv2's INTER_LINEAR on uint8 (fixed-point, no antialiasing) is what the models were trained with.
    """
    if not isinstance(obs, Mapping):
        raise ValueError(f"an observation must be a dict with a 'pov' entry, got {type(obs).__name__}")
    if "pov" not in obs:
        raise ValueError(f"observation has no 'pov' key (keys: {sorted(obs)}); expected RGB uint8 HxWx3")
    pov = obs["pov"]
    if not isinstance(pov, np.ndarray):
        raise ValueError(f"obs['pov'] must be a numpy array, got {type(pov).__name__}")
    if pov.dtype.kind == "f" and np.isnan(pov).any():
        raise ValueError("obs['pov'] contains NaN; expected RGB uint8 HxWx3")
    if pov.dtype != np.uint8:
        raise ValueError(f"obs['pov'] must be uint8 RGB, got dtype {pov.dtype}")
    if pov.ndim != 3 or pov.shape[2] != 3 or pov.shape[0] < 1 or pov.shape[1] < 1:
        raise ValueError(f"obs['pov'] must have shape (H, W, 3), got {pov.shape}")
    h, w = size
    if pov.shape[:2] == (h, w):
        return np.ascontiguousarray(pov)
    return cv2.resize(pov, (w, h), interpolation=cv2.INTER_LINEAR)
