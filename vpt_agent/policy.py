"""The VPT policy network: state_dict-identical to the official ``MinecraftAgentPolicy``.

    frames (B, t, H, W, 3) uint8
      -> /255 -> ImpalaCNN -> dense (256) -> linear (hidsize)            net.img_process
      -> [pre_lstm_ln] -> transformer or LSTM blocks with state          net.recurrent_layer
      -> ReLU -> lastlayer -> final_ln                                   net.lastlayer, net.final_ln
      -> pi_head (camera 121, buttons 8641 log-probs), value_head
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F

from .attention import LayerMemory, TransformerStack
from .config import IMPALA_KWARGS, PolicyConfig
from .heads import ActionHead, ValueHead
from .impala import ImpalaCNN
from .layers import NormedLayer
from .lstm import LSTMStack, LSTMState

#: One block's recurrent state: the transformer's key/value memory or the LSTM's (h, c).
BlockState = Union[LayerMemory, LSTMState]


#: Frames per image-encoder call on a CPU (see ``MinecraftPolicy.encode``).
CPU_ENCODE_CHUNK = 4


class PolicyOutput(NamedTuple):
    """What :meth:`VPTPolicy.forward` returns for B sequences of t frames."""

    logp: Dict[str, torch.Tensor]  # "camera": (B, t, 121), "buttons": (B, t, 8641), tempered log-probs
    value: torch.Tensor  # (B, t)
    state: List[BlockState]


class ImageEncoder(nn.Module):
    """ImpalaCNN (-> 256) followed by ``linear`` (-> hidsize)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        norm_groups = cfg.init_norm_kwargs.get("group_norm_groups")
        # Dense layers swap the conv norm for a LayerNorm (official dense_init_norm_kwargs rule).
        dense_ln = bool(norm_groups is not None or cfg.init_norm_kwargs.get("layer_norm"))
        # Other impala_kwargs are ignored, as by the official code (PolicyConfig.validate refuses harmful ones).
        extra = {k: v for k, v in cfg.impala_kwargs.items() if k in IMPALA_KWARGS}
        self.cnn = ImpalaCNN(cfg.img_shape, cfg.chans, 256, n_blocks=2, norm_groups=norm_groups,
                             dense_layer_norm=dense_ln, first_conv_norm=cfg.first_conv_norm, relu=cfg.layer_relu,
                             **extra)
        self.linear = NormedLayer.linear(256, cfg.hidsize, layer_norm=dense_ln, activation=cfg.layer_relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.cnn(x))


class MinecraftPolicy(nn.Module):
    """The trunk (``net.*``): frames -> latent (B, t, hidsize)."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.scale = 255.0 if cfg.scale_input_img else 1.0
        self.img_process = ImageEncoder(cfg)
        self.pre_lstm_ln = nn.LayerNorm(cfg.hidsize) if cfg.use_pre_lstm_ln else None
        self.recurrent_layer = LSTMStack(cfg) if cfg.is_lstm else TransformerStack(cfg)
        dense_ln = self.img_process.linear.norm is not None
        self.lastlayer = NormedLayer.linear(cfg.hidsize, cfg.hidsize, layer_norm=dense_ln, activation=cfg.layer_relu)
        self.final_ln = nn.LayerNorm(cfg.hidsize)

    def forward(self, frames: torch.Tensor, first: torch.Tensor, state: List[BlockState]
                ) -> tuple[torch.Tensor, List[BlockState]]:
        B, t = frames.shape[:2]
        x = self.encode(frames.reshape(B * t, *frames.shape[2:])).view(B, t, -1)
        x, state = self.recurrent_layer(x, first, state)
        return self.decode(x), state

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 frames -> (N, hidsize) recurrence input."""
        if frames.device.type == "cpu" and len(frames) > CPU_ENCODE_CHUNK:
            # On a CPU, a few frames' activations stay in the caches: a 1x batch of 8 encodes ~13% faster per
            # frame in chunks of 4 than at once (2-core AMD EPYC, 1 or 2 threads). Frames are independent here.
            return torch.cat([self.encode(chunk) for chunk in frames.split(CPU_ENCODE_CHUNK)])
        x = frames.permute(0, 3, 1, 2)  # NHWC -> NCHW (a channels-last view, no copy)
        x = x.float() / self.scale  # a true division, as the official code (not a reciprocal multiply)
        x = self.img_process(x.to(self.img_process.linear.layer.weight.dtype))  # no-op in fp32; bf16 weights
        if self.pre_lstm_ln is not None:
            x = self.pre_lstm_ln(x)
        return x

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Recurrence output -> the latent the heads read."""
        return self.final_ln(self.lastlayer(F.relu(x)))


class VPTPolicy(nn.Module):
    """``net`` + ``pi_head`` + ``value_head``; keys and shapes equal the official ``MinecraftAgentPolicy``."""

    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.net = MinecraftPolicy(cfg)
        self.value_head = ValueHead(cfg.hidsize)
        self.pi_head = ActionHead(cfg.hidsize, cfg.temperature)

    def initial_state(self, batch_size: int, device: Optional[torch.device] = None,
                      dtype: torch.dtype = torch.float32) -> List[BlockState]:
        """Empty recurrent state for ``batch_size`` independent episodes (one entry per block)."""
        if device is None:
            device = next(self.parameters()).device
        return self.net.recurrent_layer.initial_state(batch_size, device, dtype)

    def forward(self, frames: torch.Tensor, first: torch.Tensor, state: List[BlockState]) -> PolicyOutput:
        """``frames``: (B, t, H, W, 3) uint8 RGB at the config's ``img_shape``; ``first``: (B, t) bool.

        Only ``first[:, 0]`` can reset memory (as in the official model); a True later in a chunk is
        rejected rather than silently ignored.
        """
        if first.dtype != torch.bool:
            raise TypeError(f"first must be a bool tensor, got {first.dtype}")
        if first.shape != frames.shape[:2]:
            raise ValueError(f"first has shape {tuple(first.shape)}, expected {tuple(frames.shape[:2])}")
        if first.shape[1] > 1 and bool(first[:, 1:].any()):
            raise ValueError("first may only be True at the first step of a chunk; split the chunk there")
        h, state = self.net(frames, first[:, 0], state)
        return PolicyOutput(self.pi_head(h), self.value_head(h)[..., 0], state)
