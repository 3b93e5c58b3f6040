"""The CNN's GroupNorm on channels-last CUDA activations as two Triton passes (statistics, then apply).

    x (N, H, W, C) in memory
      -> pass 1, per (sample n, chunk of pixels): per channel c, in float32,
             s1[c] = sum (x - pivot[c]),  s2[c] = sum (x - pivot[c])^2      (pivot: pixel 0's value, against
                                                                            cancellation in the variance)
      -> float64, tiny: per channel mean and squared deviations, combined into per-group mean and variance
         (Chan's parallel formula) -> per (n, c): scale = weight * rstd, shift = bias - mean * scale
      -> pass 2: y = x * scale + shift in float32, rounded once to x's dtype; y channels-last like x

:func:`vpt_agent.layers.group_norm_channels_last` does the same with PyTorch's kernels: two reductions and a
broadcast multiply-add whose channels-last broadcast PyTorch's elementwise kernels run unvectorised (on an H200 at
B=256 the norms' passes took ~3.5 ms of the 1x bf16 forward's 7.7, ``benchmarks/bench_cnn.py --profile``). Not yet
timed on a GPU, hence off by default (``vpt_agent.layers.TRITON_CUDA_GROUP_NORM``).
"""
from __future__ import annotations

from typing import Optional

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the callers use PyTorch's kernels
    triton = None

#: Elements one program holds (pixels x padded channels).
BLOCK_ELEMENTS = 4096
#: Pixels one statistics program sums (a few blocks): enough programs for the GPU at any batch size.
PIXELS_PER_PROGRAM = 1024

if triton is not None:

    @triton.jit
    def _sums_kernel(x_ptr, sums_ptr, HW, n_chunks, C: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                     PIXELS: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        chunk = tl.program_id(1)
        c = tl.arange(0, BLOCK_C)
        c_ok = c < C
        sample = x_ptr + n * HW * C
        pivot = tl.load(sample + c, mask=c_ok, other=0.0).to(tl.float32)
        s1 = tl.zeros((BLOCK_C,), tl.float32)
        s2 = tl.zeros((BLOCK_C,), tl.float32)
        for start in range(0, PIXELS, BLOCK_P):
            p = chunk * PIXELS + start + tl.arange(0, BLOCK_P)
            ok = (p < HW)[:, None] & c_ok[None, :]
            v = tl.load(sample + p.to(tl.int64)[:, None] * C + c[None, :], mask=ok, other=0.0).to(tl.float32)
            d = tl.where(ok, v - pivot[None, :], 0.0)
            s1 += tl.sum(d, axis=0)
            s2 += tl.sum(d * d, axis=0)
        out = sums_ptr + ((n * n_chunks + chunk) * 2) * C
        tl.store(out + c, s1, mask=c_ok)
        tl.store(out + C + c, s2, mask=c_ok)

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
    if (triton is None or not x.is_cuda or x.dim() != 4 or x.dtype not in (torch.float32, torch.bfloat16, torch.float16)
            or not x.is_contiguous(memory_format=torch.channels_last)):
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
    _sums_kernel[(N, n_chunks)](x, sums, HW, n_chunks, C=C, BLOCK_C=block_c, BLOCK_P=block_p, PIXELS=pixels)
    scale, shift = _scale_shift(x, sums, groups, weight, bias, eps)
    _apply_kernel[(N, triton.cdiv(HW, block_p))](x, y, scale, shift, HW, C=C, BLOCK_C=block_c, BLOCK_P=block_p)
    return y


def _scale_shift(x: torch.Tensor, sums: torch.Tensor, groups: int, weight: Optional[torch.Tensor],
                 bias: Optional[torch.Tensor], eps: float):
    """Per (n, c) float32 scale and shift from the chunks' pivot-shifted sums (float64 while combining)."""
    N, C, H, W = x.shape
    HW = H * W
    pivot = x[:, :, 0, 0].double()  # (N, C): what pass 1 subtracted
    s1, s2 = sums.double().sum(dim=1).unbind(1)  # (N, C) each, over all chunks
    mean_c = pivot + s1 / HW
    sq_dev_c = (s2 - s1 * s1 / HW).clamp_min(0)  # sum of squared deviations from each channel's own mean
    mean_c, sq_dev_c = mean_c.view(N, groups, C // groups), sq_dev_c.view(N, groups, C // groups)
    mean = mean_c.mean(dim=2, keepdim=True)  # channels of a group have equal counts
    var = (sq_dev_c.sum(dim=2, keepdim=True) + HW * (mean_c - mean).square().sum(dim=2, keepdim=True)) / (
        HW * (C // groups))
    scale = torch.rsqrt(var + eps).expand(N, groups, C // groups).reshape(N, C)
    if weight is not None:
        scale = scale * weight.double()
    shift = -mean.expand(N, groups, C // groups).reshape(N, C) * scale
    if bias is not None:
        shift = shift + bias.double()
    return scale.float().contiguous(), shift.float().contiguous()
