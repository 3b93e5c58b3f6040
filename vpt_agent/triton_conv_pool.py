"""The image encoder's first convolution, its bias, the max-pool after it and the ReLU as one Triton kernel on CUDA.

    frames x (N, H, W, C_in) in memory, C_in <= 4 (RGB)
      -> per pooled pixel (n, i, j), for each of the 9 pool-window pixels (r, q) = (2i-1+dy, 2j-1+dx) in the image:
             conv(r, q) = [x's 3x3 neighbourhood of (r, q): 9 * C_in values, zero outside] @ weight (9 * C_in, C_out)
                          + bias                                   (one small matrix product, float32 accumulation)
      -> max over the 9 (NaNs propagate) [-> max(., 0)] -> rounded once to x's dtype
      -> y (N, C_out, ceil(H/2), ceil(W/2)), channels-last

The convolution's output is the CNN's largest tensor (1x: 64 channels at 128x128, 537 MB in bf16 at B=256) and
the pool reads it back only to keep a quarter. Here it never reaches memory: each conv pixel is computed in
registers, up to 4 times (once per window it falls in; the products are tiny, 27 x C_out per pixel), and only the
pooled output is written. It replaces the convolution (cuDNN's bf16 kernel for 3 input channels is slow, see
:func:`vpt_agent.layers.conv3x3_as_matmul`), the bias add and :mod:`vpt_agent.triton_pool`'s pool: on an H100 at
B=256 it takes 0.37 ms in bf16 and 0.54 ms in fp32 where they took ~2.1 and ~1.9 ms (``benchmarks/bench_cnn.py
--profile``).

Rounding: the same sums in float32, in another order, as cuDNN's; max and ReLU do not round, so rounding once
after them equals rounding the conv output. fp32 inputs use TF32 products when ``torch.backends.cudnn.allow_tf32``
(what cuDNN would use for this convolution), true fp32 otherwise.
"""
from __future__ import annotations

from typing import Optional

import torch

from .triton_pool import takes, tl, triton  # triton None on CPU-only installs: the callers use PyTorch's kernels

#: Most input channels handled (the 9 * C_in products are padded to a power of two, at least 16).
MAX_IN_CHANNELS = 4
#: Elements of one program's float32 output tile (pooled pixels x padded output channels).
BLOCK_ELEMENTS = 4096

if triton is not None:

    @triton.jit
    def _conv_pool_kernel(x_ptr, w_ptr, b_ptr, y_ptr, n_out, H, W, OH, OW, C_IN: tl.constexpr,
                          C_OUT: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                          HAS_BIAS: tl.constexpr, RELU: tl.constexpr, PRECISION: tl.constexpr):
        p = tl.program_id(0).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)  # pooled pixels, (n, i, j) flattened
        p_ok = p < n_out
        j = (p % OW).to(tl.int32)
        i = ((p // OW) % OH).to(tl.int32)
        n = p // (OW * OH)
        k = tl.arange(0, BLOCK_K)  # a column of the neighbourhood: (ky, kx, channel), as the weight's rows
        k_ok = k < 9 * C_IN
        ky = k // (3 * C_IN) - 1
        kx = (k // C_IN) % 3 - 1
        tap = (ky * W + kx) * C_IN + k % C_IN  # the column's offset from its conv pixel's first channel
        c = tl.arange(0, BLOCK_C)
        c_ok = c < C_OUT
        w = tl.load(w_ptr + k[:, None] * C_OUT + c[None, :], mask=k_ok[:, None] & c_ok[None, :], other=0.0)
        if HAS_BIAS:
            bias = tl.load(b_ptr + c, mask=c_ok, other=0.0).to(tl.float32)
        else:
            bias = tl.zeros((BLOCK_C,), tl.float32)
        best = tl.full((BLOCK_P, BLOCK_C), float("-inf"), tl.float32)
        for dy in tl.static_range(3):
            for dx in tl.static_range(3):
                r = 2 * i - 1 + dy  # the conv pixel this window position reads
                q = 2 * j - 1 + dx
                in_image = p_ok & (r >= 0) & (r < H) & (q >= 0) & (q < W)
                h = r[:, None] + ky[None, :]
                v = q[:, None] + kx[None, :]
                ok = in_image[:, None] & k_ok[None, :] & (h >= 0) & (h < H) & (v >= 0) & (v < W)
                pixel = (n * H + r) * W + q  # int64: B * H * W * C_IN may pass 2^31
                a = tl.load(x_ptr + pixel[:, None] * C_IN + tap[None, :], mask=ok, other=0.0)
                conv = tl.dot(a, w, input_precision=PRECISION) + bias[None, :]
                conv = tl.where(in_image[:, None], conv, float("-inf"))  # the pool's padding
                best = tl.maximum(best, conv, propagate_nan=tl.PropagateNan.ALL)
        if RELU:
            best = tl.maximum(best, 0.0, propagate_nan=tl.PropagateNan.ALL)
        tl.store(y_ptr + p[:, None] * C_OUT + c[None, :], best.to(y_ptr.dtype.element_ty),
                 mask=p_ok[:, None] & c_ok[None, :])


def conv3x3_max_pool(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                     relu: bool) -> Optional[torch.Tensor]:
    """``max_pool2d(conv2d(x, weight, bias, padding=1), 3, stride=2, padding=1)`` [then ReLU] of a channels-last
    CUDA (N, C_in, H, W) tensor with C_in <= :data:`MAX_IN_CHANNELS`, by the Triton kernel; None where it does not
    apply (no Triton, not CUDA, not channels-last, an unusual dtype, more channels, another kernel size)."""
    if (not takes(x) or not 0 < x.shape[1] <= MAX_IN_CHANNELS or weight.shape[1:] != (x.shape[1], 3, 3)
            or weight.dtype != x.dtype):
        return None
    return _launch(x, weight, bias, relu)


def _launch(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], relu: bool) -> torch.Tensor:
    """The kernel (any device Triton runs on, its CPU interpreter included)."""
    N, c_in, H, W = x.shape
    c_out = weight.shape[0]
    OH, OW = (H + 1) // 2, (W + 1) // 2
    y = torch.empty((N, c_out, OH, OW), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    n_out = N * OH * OW
    if n_out == 0 or c_out == 0:
        return y
    w = weight.permute(2, 3, 1, 0).reshape(9 * c_in, c_out).contiguous()  # rows in (ky, kx, channel) order
    block_c = max(16, triton.next_power_of_2(c_out))  # tl.dot needs every side >= 16
    block_k = max(16, triton.next_power_of_2(9 * c_in))
    block_p = max(16, BLOCK_ELEMENTS // block_c)
    precision = "tf32" if x.dtype == torch.float32 and torch.backends.cudnn.allow_tf32 else "ieee"
    _conv_pool_kernel[(triton.cdiv(n_out, block_p),)](
        x, w, bias if bias is not None else w, y, n_out, H, W, OH, OW, C_IN=c_in, C_OUT=c_out, BLOCK_K=block_k,
        BLOCK_C=block_c, BLOCK_P=block_p, HAS_BIAS=bias is not None, RELU=relu, PRECISION=precision)
    return y
