"""Frame pre-processing shared by the agent and the env workers (numpy + OpenCV only: no torch here)."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Optional, Sequence

import cv2
import numpy as np

from .errors import VPTError

#: Batches at least this large are resized by a thread pool (cv2 releases the GIL while it works).
PARALLEL_MIN_BATCH = 8



class ObservationError(VPTError, ValueError):
    """An observation the agent cannot use (no ``pov``, wrong dtype or shape, NaN)."""


_pool: Optional[ThreadPoolExecutor] = None
_pool_size = 0
_pool_lock = threading.Lock()


def _forget_pool() -> None:
    """A forked child has none of the parent's threads: it makes its own pool when it needs one."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def check_pov(obs: Mapping[str, Any]) -> np.ndarray:
    """``obs["pov"]`` if it is an RGB uint8 HxWx3 array; otherwise ``ValueError`` saying what was expected."""
    if not isinstance(obs, Mapping):
        raise ObservationError(f"an observation must be a dict with a 'pov' entry, got {type(obs).__name__}")
    if "pov" not in obs:
        raise ObservationError(f"observation has no 'pov' key (keys: {sorted(obs)}); expected RGB uint8 HxWx3")
    pov = obs["pov"]
    if not isinstance(pov, np.ndarray):
        raise ObservationError(f"obs['pov'] must be a numpy array, got {type(pov).__name__}")
    if pov.dtype.kind == "f" and np.isnan(pov).any():
        raise ObservationError("obs['pov'] contains NaN; expected RGB uint8 HxWx3")
    if pov.dtype != np.uint8:
        raise ObservationError(f"obs['pov'] must be uint8 RGB, got dtype {pov.dtype}")
    if pov.ndim != 3 or pov.shape[2] != 3 or pov.shape[0] < 1 or pov.shape[1] < 1:
        raise ObservationError(f"obs['pov'] must have shape (H, W, 3), got {pov.shape}")
    return pov


def preprocess_pov(obs: Mapping[str, Any], size: Sequence[int] = (128, 128)) -> np.ndarray:
    """Validate ``obs["pov"]`` (RGB uint8 HxWx3) and resize it to ``size`` = (h, w) like the official agent.

    cv2's INTER_LINEAR on uint8 (fixed-point, no antialiasing) is what the models were trained with.
    """
    pov = check_pov(obs)
    h, w = size
    if pov.shape[:2] == (h, w):
        return np.ascontiguousarray(pov)
    return cv2.resize(pov, (w, h), interpolation=cv2.INTER_LINEAR)


def preprocess_batch(obs_list: Sequence[Mapping[str, Any]], size: Sequence[int] = (128, 128),
                     out: Optional[np.ndarray] = None) -> np.ndarray:
    """:func:`preprocess_pov` for B observations, written into ``out`` (B, h, w, 3) uint8 (allocated if None).

    Every observation is validated first, so a bad one raises before anything is written. Batches of
    :data:`PARALLEL_MIN_BATCH` or more are resized in parallel threads (the result is the same).
    """
    povs = [check_pov(obs) for obs in obs_list]
    h, w = size
    if out is None:
        out = np.empty((len(povs), h, w, 3), dtype=np.uint8)
    elif out.shape != (len(povs), h, w, 3) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ObservationError(f"out must be a C-contiguous uint8 array of shape {(len(povs), h, w, 3)}")

    def resize_range(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            if povs[i].shape[:2] == (h, w):
                out[i] = povs[i]
            else:
                cv2.resize(povs[i], (w, h), dst=out[i], interpolation=cv2.INTER_LINEAR)

    pool = _thread_pool() if len(povs) >= PARALLEL_MIN_BATCH else None
    if pool is None:
        resize_range(0, len(povs))
        return out
    n = _pool_size  # contiguous chunks, one per worker: few tasks, no per-frame scheduling cost
    bounds = [len(povs) * k // n for k in range(n + 1)]
    for f in [pool.submit(resize_range, lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]:
        f.result()
    return out


def _thread_pool() -> Optional[ThreadPoolExecutor]:
    """A shared pool with one thread per CPU this process may use (None on a single CPU)."""
    global _pool, _pool_size
    try:
        n_cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n_cpus = os.cpu_count() or 1
    if n_cpus < 2:
        return None
    with _pool_lock:
        if _pool is None:
            _pool_size = min(n_cpus, 16)
            _pool = ThreadPoolExecutor(max_workers=_pool_size, thread_name_prefix="vpt-resize")
        return _pool
