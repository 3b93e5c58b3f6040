"""The official ``FanInInitReLULayer``: optional pre-norm -> linear/conv -> optional ReLU, and the CNN's GroupNorm.

The layer has a bias if and only if it has no norm; that rule is what makes our state_dict keys
(``norm.weight``, ``layer.weight``, ``layer.bias``) match the official ones.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


#: Whether :class:`GroupNorm` takes its channels-last path on CUDA (benchmarks switch it off to compare).
CHANNELS_LAST_GROUP_NORM = True


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
            return group_norm_channels_last(x, self.num_groups, self.weight, self.bias, self.eps)
        return super().forward(x)


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
    def conv3x3(cls, c_in: int, c_out: int, norm_groups: Optional[int], init_scale: float = 1.0) -> "NormedLayer":
        norm = GroupNorm(norm_groups, c_in) if norm_groups is not None else None
        return cls(nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm is None), norm, True, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        x = self.layer(x)
        # In-place is safe: the layer output is a fresh tensor.
        return F.relu(x, inplace=True) if self.activation else x
