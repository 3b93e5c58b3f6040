"""Frame pre-processing shared by the agent and the env workers (numpy + OpenCV only: no torch here)."""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Mapping, Optional, Sequence

import cv2
import numpy as np

from .errors import VPTError

#: Batches at least this large are resized by a thread pool (cv2 releases the GIL while it works). Batches of
#: frames already at the model's size are only copied, in the calling thread: on a 16-core Xeon 256 such frames
#: took 1.5 ms there and 2.4-3.2 ms in 4-32 pool tasks (``benchmarks/bench_frames.py``).
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


#: Float pov dtypes the agent takes as the official agent does: 0..255 intensities, resized in their own dtype.
FLOAT_POV_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_pov(obs: Mapping[str, Any], allow_float: bool = False) -> np.ndarray:
    """``obs["pov"]`` if it is an RGB uint8 HxWx3 array; otherwise ``ValueError`` saying what was expected.

    ``allow_float``: also take finite float32/float64 povs (what the official agent's ``cv2.resize`` takes).
    """
    expected = "RGB uint8 (or float32/float64 0..255) HxWx3" if allow_float else "RGB uint8 HxWx3"
    if not isinstance(obs, Mapping):
        raise ObservationError(f"an observation must be a dict with a 'pov' entry, got {type(obs).__name__}")
    if "pov" not in obs:
        raise ObservationError(f"observation has no 'pov' key (keys: {sorted(obs)}); expected {expected}")
    pov = obs["pov"]
    if not isinstance(pov, np.ndarray):
        raise ObservationError(f"obs['pov'] must be a numpy array, got {type(pov).__name__}")
    if pov.dtype.kind == "f" and not np.isfinite(pov).all():
        raise ObservationError(f"obs['pov'] contains NaN or inf (must be finite); expected {expected}")
    if pov.dtype != np.uint8 and not (allow_float and pov.dtype in FLOAT_POV_DTYPES):
        raise ObservationError(f"obs['pov'] must be {expected}, got dtype {pov.dtype}")
    if pov.ndim != 3 or pov.shape[2] != 3 or pov.shape[0] < 1 or pov.shape[1] < 1:
        raise ObservationError(f"obs['pov'] must have shape (H, W, 3), got {pov.shape}")
    return pov


_UINT8 = np.dtype(np.uint8)


def _checked(obs: Any, allow_float: bool) -> np.ndarray:
    """:func:`check_pov`, with the common case (a dict holding an RGB uint8 ndarray) seen first, at a quarter of
    its cost (0.06 vs 0.28 ms for 256 observations on an AVX2 EPYC)."""
    pov = obs.get("pov") if type(obs) is dict else None
    if (type(pov) is np.ndarray and pov.dtype is _UINT8 and pov.ndim == 3 and pov.shape[2] == 3
            and pov.shape[0] and pov.shape[1]):
        return pov
    return check_pov(obs, allow_float)


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
                     out: Optional[np.ndarray] = None, allow_float: bool = False) -> np.ndarray:
    """:func:`preprocess_pov` for B observations, written into ``out`` (B, h, w, 3) uint8 (allocated if None):
    :func:`check_batch`, then :func:`resize_batch`.

    Every observation is validated first, so a bad one raises before anything is written.

    ``allow_float``: float32/float64 povs are taken as the official agent takes them (0..255 intensities, resized
    by ``cv2.resize`` in their own dtype, then cast to float32); a batch holding one is returned as float32
    (its uint8 frames resized as usual) and cannot be written into a uint8 ``out``.
    """
    return resize_batch(check_batch(obs_list, allow_float), size, out)


def check_batch(obs_list: Sequence[Mapping[str, Any]], allow_float: bool = False) -> List[np.ndarray]:
    """Every observation's ``pov``, validated by :func:`check_pov` (the common case seen cheaply)."""
    return [_checked(obs, allow_float) for obs in obs_list]


def resize_batch(povs: Sequence[np.ndarray], size: Sequence[int] = (128, 128),
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Validated povs (:func:`check_batch`) resized into ``out`` (B, h, w, 3): uint8, or float32 when a pov is
    float. Batches of :data:`PARALLEL_MIN_BATCH` or more that need resizing are resized in parallel threads (the
    result is the same); frames already at ``size`` are copied in the calling thread."""
    h, w = size
    dtype = np.float32 if any(p.dtype != np.uint8 for p in povs) else np.uint8
    if out is None:
        out = np.empty((len(povs), h, w, 3), dtype=dtype)
    elif out.shape != (len(povs), h, w, 3) or out.dtype != dtype or not out.flags.c_contiguous:
        raise ObservationError(f"out must be a C-contiguous {np.dtype(dtype)} array of shape {(len(povs), h, w, 3)}")

    def resize_range(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            if povs[i].shape[:2] == (h, w):
                out[i] = povs[i]
            elif povs[i].dtype == out.dtype:
                cv2.resize(povs[i], (w, h), dst=out[i], interpolation=cv2.INTER_LINEAR)
            else:  # in the pov's own dtype (float64 stays float64 until the cast, as officially)
                out[i] = cv2.resize(povs[i], (w, h), interpolation=cv2.INTER_LINEAR)

    resizes = len(povs) >= PARALLEL_MIN_BATCH and any(p.shape[:2] != (h, w) for p in povs)
    pool = _thread_pool() if resizes else None
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
