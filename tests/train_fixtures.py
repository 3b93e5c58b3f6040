"""Tiny models and synthetic episodes for the training tests (seconds on 2 CPU cores)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from vpt_agent.action_mapping import policy_to_env

TINY_NET: Dict[str, Any] = dict(
    attention_heads=2, attention_mask_style="clipped_causal", attention_memory_size=12, diff_mlp_embedding=False,
    hidsize=32, img_shape=[32, 32, 3], impala_chans=[4, 8, 8], impala_kwargs={"post_pool_groups": 1},
    impala_width=1, init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=2,
    only_img_input=True, pointwise_ratio=2, pointwise_use_activation=False, recurrence_is_residual=True,
    recurrence_type="transformer", timesteps=4, use_pointwise_layer=True, use_pre_lstm_ln=False,
)


def write_model(path: Path, net: Dict[str, Any] = TINY_NET, temperature: float = 1.0) -> Path:
    """A ``.model`` file (plain-data pickle, official layout) for ``net``."""
    path.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": dict(net)},
                                                       "pi_head_opts": {"temperature": temperature}}}}))
    return path


#: (joint buttons, joint camera) of the actions the synthetic episodes use; each gets its own frame colour
ACTIONS: Sequence[Tuple[int, int]] = ((1, 60), (7 * 2 + 1, 33), (2 * 3 * 2 + 1, 88), (8640, 60))


def episode(seed: int, n: int, size: int = 32, null_every: int = 0) -> Tuple[np.ndarray, List[dict]]:
    """Frames whose colour tells the action (learnable), plus noise; every ``null_every``-th step is a null action."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(ACTIONS), n)
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], dtype=np.int16)
    frames = colours[kinds][:, None, None, :] + rng.integers(-20, 20, (n, size, size, 3))
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    buttons = np.array([ACTIONS[k][0] for k in kinds])
    camera = np.array([ACTIONS[k][1] for k in kinds])
    if null_every:
        buttons[::null_every], camera[::null_every] = 0, 60
    return frames, policy_to_env(buttons, camera)
