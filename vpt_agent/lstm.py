"""VPT's LSTM recurrences (``recurrence_type`` "multi_layer_lstm" and "multi_layer_bilstm").

Each of the ``n_recurrence_layers`` blocks runs one single-layer LSTM over the chunk, carrying ``(h, c)``
from chunk to chunk::

    x (B, t, H) -> pre_r_ln -> [flip time] -> r = nn.LSTM(H, H) -> [flip time] -> (+ x if residual)
                                               ^ (h, c) * (1 - first)    -> (h, c) out
                -> pointwise MLP (as the transformer's, ResidualBlock.pointwise) -> (B, t, H)

Official layout and quirks, kept for parity with ``MinecraftAgentPolicy``:

* ``r`` is a plain ``nn.LSTM``, so its keys are PyTorch's: ``r.weight_ih_l0`` (4H, H) and ``r.weight_hh_l0``
  (4H, H), the input->gates and hidden->gates matrices (gates i, f, g, o stacked), and ``r.bias_ih_l0``,
  ``r.bias_hh_l0`` (4H each).
* Unlike the transformer block, the block input is added back after the recurrence (when residual).
* The state is stored batch-first, ``(B, 1, H)`` per tensor (the official ``state_out`` layout); nn.LSTM's own
  is ``(1, B, H)``.
* ``first`` resets the state once per chunk, by multiplying it by ``1 - first[:, 0]``: an episode that starts
  inside a chunk is not seen (``VPTPolicy.forward`` refuses such chunks).
* "multi_layer_bilstm" runs every second block (block 1, 3, ...) backwards in time within the chunk; the state
  still flows forwards from chunk to chunk, entering at the chunk's *last* frame. Not a true bidirectional LSTM,
  but what the official code computes.
"""
from __future__ import annotations

import functools
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from .attention import BlockStack, ResidualBlock
from .config import PolicyConfig


class LSTMState(NamedTuple):
    """One block's LSTM state: hidden ``h`` and cell ``c``, each (B, 1, H), as the official ``(h, c)`` tuple."""

    h: torch.Tensor
    c: torch.Tensor


class LSTMBlock(ResidualBlock):
    """``z = LSTM(LN(x)) (+ x)``; ``out = z + MLP(z)``. ``reverse``: the LSTM reads the chunk last frame first."""

    def __init__(self, cfg: PolicyConfig, init_scale: float, reverse: bool = False):
        super().__init__(cfg, init_scale)
        H = cfg.hidsize
        self.reverse = reverse
        self.pre_r_ln = nn.LayerNorm(H)
        self.r = nn.LSTM(H, H, batch_first=True)
        # Random init only (loaded weights replace it): normal weights with std scale / sqrt(4H), zero biases.
        with torch.no_grad():
            for w in (self.r.weight_hh_l0, self.r.weight_ih_l0):  # this order: same random draws as officially
                w.normal_(0.0, self.scale * w.shape[0] ** -0.5)
            self.r.bias_hh_l0.zero_()
            self.r.bias_ih_l0.zero_()

    def forward(self, x: torch.Tensor, first: torch.Tensor, state: Optional[LSTMState]
                ) -> Tuple[torch.Tensor, LSTMState]:
        """``x`` (B, t, H); ``first`` (B,) bool; ``state`` an :class:`LSTMState` or None (zeros, the official
        initial state). Returns the block output (B, t, H) and the state after the chunk's last step."""
        y = self.pre_r_ln(x)
        hx = None
        if state is not None:
            # A multiply, not a select, as officially: the same numbers, and NaN/inf in a stale state propagate.
            keep = (~first).to(y.dtype)[:, None, None]
            hx = tuple((s.to(y.dtype) * keep).transpose(0, 1) for s in state)  # (B, 1, H) -> (1, B, H)
        if self.reverse:
            y = y.flip(1)
        out, (h, c) = self.r(y, hx)
        if self.reverse:
            out = out.flip(1)
        if self.residual:
            out = out + x
        return self.pointwise(out), LSTMState(h.transpose(0, 1), c.transpose(0, 1))


class LSTMStack(BlockStack):
    """LSTM blocks; with "multi_layer_bilstm" the odd-numbered ones run backwards in time."""

    def __init__(self, cfg: PolicyConfig):
        backwards = cfg.recurrence_type == "multi_layer_bilstm"
        super().__init__(cfg, lambda i, scale: LSTMBlock(cfg, scale, reverse=backwards and i % 2 == 1))

    def initial_state(self, batch_size: int, device: torch.device, dtype: torch.dtype = torch.float32
                      ) -> List[LSTMState]:
        """Zero ``(h, c)`` per block: the same outputs as the official initial state (None per block), but a
        tensor per env, so one env's state can be reset or replaced inside a batch."""
        shape = (batch_size, 1, self.hidsize)
        zeros = functools.partial(torch.zeros, shape, device=device, dtype=dtype)
        return [LSTMState(zeros(), zeros()) for _ in self.blocks]
