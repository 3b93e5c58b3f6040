"""VPT's recurrent transformer: masked self-attention over a key/value memory, with a learned
relative-position bias, wrapped in pre-LN residual blocks.

Per layer the memory holds the K/V projections of the last ``L = attention_memory_size - timesteps``
frames plus a validity flag per slot. A query at frame ``i`` sees at most ``L`` frames: itself and the
``L - 1`` before it (the oldest memory slot is never visible). ``first`` marks an episode start: the
memory's slots are masked out (not erased), which is exactly equivalent to a fresh memory.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from .config import PolicyConfig
from .layers import NormedLayer

N_BASIS = 10  # relative-position basis functions per head


class LayerMemory(NamedTuple):
    """One layer's recurrent state. ``keys``/``values``: (B, L, H); ``valid``: (B, L) bool."""

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor


@functools.lru_cache(maxsize=64)
def _relative_index(t: int, L: int, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """For query i (absolute column L+i) and key column j < L+t: distance index and in-band flag.

    Distance d = (L + i) - j; in band iff 0 <= d <= L-1. Out-of-band entries point at index L, a zero
    column appended to the bias table.
    """
    # Cached across calls, so never made as inference tensors: a training forward after an inference-mode one
    # with the same (t, L) would otherwise get tensors that autograd refuses to save.
    with torch.inference_mode(False):
        i = torch.arange(t, device=device)[:, None]
        j = torch.arange(L + t, device=device)[None, :]
        d = L + i - j
        in_band = (d >= 0) & (d <= L - 1)
        return torch.where(in_band, d, torch.full_like(d, L)), in_band


def _normed_linear(n_in: int, n_out: int, scale: float, bias: bool = True) -> nn.Linear:
    """Linear layer with fan-in init: each output row has L2 norm ``scale``; zero bias."""
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(scale / layer.weight.norm(dim=1, keepdim=True))
        if bias:
            layer.bias.zero_()
    return layer


class SelfAttention(nn.Module):
    """Multi-head attention with muP scaling (1/d_h) and a relative-position bias per query.

    The bias for query i, key j, head h is ``sum_n R[i, h, n] * b_nd[n, distance(i, j)]`` where
    ``R = r_layer(y)`` depends on the query's own input. It is not scaled by 1/d_h.
    """

    def __init__(self, hidsize: int, heads: int, maxlen: int, init_scale: float = 1.0):
        super().__init__()
        self.heads, self.maxlen = heads, maxlen
        self.scale = heads / hidsize  # muP: 1/d_h on the query-key products, not 1/sqrt(d_h)
        s = math.sqrt(init_scale)
        self.q_layer = _normed_linear(hidsize, hidsize, 0.1)
        self.k_layer = _normed_linear(hidsize, hidsize, 0.2, bias=False)
        self.v_layer = _normed_linear(hidsize, hidsize, s, bias=False)
        self.proj_layer = _normed_linear(hidsize, hidsize, s)
        self.r_layer = _normed_linear(hidsize, N_BASIS * heads, 0.1)
        self.b_nd = nn.Parameter(torch.randn(N_BASIS, maxlen) * 0.2)

    def forward(self, y: torch.Tensor, mem: LayerMemory, allowed: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``y``: (B, t, H) normalised input; ``allowed``: (B, t, L+t) bool or None (attend everywhere).

        Returns ``(attention output (B, t, H), new keys (B, t, H), new values (B, t, H))``.
        """
        B, t, H = y.shape
        q, k, v = self.q_layer(y), self.k_layer(y), self.v_layer(y)
        keys = torch.cat([mem.keys.to(k.dtype), k], dim=1)
        values = torch.cat([mem.values.to(v.dtype), v], dim=1)
        bias = self._position_bias(y, t)  # (B, nh, t, L+t), float32
        if allowed is not None:
            bias = bias.masked_fill(~allowed[:, None], float("-inf"))
        dtype, split = q.dtype, self.split_heads
        a = F.scaled_dot_product_attention(split(q), split(keys.to(dtype)), split(values.to(dtype)),
                                           attn_mask=bias.to(dtype), scale=self.scale)
        a = a.transpose(1, 2).reshape(B, t, H)
        return self.proj_layer(a), k, v

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, nh, T, d_h)."""
        B, T, H = x.shape
        return x.view(B, T, self.heads, H // self.heads).transpose(1, 2)

    def distance_bias(self, y: torch.Tensor) -> torch.Tensor:
        """Bias of each query for each distance 0..L-1: (B, nh, t, L), float32."""
        B, t = y.shape[:2]
        r = self.r_layer(y).float().view(B, t, self.heads, N_BASIS)
        return torch.einsum("bthn,nl->bhtl", r, self.b_nd.float())

    def _position_bias(self, y: torch.Tensor, t: int) -> torch.Tensor:
        B = y.shape[0]
        L = self.maxlen
        per_distance = F.pad(self.distance_bias(y), (0, 1))  # index L -> 0 (out of band)
        index, _ = _relative_index(t, L, y.device)
        return per_distance.gather(-1, index.expand(B, self.heads, t, L + t))


def _last(x: torch.Tensor, n: int) -> torch.Tensor:
    """The last ``n`` steps of ``x`` (B, T, ...); ``n = 0`` gives an empty memory (``x[:, -0:]`` would keep all)."""
    return x[:, x.shape[1] - n:]


class MaskedAttention(nn.Module):
    """Builds the attention mask from the memory's validity flags and ``first``, and updates the memory."""

    def __init__(self, hidsize: int, heads: int, maxlen: int, mask_style: str, init_scale: float = 1.0):
        super().__init__()
        self.maxlen = maxlen
        self.mask_style = mask_style
        self.orc_block = SelfAttention(hidsize, heads, maxlen, init_scale)

    def forward(self, y: torch.Tensor, first: torch.Tensor, mem: LayerMemory) -> Tuple[torch.Tensor, LayerMemory]:
        B, t, _ = y.shape
        L = self.maxlen
        # Memory slots from before an episode start are invisible (and stay so as they age).
        valid = mem.valid & ~first[:, None]
        allowed = None
        if self.mask_style == "clipped_causal":
            _, in_band = _relative_index(t, L, y.device)
            new_cols = torch.ones(B, t, dtype=torch.bool, device=y.device)
            allowed = in_band[None] & torch.cat([valid, new_cols], dim=1)[:, None, :]
        out, k, v = self.orc_block(y, mem, allowed)
        new_mem = LayerMemory(
            keys=_last(torch.cat([mem.keys, k.to(mem.keys.dtype)], dim=1), L),
            values=_last(torch.cat([mem.values, v.to(mem.values.dtype)], dim=1), L),
            valid=_last(torch.cat([valid, torch.ones(B, t, dtype=torch.bool, device=y.device)], dim=1), L),
        )
        return out, new_mem


class ResidualBlock(nn.Module):
    """What every recurrent block (transformer or LSTM, official ``ResidualRecurrentBlock``) shares: the optional
    pointwise MLP ``mlp0`` (LayerNorm -> linear H -> ratio*H -> ReLU) and ``mlp1`` (linear back to H), applied
    after the recurrence with a residual when ``recurrence_is_residual``.

    Subclasses register ``pre_r_ln`` and ``r`` after this ``__init__``, so the state_dict keys come in the
    official order (mlp0, mlp1, pre_r_ln, r). ``self.scale`` is the init scale of ``r`` and ``mlp1``: the block's
    share of the stack's scale, halved in variance when the MLP adds a second residual.
    """

    def __init__(self, cfg: PolicyConfig, init_scale: float):
        super().__init__()
        H = cfg.hidsize
        self.scale = init_scale * (2 ** -0.5 if (cfg.use_pointwise_layer and cfg.recurrence_is_residual) else 1.0)
        self.residual = cfg.recurrence_is_residual
        self.mlp0 = self.mlp1 = None
        if cfg.use_pointwise_layer:
            self.mlp0 = NormedLayer.linear(H, H * cfg.pointwise_ratio, layer_norm=True)
            self.mlp1 = NormedLayer.linear(H * cfg.pointwise_ratio, H, layer_norm=False,
                                           activation=cfg.pointwise_use_activation, init_scale=self.scale)

    def pointwise(self, x: torch.Tensor) -> torch.Tensor:
        """``x + MLP(x)`` (``MLP(x)`` when not residual); ``x`` itself without a pointwise layer."""
        if self.mlp0 is None:
            return x
        h = self.mlp1(self.mlp0(x))
        return x + h if self.residual else h


class TransformerBlock(ResidualBlock):
    """``z = LN(x) + Attn(LN(x))``; ``out = z + MLP(z)``. The block input x itself is dropped (official quirk)."""

    def __init__(self, cfg: PolicyConfig, init_scale: float):
        super().__init__(cfg, init_scale)
        self.pre_r_ln = nn.LayerNorm(cfg.hidsize)
        self.r = MaskedAttention(cfg.hidsize, cfg.attention_heads, cfg.maxlen, cfg.attention_mask_style, self.scale)

    def forward(self, x: torch.Tensor, first: torch.Tensor, mem: LayerMemory) -> Tuple[torch.Tensor, LayerMemory]:
        y = self.pre_r_ln(x)
        a, mem = self.r(y, first, mem)
        return self.after_attention(y, a), mem

    def after_attention(self, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The rest of the block, given the normalised input ``y`` and the attention output ``a``."""
        return self.pointwise(y + a)


class BlockStack(nn.Module):
    """``n_recurrence_layers`` blocks (official ``ResidualRecurrentBlocks``) run in turn, each with its own state.

    ``first`` is (B,) bool: the episode starts of the chunk's first step. Subclasses fill ``blocks`` and define
    ``initial_state``.
    """

    def __init__(self, cfg: PolicyConfig, make_block: Callable[[int, float], nn.Module]):
        super().__init__()
        n = cfg.n_recurrence_layers
        scale = n ** -0.5 if cfg.recurrence_is_residual else 1.0  # each residual block adds 1/n of the variance
        self.blocks = nn.ModuleList([make_block(i, scale) for i in range(n)])
        self.hidsize = cfg.hidsize

    def forward(self, x: torch.Tensor, first: torch.Tensor, state: List[Any]) -> Tuple[torch.Tensor, List[Any]]:
        if len(state) != len(self.blocks):
            raise ValueError(f"state has {len(state)} layers, the network has {len(self.blocks)}")
        new_state = []
        for block, s in zip(self.blocks, state):
            x, s = block(x, first, s)
            new_state.append(s)
        return x, new_state


class TransformerStack(BlockStack):
    """Transformer blocks, each with its own key/value memory (:class:`LayerMemory`)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__(cfg, lambda _i, scale: TransformerBlock(cfg, scale))
        self.maxlen = cfg.maxlen

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32
                      ) -> List[LayerMemory]:
        """Empty memory: zero keys/values, every slot invalid."""
        shape = (batch_size, self.maxlen, self.hidsize)
        return [
            LayerMemory(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype),
                        torch.zeros(batch_size, self.maxlen, dtype=torch.bool, device=device))
            for _ in self.blocks
        ]
