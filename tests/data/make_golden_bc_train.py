"""Generate tests/data/golden_bc_train.npz: weights after a few steps of the official ``behavioural_cloning.py``.

Not part of the test suite: it needs the official Video-Pre-Training code at ``$VPT_OFFICIAL`` and a Python
where it imports (torch, numpy, opencv, gym3, attrs); ``minerl`` and ``gym`` are stubbed::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_bc_train.py

Unlike make_golden_bc.py (the per-sample loss body), this runs the official training *function*,
``behavioural_cloning.behavioural_cloning_train``, unchanged: its optimizer (as constructed there), its
``-log_prob / BATCH_SIZE`` accumulation, its per-episode hidden states, its (not) clipping and its
``optimizer.step()``. Only its surroundings are replaced: ``DEVICE`` is the CPU, ``gym.make`` returns a
stand-in env (the agent's env check is off), and ``DataLoader`` is a deterministic in-process stand-in that
yields what the official loader yields (batches of ``BATCH_SIZE`` (frame, env action, episode id) samples; the
camera an integer array, as ``json_action_to_env_action`` makes it). 16 episodes of 2 steps: batches 0-1 hold
episodes 0-7, batches 2-3 episodes 8-15 (new ids: fresh hidden states).

The archive holds: ``net_kwargs`` (JSON), ``temperature``, ``weights_seed``, ``batch_size``, ``episode_len``,
``obs_seeds`` (per episode), ``actions`` (JSON: per episode, the env actions), ``lr``/``weight_decay``/
``max_grad_norm`` (the official constants, read from the module), and for every state_dict key
``delta_norm/<key>`` (float64 L2 norm of final - initial) plus, for ``DELTA_KEYS``, ``delta/<key>`` (the
full difference).
"""
from __future__ import annotations

import json
import pickle
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np

import make_golden_bc  # beside this script

HERE = Path(__file__).resolve().parent
OUT = HERE / "golden_bc_train.npz"
WEIGHTS_SEED, TEMPERATURE, ACTION_SEED = 23, 2.0, 11
N_EPISODES, EPISODE_LEN, BATCH_SIZE = 16, 2, 8
OBS_SEEDS = tuple(500 + e for e in range(N_EPISODES))
DELTA_KEYS = ("pi_head.camera.linear_layer.bias", "pi_head.buttons.linear_layer.bias",
              "net.recurrent_layer.blocks.0.r.orc_block.b_nd", "net.lastlayer.layer.weight",
              "value_head.linear.weight", "value_head.linear.bias")
#: The network and the button keys of make_golden_bc.py (the per-step loss golden data).
NET, KEYS = make_golden_bc.NET, make_golden_bc.BUTTON_KEYS


def make_actions(rng: np.random.Generator, episode: int) -> List[Dict[str, Any]]:
    """Env actions as the official loader makes them (integer camera), with agent-space nulls among them."""
    out = []
    for t in range(EPISODE_LEN):
        a: Dict[str, Any] = {k: 0 for k in KEYS}
        kind = (2 * episode + t) % 7
        cam = [int(v) for v in rng.integers(-14, 15, size=2)]
        if kind == 0:
            cam = [0, 0]
            a["ESC"] = 1  # kept by the loader, null in the agent's action space
        elif kind == 1:
            cam = [0, 0]
            a["inventory"] = 1
        elif kind == 2:
            cam = [0, int(rng.choice([-1, 1]))]
        else:
            for k in rng.choice(KEYS[:20], size=int(rng.integers(1, 4)), replace=False):
                a[str(k)] = 1
        a["camera"] = cam
        out.append(a)
    return out


class _Loader:
    """Stand-in for the official DataLoader: the same batches, deterministic, in-process."""

    episodes: List[List[Dict[str, Any]]] = []

    def __init__(self, dataset_dir: str, n_workers: int, batch_size: int, n_epochs: int):
        self.batch_size = batch_size

    def __iter__(self):
        groups = N_EPISODES // self.batch_size
        for g in range(groups):
            ids = range(g * self.batch_size, (g + 1) * self.batch_size)
            for t in range(EPISODE_LEN):
                frames = [cv2.resize(_make_obs(OBS_SEEDS[e], t), (128, 128), interpolation=cv2.INTER_LINEAR)
                          for e in ids]
                actions = [{k: (np.array(v, dtype=np.int64) if k == "camera" else v)
                            for k, v in self.episodes[e][t].items()} for e in ids]
                yield frames, actions, list(ids)


def _make_obs(seed: int, t: int) -> np.ndarray:
    from golden_helpers.obs_gen import make_obs

    return make_obs(seed, t)


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from golden_helpers.official import use_official_code

    use_official_code()
    import torch as th
    import agent as official_agent
    import behavioural_cloning as bc

    from golden_helpers.weights_gen import make_tensor

    th.set_num_threads(1)
    official_agent.validate_env = lambda env: None
    bc.gym = types.SimpleNamespace(make=lambda name: types.SimpleNamespace(close=lambda: None))
    bc.DEVICE, bc.BATCH_SIZE = "cpu", BATCH_SIZE
    rng = np.random.default_rng(ACTION_SEED)
    _Loader.episodes = [make_actions(rng, e) for e in range(N_EPISODES)]
    bc.DataLoader = _Loader

    probe = official_agent.MineRLAgent(None, device="cpu", policy_kwargs=dict(NET),
                                       pi_head_kwargs={"temperature": TEMPERATURE})
    initial = {k: make_tensor(WEIGHTS_SEED, k, tuple(v.shape)) for k, v in probe.policy.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        model, weights, out = (Path(tmp) / n for n in ("in.model", "in.weights", "out.weights"))
        with open(model, "wb") as f:
            pickle.dump({"model": {"args": {"net": {"args": dict(NET)},
                                            "pi_head_opts": {"temperature": TEMPERATURE}}}}, f)
        th.save(initial, weights)
        bc.behavioural_cloning_train(tmp, str(model), str(weights), str(out))
        final = th.load(out)
    deltas = {k: (final[k].double() - initial[k].double()) for k in initial}
    np.savez_compressed(
        OUT, net_kwargs=np.array(json.dumps(NET, sort_keys=True)), temperature=np.float64(TEMPERATURE),
        weights_seed=np.int64(WEIGHTS_SEED), batch_size=np.int64(BATCH_SIZE), episode_len=np.int64(EPISODE_LEN),
        obs_seeds=np.array(OBS_SEEDS), actions=np.array(json.dumps(_Loader.episodes)),
        lr=np.float64(bc.LEARNING_RATE), weight_decay=np.float64(bc.WEIGHT_DECAY),
        max_grad_norm=np.float64(bc.MAX_GRAD_NORM),
        **{f"delta_norm/{k}": np.float64(d.norm()) for k, d in deltas.items()},
        **{f"delta/{k}": deltas[k].numpy() for k in DELTA_KEYS})
    moved = sum(1 for d in deltas.values() if d.norm() > 0)
    print(f"{moved} of {len(deltas)} tensors changed; wrote {OUT}")


if __name__ == "__main__":
    main()
