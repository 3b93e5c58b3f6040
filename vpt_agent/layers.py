"""The official ``FanInInitReLULayer``: optional pre-norm -> linear/conv -> optional ReLU, and the CNN's GroupNorm
and convolution (each with a CUDA path that suits our channels-last activations).

The layer has a bias if and only if it has no norm; that rule is what makes our state_dict keys
(``norm.weight``, ``layer.weight``, ``layer.bias``) match the official ones.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

#: Whether :class:`GroupNorm` takes its channels-last path on CUDA (benchmarks switch it off to compare).
CHANNELS_LAST_GROUP_NORM = True
#: Whether that path runs as two Triton passes without autograd (:mod:`vpt_agent.triton_norm`;
#: ``benchmarks/bench_cnn.py`` turns it off as ``torch-gn``).
TRITON_CUDA_GROUP_NORM = True
#: Whether :class:`Conv2d` runs bf16/fp16 3x3 convolutions of few input channels as one matrix product on CUDA
#: (in fp32 cuBLAS computes in true fp32 and was slower than cuDNN's TF32 kernel, so fp32 stays with cuDNN).
FEW_CHANNEL_CONV_AS_MATMUL = True
#: "Few": the image encoder's first convolution sees the 3 RGB channels.
FEW_CHANNELS = 4
#: Whether the CNN's max-pools (with the ReLU after them) run as one Triton kernel on CUDA without autograd
#: (:func:`max_pool3x3s2`).
TRITON_CUDA_POOL = True
#: Whether :class:`Conv2d` runs a convolution and its ReLU as one cuDNN call on CUDA without autograd.
FUSED_CUDA_CONV_RELU = True
#: Whether the first stack's convolution (few input channels, no norm), its bias, the max-pool and the ReLU run as
#: one Triton kernel on CUDA without autograd (:func:`conv_max_pool3x3s2`; ``benchmarks/bench_cnn.py`` turns it off
#: as ``no-conv-pool``).
TRITON_CUDA_CONV_POOL = True


def group_norm_channels_last(x: torch.Tensor, groups: int, weight: Optional[torch.Tensor],
                             bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """``F.group_norm`` for (N, C, H, W) that keeps ``x``'s memory layout.

        x -> per (sample, group): mean and variance in float32 -> scale = w * rstd, shift = b - mean * scale
          -> y = x * scale + shift        (one broadcast multiply-add: the output keeps x's strides)
    """
    N, C, H, W = x.shape
    g = x.view(N, groups, C // groups, H, W)  # splitting C is a view in any layout
    dims = (2, 3, 4)
    count = (C // groups) * H * W
    if x.dtype == torch.float32:
        var, mean = torch.var_mean(g, dim=dims, correction=0)  # (N, groups), one Welford pass
    else:  # float32 statistics of a bf16/fp16 tensor without a float32 copy of it (var_mean would round them)
        mean = g.mean(dim=dims, dtype=torch.float32)
        mean_sq = torch.linalg.vector_norm(g, 2, dim=dims, dtype=torch.float32).square() / count
        var = (mean_sq - mean.square()).clamp_min(0)
    rstd = torch.rsqrt(var + eps)
    scale = rstd[:, :, None].expand(N, groups, C // groups)
    if weight is not None:
        scale = scale * weight.float().view(1, groups, C // groups)
    shift = -mean[:, :, None] * scale
    if bias is not None:
        shift = shift + bias.float().view(1, groups, C // groups)
    shape = (N, C, 1, 1)
    return torch.addcmul(shift.reshape(shape).to(x.dtype), x, scale.reshape(shape).to(x.dtype))


class GroupNorm(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and keys) that keeps channels-last CUDA tensors channels-last.

    PyTorch's CUDA kernel makes its input NCHW-contiguous first. In our channels-last CNN that means two full
    copies per norm: to NCHW, and back to NHWC for the next convolution. On CUDA, channels-last inputs go
    through :func:`group_norm_channels_last` instead; the CPU kernel handles channels-last natively.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (CHANNELS_LAST_GROUP_NORM and x.is_cuda and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            if TRITON_CUDA_GROUP_NORM and _no_autograd(x, self.weight, self.bias):
                from . import triton_norm  # imports Triton (~0.2 s), so only once a CUDA norm runs

                y = _triton("TRITON_CUDA_GROUP_NORM", triton_norm.group_norm, x, self.num_groups, self.weight,
                            self.bias, self.eps)
                if y is not None:
                    return y
            return group_norm_channels_last(x, self.num_groups, self.weight, self.bias, self.eps)
        return super().forward(x)


def _no_autograd(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether no gradient will flow through ``tensors`` (inference): the only case the fused/Triton paths serve.
    Pass the layer's parameters too: with a frozen input (say, a frozen first stack) they may still need one."""
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


def _triton(switch: str, kernel, *args) -> Optional[torch.Tensor]:
    """``kernel(*args)``, a Triton path (None where it does not apply). If it raises (a Triton/driver mismatch, say),
    the module switch ``switch`` is turned off, the failure logged once, and None returned: PyTorch's kernels run."""
    try:
        return kernel(*args)
    except Exception as err:  # noqa: BLE001  (any failure of the optional path: fall back, loudly, once)
        globals()[switch] = False
        logger.warning("the Triton path %s failed (%s: %s); using PyTorch's kernels", switch, type(err).__name__,
                       str(err).splitlines()[0] if str(err) else "")
        return None


def max_pool3x3s2(x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """The CNN's max-pool, ``F.max_pool2d(x, 3, stride=2, padding=1)``, then a ReLU if ``relu``.

    On CUDA without autograd (and :data:`TRITON_CUDA_POOL` on) both are one Triton kernel
    (:mod:`vpt_agent.triton_pool`; PyTorch's max-pool kernel also writes an int64 index per output). Where it does
    not apply (no Triton, another layout) or fails, PyTorch's kernels run (a failure is logged once).
    """
    if TRITON_CUDA_POOL and x.is_cuda and _no_autograd(x):
        from . import triton_pool  # imports Triton (~0.2 s), so only once a CUDA pool runs

        y = _triton("TRITON_CUDA_POOL", triton_pool.max_pool3x3s2_relu, x, relu)
        if y is not None:
            return y
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    return F.relu(x, inplace=True) if relu else x


def conv_max_pool3x3s2(layer: "NormedLayer", x: torch.Tensor) -> torch.Tensor:
    """``max_pool3x3s2(layer(x, relu=False), relu=layer.activation)``: a stack's first convolution and its pool.

    On CUDA without autograd (and :data:`TRITON_CUDA_CONV_POOL` on), for the image's few-channel convolution without
    a norm (the first stack's), all of it is one Triton kernel (:mod:`vpt_agent.triton_conv_pool`): the convolution's
    full-size output, the CNN's largest tensor, is never written. Elsewhere, or if it fails (logged once), the
    convolution and :func:`max_pool3x3s2` run.
    """
    conv = layer.layer
    if (TRITON_CUDA_CONV_POOL and x.is_cuda and layer.norm is None and isinstance(conv, Conv2d) and _is_3x3_same(conv)
            and _no_autograd(x, conv.weight, conv.bias)):  # the kernel checks the channels
        from . import triton_conv_pool  # imports Triton (~0.2 s), so only once a CUDA convolution runs

        y = _triton("TRITON_CUDA_CONV_POOL", triton_conv_pool.conv3x3_max_pool, x, conv.weight, conv.bias,
                    layer.activation)
        if y is not None:
            return y
    return max_pool3x3s2(layer(x, relu=False), relu=layer.activation)


def _is_3x3_same(conv: nn.Conv2d) -> bool:
    """A 3x3 convolution, stride 1, zero padding 1, no dilation or groups: the CNN's, and what the kernels assume."""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


def conv3x3_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """A 3x3 convolution (stride 1, padding 1) of a channels-last ``x`` (N, C, H, W) as one matrix product.

        x (N, H, W, C) -> zero-pad H, W by 1 -> the 9 shifted (N, H, W, C) windows side by side: (N*H*W, 9C)
          -> @ weight as (9C, C_out) [+ bias] -> (N, H, W, C_out), returned as a channels-last (N, C_out, H, W)

    With 3 input channels, cuDNN's channels-last kernel took 2.6 ms for the 2x encoder's first convolution
    (3 -> 128 channels, 128x128, B=256) on an H200, in bf16 and fp32 alike (``benchmarks/bench_cnn.py --size 2x
    --ops``): far from the memory speed at which a product can write the same output. The 27 columns are padded
    to 32 with zeros so that bf16/fp16 rows are 16-byte aligned.
    """
    N, C, H, W = x.shape
    c_out = weight.shape[0]
    k = 9 * C
    k_pad = -k % 8
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))  # (N, H+2, W+2, C); the permute is a view
    windows = [padded[:, dy:dy + H, dx:dx + W] for dy in range(3) for dx in range(3)]
    if k_pad:
        windows.append(x.new_zeros(N, H, W, k_pad))
    cols = torch.cat(windows, dim=-1).view(N * H * W, k + k_pad)
    w = weight.permute(2, 3, 1, 0).reshape(k, c_out)  # rows in the windows' (dy, dx, channel) order
    if k_pad:
        w = torch.cat([w, w.new_zeros(k_pad, c_out)])
    out = torch.mm(cols, w) if bias is None else torch.addmm(bias, cols, w)
    return out.view(N, H, W, c_out).permute(0, 3, 1, 2)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and keys), optionally followed by its ReLU, with two CUDA paths for inference:

    * bf16/fp16 3x3 convolutions of few input channels as one matrix product (:func:`conv3x3_as_matmul`, for
      channels-last inputs, :data:`FEW_CHANNEL_CONV_AS_MATMUL`);
    * a convolution and its ReLU as one cuDNN call (``torch.cudnn_convolution_relu``, without autograd,
      :data:`FUSED_CUDA_CONV_RELU`): the ReLU is applied before the output is written, saving a pass over it.
    """

    def forward(self, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
        if (FEW_CHANNEL_CONV_AS_MATMUL and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and x.dim() == 4
                and self.in_channels <= FEW_CHANNELS and _is_3x3_same(self)
                and x.is_contiguous(memory_format=torch.channels_last)):
            y = conv3x3_as_matmul(x, self.weight, self.bias)
        elif (relu and FUSED_CUDA_CONV_RELU and x.is_cuda and self.padding_mode == "zeros"
                and isinstance(self.padding, tuple) and _no_autograd(x, self.weight, self.bias)):
            return torch.cudnn_convolution_relu(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                                                self.groups)
        else:
            y = super().forward(x)
        # In place: y is a fresh tensor.
        return F.relu(y, inplace=True) if relu else y


class NormedLayer(nn.Module):
    """``y = relu(layer(norm(x)))`` with fan-in init (each output unit's weight has L2 norm ``init_scale``)."""

    def __init__(self, layer: nn.Module, norm: Optional[nn.Module] = None, activation: bool = True,
                 init_scale: float = 1.0):
        super().__init__()
        self.norm = norm
        self.layer = layer
        self.activation = activation
        with torch.no_grad():
            w = layer.weight
            w.mul_(init_scale / w.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (w.dim() - 1))))
            if layer.bias is not None:
                layer.bias.zero_()

    @classmethod
    def linear(cls, n_in: int, n_out: int, layer_norm: bool, activation: bool = True,
               init_scale: float = 1.0) -> "NormedLayer":
        norm = nn.LayerNorm(n_in) if layer_norm else None
        return cls(nn.Linear(n_in, n_out, bias=norm is None), norm, activation, init_scale)

    @classmethod
    def conv3x3(cls, c_in: int, c_out: int, norm_groups: Optional[int], init_scale: float = 1.0,
                activation: bool = True) -> "NormedLayer":
        norm = GroupNorm(norm_groups, c_in) if norm_groups is not None else None
        return cls(Conv2d(c_in, c_out, 3, padding=1, bias=norm is None), norm, activation, init_scale)

    def forward(self, x: torch.Tensor, relu: bool = True) -> torch.Tensor:
        """``relu=False`` leaves the layer's ReLU out, for a caller that applies it later."""
        relu = relu and self.activation
        if self.norm is not None:
            x = self.norm(x)
        if isinstance(self.layer, Conv2d):
            return self.layer(x, relu=relu)  # the conv applies it (fused with the conv on CUDA)
        x = self.layer(x)
        return F.relu(x, inplace=True) if relu else x  # in place: x is the layer's fresh output
