"""The CNN's GroupNorm on channels-last CUDA activations as two Triton passes (statistics, then apply).

    x (N, H, W, C) in memory
      -> pass 1, per (sample n, chunk of pixels): per channel c, in float32,
             s1[c] = sum (x - pivot[c]),  s2[c] = sum (x - pivot[c])^2      (pivot: pixel 0's value, against
                                                                            cancellation in the variance)
      -> a tiny kernel, one program per sample, in float64: per channel mean and squared deviations, combined
         into per-group mean and variance (Chan's parallel formula) -> per (n, c): scale = weight * rstd,
         shift = bias - mean * scale
      -> pass 2: y = x * scale + shift in float32, rounded once to x's dtype; y channels-last like x

:func:`vpt_agent.layers.group_norm_channels_last` does the same with PyTorch's kernels: two reductions and a
broadcast multiply-add whose channels-last broadcast PyTorch's elementwise kernels run unvectorised. On an H100 at
B=256 the 17 norms of the 1x encoder took 3.2 ms that way in bf16 and 1.8 ms as these passes
(``benchmarks/bench_cnn.py --profile``); the whole bf16 step went from 7.43 to 5.63 ms. On by default
(``vpt_agent.layers.TRITON_CUDA_GROUP_NORM``; ``bench_cnn.py --variants torch-gn`` turns it off).
"""
from __future__ import annotations

from typing import Optional

import torch

from .triton_pool import takes, tl, triton  # triton None on CPU-only installs: the callers use PyTorch's kernels

#: Elements one program holds (pixels x padded channels).
BLOCK_ELEMENTS = 4096
#: Pixels one statistics program sums (a few blocks): enough programs for the GPU at any batch size.
PIXELS_PER_PROGRAM = 1024

if triton is not None:

    @triton.jit
    def _sums_kernel(x_ptr, sums_ptr, HW, n_chunks, C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                     PIXELS: tl.constexpr, SUM_AT_END: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        chunk = tl.program_id(1)
        c = tl.arange(0, BLOCK_C)
        c_ok = c < C
        sample = x_ptr + n * HW * C
        pivot = tl.load(sample + c, mask=c_ok, other=0.0).to(tl.float32)
        if SUM_AT_END:  # per element of the block, summed over the block's pixels once, after the loop
            s1 = tl.zeros((BLOCK_P, BLOCK_C), tl.float32)
            s2 = tl.zeros((BLOCK_P, BLOCK_C), tl.float32)
        else:  # summed over the block's pixels in every iteration
            s1 = tl.zeros((BLOCK_C,), tl.float32)
            s2 = tl.zeros((BLOCK_C,), tl.float32)
        for start in range(0, PIXELS, BLOCK_P):
            p = chunk * PIXELS + start + tl.arange(0, BLOCK_P)
            ok = (p < HW)[:, None] & c_ok[None, :]
            v = tl.load(sample + p.to(tl.int64)[:, None] * C + c[None, :], mask=ok, other=0.0).to(tl.float32)
            d = tl.where(ok, v - pivot[None, :], 0.0)
            if SUM_AT_END:
                s1 += d
                s2 += d * d
            else:
                s1 += tl.sum(d, axis=0)
                s2 += tl.sum(d * d, axis=0)
        if SUM_AT_END:
            s1 = tl.sum(s1, axis=0)
            s2 = tl.sum(s2, axis=0)
        out = sums_ptr + ((n * n_chunks + chunk) * 2) * C
        tl.store(out + c, s1, mask=c_ok)
        tl.store(out + C + c, s2, mask=c_ok)

    @triton.jit
    def _scale_shift_kernel(x_ptr, sums_ptr, w_ptr, b_ptr, scale_ptr, shift_ptr, HW, n_chunks, groups, eps,
                            C: tl.constexpr, BLOCK_C: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                            HAS_BIAS: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        c = tl.arange(0, BLOCK_C)
        c_ok = c < C
        s1 = tl.zeros((BLOCK_C,), tl.float64)
        s2 = tl.zeros((BLOCK_C,), tl.float64)
        for chunk in range(0, n_chunks):
            part = sums_ptr + ((n * n_chunks + chunk) * 2) * C
            s1 += tl.load(part + c, mask=c_ok, other=0.0).to(tl.float64)
            s2 += tl.load(part + C + c, mask=c_ok, other=0.0).to(tl.float64)
        pivot = tl.load(x_ptr + n * HW * C + c, mask=c_ok, other=0.0).to(tl.float64)  # what pass 1 subtracted
        count = HW * 1.0  # (not HW.to(...): Triton passes an int argument equal to 1 as a constant)
        mean_c = pivot + s1 / count
        sq_dev_c = tl.maximum(s2 - s1 * s1 / count, 0.0)  # squared deviations from each channel's own mean
        per_group = C // groups
        group = c // per_group
        mean = tl.zeros((BLOCK_C,), tl.float64)
        rstd = tl.zeros((BLOCK_C,), tl.float64)
        for g in range(0, groups):  # Chan's formula over the group's channels (equal counts)
            in_g = c_ok & (group == g)
            g_mean = tl.sum(tl.where(in_g, mean_c, 0.0), axis=0) / per_group
            g_sq = tl.sum(tl.where(in_g, sq_dev_c + count * (mean_c - g_mean) * (mean_c - g_mean), 0.0), axis=0)
            g_rstd = 1.0 / tl.sqrt(g_sq / (count * per_group) + eps)
            mean = tl.where(in_g, g_mean, mean)
            rstd = tl.where(in_g, g_rstd, rstd)
        scale = rstd
        if HAS_WEIGHT:
            scale = scale * tl.load(w_ptr + c, mask=c_ok, other=0.0).to(tl.float64)
        shift = -mean * scale
        if HAS_BIAS:
            shift = shift + tl.load(b_ptr + c, mask=c_ok, other=0.0).to(tl.float64)
        tl.store(scale_ptr + n * C + c, scale.to(tl.float32), mask=c_ok)
        tl.store(shift_ptr + n * C + c, shift.to(tl.float32), mask=c_ok)

    @triton.jit
    def _apply_kernel(x_ptr, y_ptr, scale_ptr, shift_ptr, HW, C: tl.constexpr, BLOCK_C: tl.constexpr,
                      BLOCK_P: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        p = tl.program_id(1) * BLOCK_P + tl.arange(0, BLOCK_P)
        c = tl.arange(0, BLOCK_C)
        c_ok = c < C
        ok = (p < HW)[:, None] & c_ok[None, :]
        scale = tl.load(scale_ptr + n * C + c, mask=c_ok, other=0.0)
        shift = tl.load(shift_ptr + n * C + c, mask=c_ok, other=0.0)
        offset = n * HW * C + p.to(tl.int64)[:, None] * C + c[None, :]
        v = tl.load(x_ptr + offset, mask=ok, other=0.0).to(tl.float32)
        y = v * scale[None, :] + shift[None, :]
        tl.store(y_ptr + offset, y.to(y_ptr.dtype.element_ty), mask=ok)


def group_norm(x: torch.Tensor, groups: int, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
               eps: float) -> Optional[torch.Tensor]:
    """``F.group_norm`` of a channels-last CUDA (N, C, H, W) tensor by the Triton passes; None where they do not
    apply (no Triton, not CUDA, not channels-last, an unusual dtype)."""
    if not takes(x):
        return None
    return _launch(x, groups, weight, bias, eps)


def _launch(x: torch.Tensor, groups: int, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
            eps: float) -> torch.Tensor:
    """The two passes on a channels-last ``x`` (any device Triton runs on, its CPU interpreter included)."""
    N, C, H, W = x.shape
    HW = H * W
    y = torch.empty_like(x, memory_format=torch.channels_last)
    if x.numel() == 0:
        return y
    block_c = triton.next_power_of_2(C)
    block_p = max(1, min(BLOCK_ELEMENTS // block_c, triton.next_power_of_2(HW)))
    pixels = max(block_p, min(PIXELS_PER_PROGRAM, triton.next_power_of_2(HW)))
    n_chunks = triton.cdiv(HW, pixels)
    sums = torch.empty(N, n_chunks, 2, C, dtype=torch.float32, device=x.device)
    # Summing at the end was faster for 16-bit activations and slower for fp32 ones: the 17 norms' statistics of a
    # 1x B=256 step took 0.90 vs 1.28 ms in bf16 and 1.47 vs 1.13 ms in fp32 (H100, kernel profiles of two runs).
    _sums_kernel[(N, n_chunks)](x, sums, HW, n_chunks, C=C, BLOCK_C=block_c, BLOCK_P=block_p, PIXELS=pixels,
                                SUM_AT_END=x.dtype != torch.float32)
    scale = torch.empty(N, C, dtype=torch.float32, device=x.device)
    shift = torch.empty_like(scale)
    _scale_shift_kernel[(N,)](x, sums, weight if weight is not None else sums, bias if bias is not None else sums,
                              scale, shift, HW, n_chunks, groups, eps, C=C, BLOCK_C=block_c,
                              HAS_WEIGHT=weight is not None, HAS_BIAS=bias is not None)
    _apply_kernel[(N, triton.cdiv(HW, block_p))](x, y, scale, shift, HW, C=C, BLOCK_C=block_c, BLOCK_P=block_p)
    return y

