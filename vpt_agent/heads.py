"""Policy and value heads.

* ``pi_head``: one categorical head per action key (``camera`` 121-way, then ``buttons`` 8641-way).
  Logits are divided by the model's temperature and log-softmaxed in float32.
* ``value_head``: a linear value estimate, de-normalised with the EWMA statistics learned in RL.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .action_mapping import N_JOINT_BUTTONS, N_JOINT_CAMERA


class CategoricalHead(nn.Module):
    """Linear -> logits / temperature -> log-probabilities (float32)."""

    def __init__(self, n_in: int, n_actions: int, temperature: float = 1.0):
        super().__init__()
        self.linear_layer = nn.Linear(n_in, n_actions)
        self.temperature = temperature

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.linear_layer(h).float() / self.temperature, dim=-1)


class ActionHead(nn.ModuleDict):
    """``camera`` then ``buttons`` (the order matters for seeded sampling parity)."""

    def __init__(self, n_in: int, temperature: float = 1.0):
        super().__init__({
            "camera": CategoricalHead(n_in, N_JOINT_CAMERA, temperature),
            "buttons": CategoricalHead(n_in, N_JOINT_BUTTONS, temperature),
        })

    def forward(self, h: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {k: head(h) for k, head in self.items()}

    def sample(self, logp: Dict[str, torch.Tensor], deterministic: bool,
               generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """Argmax, or Gumbel-max sampling from ``softmax(logp)`` (one uniform draw per key, camera first)."""
        out = {}
        for k in self.keys():
            lp = logp[k]
            if deterministic:
                out[k] = lp.argmax(dim=-1)
                continue
            u = torch.rand(lp.shape, generator=generator, device=lp.device, dtype=lp.dtype)
            u = torch.where(u == 1.0, torch.full_like(u, 0.999), u)  # log(-log(1)) would be -inf
            out[k] = (lp - torch.log(-torch.log(u))).argmax(dim=-1)
        return out


class EwmaNormalizer(nn.Module):
    """Running (debiased) mean and variance of value targets; only used here to de-normalise."""

    def __init__(self, size: int = 1, epsilon: float = 1e-5):
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_mean_sq", torch.zeros(size))
        self.register_buffer("debiasing_term", torch.tensor(0.0))

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised values -> the return scale, with the running (debiased) mean and variance."""
        beta = self.debiasing_term.clamp(min=self.epsilon)
        mean = self.running_mean / beta
        var = (self.running_mean_sq / beta - mean ** 2).clamp(min=1e-2)
        return x * var.sqrt() + mean


class ValueHead(nn.Module):
    """``value = denormalize(linear(h))``, shape (..., 1) -> squeezed by the caller."""

    def __init__(self, n_in: int):
        super().__init__()
        self.linear = nn.Linear(n_in, 1)
        self.normalizer = EwmaNormalizer(1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # The value head stays float32 when the rest of the policy runs in bf16 (its output is de-normalised).
        return self.normalizer.denormalize(self.linear(h.to(self.linear.weight.dtype)).float())
