"""The official ``FanInInitReLULayer``: optional pre-norm -> linear/conv -> optional ReLU.

The layer has a bias if and only if it has no norm; that rule is what makes our state_dict keys
(``norm.weight``, ``layer.weight``, ``layer.bias``) match the official ones.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


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
        norm = nn.GroupNorm(norm_groups, c_in) if norm_groups is not None else None
        return cls(nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm is None), norm, True, init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        x = self.layer(x)
        # In-place is safe: the layer output is a fresh tensor.
        return F.relu(x, inplace=True) if self.activation else x
