"""Tiny models and synthetic episodes for the training tests (seconds on 2 CPU cores)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from vpt_agent.action_mapping import MINERL_ACTION_KEYS

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


def _env(buttons=(), camera=(0.0, 0.0)) -> dict:
    action = {k: 0 for k in MINERL_ACTION_KEYS}
    action.update({b: 1 for b in buttons})
    action["camera"] = np.array(camera, dtype=np.float32)
    return action


#: the env actions of the synthetic episodes; each has its own frame colour, so the mapping is learnable
ACTIONS: Sequence[dict] = (_env(["attack"]), _env(["forward"], (0.0, 5.0)), _env(["jump", "left"]),
                           _env(["use"], (-3.0, 0.0)))
COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]], dtype=np.int16)


def episode(seed: int, n: int, size: int = 32, null_every: int = 0) -> Tuple[np.ndarray, List[dict]]:
    """Frames whose colour tells the action, plus noise; every ``null_every``-th step is a null action."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(ACTIONS), n)
    frames = COLOURS[kinds][:, None, None, :] + rng.integers(-20, 20, (n, size, size, 3))
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    actions = [dict(ACTIONS[k]) for k in kinds]
    if null_every:
        for t in range(0, n, null_every):
            actions[t] = _env(camera=(0.1, -0.2))  # quantises to the null camera bin: a null action
    return frames, actions


def record(directory: Path, episodes: Sequence[Tuple[np.ndarray, List[dict]]]) -> Path:
    """Write episodes as VPT recordings (NAME.mp4 + NAME.jsonl) with vpt_agent.data."""
    from vpt_agent.data import RecordingWriter

    for i, (frames, actions) in enumerate(episodes):
        with RecordingWriter(directory, f"ep{i:03d}") as rec:
            for frame, action in zip(frames, actions):
                rec.write(frame, action)
    return directory
