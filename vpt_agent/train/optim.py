"""The optimizer of behavioural cloning: the official script's Adam, with a linear learning-rate warm-up.

The official ``behavioural_cloning.py`` builds ``torch.optim.Adam(params, lr, weight_decay)``: plain Adam
with *L2* weight decay (``weight_decay * param`` is added to the gradient before the moment estimates), not
AdamW's decoupled decay. The two give different updates from the first step on (tested against the official
training function in tests/test_train_review.py), so this is what we build. Parameters that get no gradient
(the value head: the loss is the policy's NLL only) are left untouched by both, decay included.
"""
from __future__ import annotations

from typing import List, Protocol, Tuple

import torch


class _OptimOptions(Protocol):
    lr: float
    weight_decay: float
    warmup: int


def make_optimizer(params: List[torch.nn.Parameter], cfg: _OptimOptions
                   ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Adam with L2 weight decay (the official BC optimizer), and a linear warm-up of ``cfg.warmup`` steps.

    ``params`` must be a list (the official script passes a generator, which Adam consumes, so its later
    ``clip_grad_norm_`` sees no parameters; our trainer clips the same list it optimizes).
    """
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(0, cfg.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
    return opt, sched
