"""A torch resize bit-exact with OpenCV's ``cv2.resize(..., INTER_LINEAR)`` on uint8 RGB frames (CPU or GPU).

OpenCV resizes uint8 images in fixed point, not in floating point, which is why ``F.interpolate`` differs from it
by one level in ~10% of pixels. Its arithmetic, reproduced here (and checked against cv2 on random frames of many
sizes in ``tests/test_resize.py``):

* source coordinate of output column ``x``: ``f = float32((x + 0.5) * in/out - 0.5)``, ``s = floor(f)``,
  ``f -= s``; columns left of the image (``s < 0``) or on its last column take ``f = 0`` and the clamped column.
* weights are 11-bit fixed point rounded separately: ``a0 = rint((1 - f) * 2048)``, ``a1 = rint(f * 2048)``.
* horizontal pass in int32: ``D = S[s] * a0 + S[s + 1] * a1`` (rows ``s`` and ``s + 1`` clamped to the image).
* vertical pass as OpenCV's SIMD kernel computes it (16-bit high multiplies):
  ``out = sat_u8((((D0 >> 4) * b0 >> 16) + ((D1 >> 4) * b1 >> 16) + 2) >> 2)``.

Frames whose size already matches are returned unchanged (the agent does the same).
"""
from __future__ import annotations

import functools
from typing import Sequence, Tuple

import numpy as np
import torch

_COEF_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE (11 bits)


@functools.lru_cache(maxsize=32)
def _axis(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (clamped) and fixed-point weights along one axis, as OpenCV computes them."""
    scale = 1.0 / (np.float64(n_out) / np.float64(n_in))  # OpenCV inverts the inverse scale, in double
    f = ((np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    s = np.floor(f).astype(np.int64)
    f = (f - s.astype(np.float32)).astype(np.float32)
    return s, f, np.float32(1) - f, np.float32(_COEF_SCALE)


@functools.lru_cache(maxsize=32)
def _plan(in_hw: Tuple[int, int], out_hw: Tuple[int, int]) -> Tuple[np.ndarray, ...]:
    (H, W), (h, w) = in_hw, out_hw
    sx, fx, gx, k = _axis(W, w)
    edge = (sx < 0) | (sx >= W - 1)  # horizontally, OpenCV zeroes the weight at both borders
    fx, gx = np.where(edge, np.float32(0), fx), np.where(edge, np.float32(1), gx)
    sx = np.clip(sx, 0, W - 1)
    a0, a1 = np.rint(gx * k).astype(np.int32), np.rint(fx * k).astype(np.int32)
    x0, x1 = sx, np.minimum(sx + 1, W - 1)
    sy, fy, gy, _ = _axis(H, h)  # vertically it keeps the weights and clamps the rows
    b0, b1 = np.rint(gy * k).astype(np.int32), np.rint(fy * k).astype(np.int32)
    y0, y1 = np.clip(sy, 0, H - 1), np.clip(sy + 1, 0, H - 1)
    return x0, x1, a0, a1, y0, y1, b0, b1


def resize_linear_u8(frames: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``frames`` (B, H, W, C) uint8 -> (B, h, w, C) uint8, equal to ``cv2.resize(f, (w, h), INTER_LINEAR)``.

    Runs on the frames' device. ``size`` is (h, w).
    """
    if frames.dtype != torch.uint8 or frames.dim() != 4:
        raise ValueError(f"frames must be a (B, H, W, C) uint8 tensor, got {frames.dtype} {tuple(frames.shape)}")
    H, W = frames.shape[1:3]
    h, w = int(size[0]), int(size[1])
    if (H, W) == (h, w):
        return frames
    dev = frames.device
    x0, x1, a0, a1, y0, y1, b0, b1 = (torch.from_numpy(a).to(dev) for a in _plan((H, W), (h, w)))
    rows = frames.index_select(1, torch.cat([y0, y1])).to(torch.int32)  # (B, 2h, W, C): only the rows used
    d = (rows.index_select(2, x0) * a0[:, None] + rows.index_select(2, x1) * a1[:, None])  # (B, 2h, w, C)
    d0, d1 = (d[:, :h] >> 4), (d[:, h:] >> 4)
    v = ((d0 * b0[:, None, None]) >> 16) + ((d1 * b1[:, None, None]) >> 16)
    return ((v + 2) >> 2).clamp_(0, 255).to(torch.uint8)
