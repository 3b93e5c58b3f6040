"""ImpalaCNN image encoder (Espeholt et al. 2018) as configured by VPT.

Each stack: 3x3 conv (+ ReLU) -> 3x3/2 max-pool -> GroupNorm -> two residual blocks. Then the CHW-flattened
features go through ``dense`` (LayerNorm -> Linear -> ReLU) to 256 features.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn

from .layers import GroupNorm, NormedLayer, conv_max_pool3x3s2


class ResidualBlock(nn.Module):
    """``x + relu(conv1(relu(conv0(x))))``, each conv with its own pre-norm (``relu=False``: without the ReLUs)."""

    def __init__(self, chans: int, norm_groups: Optional[int], init_scale: float, relu: bool = True):
        super().__init__()
        s = math.sqrt(init_scale)
        self.conv0 = NormedLayer.conv3x3(chans, chans, norm_groups, s, activation=relu)
        self.conv1 = NormedLayer.conv3x3(chans, chans, norm_groups, s, activation=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(self.conv0(x))


class DownStack(nn.Module):
    """One Impala stack: firstconv, optional max-pool + GroupNorm ``n``, residual blocks."""

    def __init__(self, c_in: int, c_out: int, n_blocks: int, norm_groups: Optional[int], first_conv_norm: bool,
                 pool: bool = True, post_pool_groups: Optional[int] = None, init_scale: float = 1.0,
                 relu: bool = True):
        super().__init__()
        self.firstconv = NormedLayer.conv3x3(c_in, c_out, norm_groups if first_conv_norm else None, activation=relu)
        self.pool = pool
        # The official stack builds this norm whenever post_pool_groups is set, but applies it only after a pool
        # (so without pooling it is in the state_dict, unused).
        self.n = GroupNorm(post_pool_groups, c_out) if post_pool_groups is not None else None
        self.blocks = nn.ModuleList(
            [ResidualBlock(c_out, norm_groups, init_scale / math.sqrt(n_blocks), relu) for _ in range(n_blocks)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool:
            # relu(max(window)) == max(relu(window)): pooling first lets the ReLU run on the 4x smaller tensor
            # (the same values, bit for bit; the first stack's 128x128 output is the CNN's largest tensor, and on
            # CUDA its convolution, pool and ReLU are one kernel that never writes it).
            x = conv_max_pool3x3s2(self.firstconv, x)
            if self.n is not None:
                x = self.n(x)
        else:
            x = self.firstconv(x)
        for block in self.blocks:
            x = block(x)
        return x


class ImpalaCNN(nn.Module):
    """Frames (N, C, H, W) float -> features (N, ``outsize``). ``relu=False``: no ReLU after any convolution or
    the dense layer (the official ``init_norm_kwargs.use_activation=False``)."""

    def __init__(self, img_shape: Sequence[int], chans: Sequence[int], outsize: int = 256, n_blocks: int = 2,
                 norm_groups: Optional[int] = 1, dense_layer_norm: bool = True, first_conv_norm: bool = False,
                 pool: bool = True, post_pool_groups: Optional[int] = None, relu: bool = True):
        super().__init__()
        h, w, c = img_shape
        self.stacks = nn.ModuleList()
        for i, c_out in enumerate(chans):
            self.stacks.append(DownStack(
                c, c_out, n_blocks, norm_groups, first_conv_norm=first_conv_norm if i == 0 else True,
                pool=pool, post_pool_groups=post_pool_groups, init_scale=math.sqrt(len(chans)), relu=relu,
            ))
            c = c_out
            if pool:
                h, w = (h + 1) // 2, (w + 1) // 2
        self.out_shape: Tuple[int, int, int] = (c, h, w)
        self.dense = NormedLayer.linear(c * h * w, outsize, layer_norm=dense_layer_norm, init_scale=1.4,
                                        activation=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stack in self.stacks:
            x = stack(x)
        return self.dense(x.flatten(1))  # flatten in (C, H, W) order, as the official code does
