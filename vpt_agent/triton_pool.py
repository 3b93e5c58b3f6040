"""The CNN's 3x3/2 max-pool (+ ReLU) on CUDA as one Triton kernel that reads channels-last activations once.

    x (N, H, W, C) in memory  ->  per output pixel (n, i, j), all C channels at once:
        max over the 9 inputs (2i-1+dy, 2j-1+dx), dy, dx in 0..2, that lie inside the image
        [-> max(., 0)]  ->  y (N, ceil(H/2), ceil(W/2), C), channels-last like x

PyTorch's CUDA max-pool also writes an int64 index per output (for a backward pass inference never runs) and took
1.04 ms for the 1x encoder's first pool at B=256 on an H200 in bf16; a kernel generated for that one shape took
0.18 ms (``benchmarks/bench_cnn.py --ops``). NaNs propagate as in PyTorch's kernel. Without Triton (or for other
layouts) :func:`max_pool3x3s2_relu` returns None and the caller runs PyTorch's kernels.
"""
from __future__ import annotations

from typing import Optional

import torch

try:  # here for the three kernel modules (triton_norm and triton_conv_pool import them from this one)
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the callers use PyTorch's kernels
    triton = tl = None

#: The activation dtypes the CNN's Triton kernels take (:func:`takes`).
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: Elements one program holds (output pixels x padded channels): enough work per program, few registers.
BLOCK_ELEMENTS = 4096

if triton is not None:

    @triton.jit
    def _pool_kernel(x_ptr, y_ptr, n_out, H, W, OH, OW, C: tl.constexpr, BLOCK_C: tl.constexpr,
                     BLOCK_P: tl.constexpr, RELU: tl.constexpr):
        p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)  # output pixels, (n, i, j) flattened
        c = tl.arange(0, BLOCK_C)
        p_ok = p < n_out
        c_ok = c < C
        j = p % OW
        i = (p // OW) % OH
        n = p // (OW * OH)
        acc = tl.full((BLOCK_P, BLOCK_C), float("-inf"), tl.float32)
        for dy in tl.static_range(3):
            for dx in tl.static_range(3):
                h = 2 * i - 1 + dy
                w = 2 * j - 1 + dx
                inside = p_ok & (h >= 0) & (h < H) & (w >= 0) & (w < W)
                offset = ((n * H + h) * W + w) * C
                v = tl.load(x_ptr + offset[:, None] + c[None, :], mask=inside[:, None] & c_ok[None, :],
                            other=float("-inf"))
                acc = tl.maximum(acc, v.to(tl.float32), propagate_nan=tl.PropagateNan.ALL)
        if RELU:
            acc = tl.maximum(acc, 0.0, propagate_nan=tl.PropagateNan.ALL)
        tl.store(y_ptr + p[:, None] * C + c[None, :], acc.to(y_ptr.dtype.element_ty),
                 mask=p_ok[:, None] & c_ok[None, :])


def max_pool3x3s2_relu(x: torch.Tensor, relu: bool) -> Optional[torch.Tensor]:
    """``F.max_pool2d(x, 3, stride=2, padding=1)`` [then ReLU] of a channels-last CUDA (N, C, H, W) tensor, by the
    Triton kernel; None where it does not apply (no Triton, not CUDA, not channels-last, an unusual dtype).

    Exact: a maximum does not round (bf16/fp16 values are compared in float32, where they are exactly
    representable, and written back unchanged).
    """
    if not takes(x):
        return None
    return _launch(x, relu)


def takes(x: torch.Tensor) -> bool:
    """Whether the CNN's Triton kernels (this module's, :mod:`vpt_agent.triton_norm`'s and
    :mod:`vpt_agent.triton_conv_pool`'s) take ``x``: Triton is installed and ``x`` is a channels-last (N, C, H, W)
    CUDA tensor in fp32, bf16 or fp16."""
    return (triton is not None and x.is_cuda and x.dim() == 4 and x.dtype in DTYPES
            and x.is_contiguous(memory_format=torch.channels_last))


def _launch(x: torch.Tensor, relu: bool) -> torch.Tensor:
    """The kernel on a channels-last ``x`` (any device Triton runs on, its CPU interpreter included)."""
    N, C, H, W = x.shape
    OH, OW = (H + 1) // 2, (W + 1) // 2
    y = torch.empty((N, C, OH, OW), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    n_out = N * OH * OW
    if n_out == 0 or C == 0:
        return y
    block_c = triton.next_power_of_2(C)
    block_p = max(1, BLOCK_ELEMENTS // block_c)
    grid = (triton.cdiv(n_out, block_p),)
    _pool_kernel[grid](x, y, n_out, H, W, OH, OW, C=C, BLOCK_C=block_c, BLOCK_P=block_p, RELU=relu)
    return y
