"""Generate tests/data/golden_bc.npz: the official behavioural-cloning loss, step by step, on synthetic data.

Not part of the test suite: it needs the official Video-Pre-Training code at ``$VPT_OFFICIAL`` and a Python
where it imports (torch, numpy, opencv, gym3, attrs); ``minerl`` and ``gym`` are stubbed::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_bc.py

What it runs is the per-sample body of the official ``behavioural_cloning.py``, with the official objects:
``MineRLAgent._env_action_to_agent(action, to_torch=True, check_if_null=True)`` (None = null action, skipped),
``_env_obs_to_agent``, ``policy.get_output_for_observation`` with ``first=False`` and a per-episode hidden
state (detached after each step), and ``policy.get_logprob_of_action``.

Note: the official null check compares the camera with ``action_transformer.camera_zero_bin``, a *method*,
so it never fires and ``behavioural_cloning.py`` trains on null actions too (the data loader has already
dropped the recorder-level ones). ``loss`` is that behaviour. ``loss_skip`` is the same loop with the check
working as intended (``camera_zero_bin`` = 5 on the instance): the paper's rule of skipping actions that are
null in the agent's action space. Two episodes run back to back, each
from ``policy.initial_state(1)``. Weights are synthetic (``golden_helpers.weights_gen``) over the official
layout; frames are ``golden_helpers.obs_gen.make_obs`` resized to 128x128 (INTER_LINEAR).

The archive holds: ``net_kwargs`` (JSON), ``temperature``, ``weights_seed``, ``obs_seeds`` (per episode),
``episode_lens``, ``actions`` (JSON list of env actions per episode), ``loss`` / ``loss_skip`` (per step; NaN where
a null action is skipped), and ``grad/<key>`` for ``GRAD_KEYS``: the gradient of the sum of the
losses of the first ``GRAD_STEPS`` kept steps of episode 0 (memory carried, detached, as the official loop).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "golden_bc.npz"
WEIGHTS_SEED, TEMPERATURE, OBS_SEEDS, EPISODE_LENS, ACTION_SEED = 21, 2.0, (301, 302), (22, 14), 7
GRAD_STEPS = 3
GRAD_KEYS = ("pi_head.camera.linear_layer.bias", "pi_head.buttons.linear_layer.bias",
             "net.recurrent_layer.blocks.0.r.orc_block.b_nd", "net.img_process.linear.layer.weight")
NET = dict(attention_heads=2, attention_mask_style="clipped_causal", attention_memory_size=10,
           diff_mlp_embedding=False, hidsize=32, img_shape=[128, 128, 3], impala_chans=[4, 8, 8],
           impala_kwargs={"post_pool_groups": 1}, impala_width=1,
           init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=2,
           only_img_input=True, pointwise_ratio=2, pointwise_use_activation=False, recurrence_is_residual=True,
           recurrence_type="transformer", timesteps=4, use_pointwise_layer=True, use_pre_lstm_ln=False)
BUTTON_KEYS = ("attack", "back", "forward", "jump", "left", "right", "sneak", "sprint", "use", "drop",
               "inventory", *(f"hotbar.{i}" for i in range(1, 10)), "ESC", "pickItem", "swapHands")


def make_actions(rng: np.random.Generator, n: int) -> List[Dict[str, Any]]:
    """Env actions exercising the mapping: nulls, sub-bin camera moves, opposite keys, inventory, hotbar."""
    out = []
    for t in range(n):
        a: Dict[str, Any] = {k: 0 for k in BUTTON_KEYS}
        kind = t % 6
        if kind == 0:
            cam = [0.0, 0.0]  # null (unless a button below)
        elif kind == 1:
            cam = [float(rng.uniform(-0.4, 0.4)), float(rng.uniform(-0.4, 0.4))]  # quantises to the null bin
        else:
            cam = [float(rng.uniform(-12, 12)), float(rng.uniform(-12, 12))]
        if kind in (2, 3, 4, 5):
            for k in rng.choice(BUTTON_KEYS[:20], size=int(rng.integers(1, 4)), replace=False):
                a[str(k)] = 1
        if kind == 5 and rng.random() < 0.5:
            a["forward"] = a["back"] = 1
        a["camera"] = cam
        out.append(a)
    return out


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from golden_helpers.official import use_official_code

    use_official_code()
    import torch as th
    import agent as official  # the official agent.py
    from lib.tree_util import tree_map

    from golden_helpers.obs_gen import make_obs
    from golden_helpers.weights_gen import make_tensor

    th.set_num_threads(1)
    official.validate_env = lambda env: None
    off = official.MineRLAgent(None, device="cpu", policy_kwargs=dict(NET), pi_head_kwargs={"temperature": TEMPERATURE})
    policy = off.policy
    sd = {k: make_tensor(WEIGHTS_SEED, k, tuple(v.shape)) for k, v in policy.state_dict().items()}
    policy.load_state_dict(sd, strict=True)
    rng = np.random.default_rng(ACTION_SEED)
    episodes = [make_actions(rng, n) for n in EPISODE_LENS]
    losses, grads = run(off, episodes, tree_map, make_obs)
    off.action_transformer.camera_zero_bin = 5  # the null check as intended (see the module docstring)
    losses_skip, _ = run(off, episodes, tree_map, make_obs)
    np.savez_compressed(
        OUT, net_kwargs=np.array(json.dumps(NET, sort_keys=True)), temperature=np.float64(TEMPERATURE),
        weights_seed=np.int64(WEIGHTS_SEED), obs_seeds=np.array(OBS_SEEDS), episode_lens=np.array(EPISODE_LENS),
        actions=np.array(json.dumps(episodes)), loss=np.array(losses), loss_skip=np.array(losses_skip),
        grad_steps=np.int64(GRAD_STEPS), **{f"grad/{k}": v.double().numpy() for k, v in grads.items()})
    for name, ls in (("loss", losses), ("loss_skip", losses_skip)):
        print(f"{name}: {np.isfinite(ls).sum()} kept of {len(ls)} steps, "
              f"range [{np.nanmin(ls):.3f}, {np.nanmax(ls):.3f}]")
    print(f"wrote {OUT}")


def run(off: Any, episodes: List[List[Dict[str, Any]]], tree_map: Any, make_obs: Any
        ) -> Tuple[List[float], Dict[str, Any]]:
    """The official per-sample BC body over the episodes: per-step losses and the first steps' gradients."""
    import torch as th

    policy = off.policy
    first = th.from_numpy(np.array((False,)))
    losses: List[float] = []
    grads = {k: th.zeros_like(p) for k, p in policy.named_parameters() if k in GRAD_KEYS}
    for e, (actions, obs_seed) in enumerate(zip(episodes, OBS_SEEDS)):
        state = policy.initial_state(1)
        kept = 0
        for t, action in enumerate(actions):
            env_action = {k: (np.array(v) if k == "camera" else v) for k, v in action.items()}
            agent_action = off._env_action_to_agent(env_action, to_torch=True, check_if_null=True)
            if agent_action is None:
                losses.append(float("nan"))
                continue
            image = cv2.resize(make_obs(obs_seed, t), (128, 128), interpolation=cv2.INTER_LINEAR)
            obs = off._env_obs_to_agent({"pov": image})
            policy.zero_grad()
            pd, _, state = policy.get_output_for_observation(obs, state, first)
            loss = -policy.get_logprob_of_action(pd, agent_action)
            state = tree_map(lambda x: x.detach(), state)
            if e == 0 and kept < GRAD_STEPS:
                loss.sum().backward()
                for k, p in policy.named_parameters():
                    if k in grads:
                        grads[k] += p.grad
            losses.append(float(loss.detach().sum()))
            kept += 1
    return losses, grads


if __name__ == "__main__":
    main()
