"""Generate tests/data/golden_idm.npz by running the OFFICIAL inverse dynamics model (IDM).

Not part of the test suite: it needs the official Video-Pre-Training code at ``$VPT_OFFICIAL`` and an
environment where it imports (torch, numpy, opencv, gym3, attrs); ``minerl`` and ``gym`` are stubbed::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_idm.py

Weights are synthetic (``golden_helpers.weights_gen.make_tensor``) over the official ``InverseActionPolicy``'s own
state_dict layout. Six entries, each ``name/<field>``:

* ``small_memory``: a small IDM whose attention keeps 16 frames of memory (mask "none"), pre-LSTM LayerNorm
  configured (the official IDM never applies it), a batch of two videos fed to ``policy.predict`` in chunks of
  uneven length with the state carried. Frames are ``make_obs`` resized to 32x32.
* ``4x_reduced``: the official ``4x_idm.model`` config (3D conv with 128 output channels, 128x128 input,
  memory 128 = timesteps, so no memory between chunks) at reduced width (hidsize 256, impala_width 1), driven
  through the official ``IDMAgent.predict_actions`` on 360x640 ``make_obs`` frames in two consecutive calls.
  Besides log-probs it records the MineRL env actions the official agent returns.
* ``4x_layout``: only the state_dict keys/shapes of the full-size 4x IDM (built on the meta device).
* ``lstm_small``: as ``small_memory`` with a "multi_layer_lstm" recurrence (hidsize 32) and no 3D conv; video 1's
  ``first`` is True at the start of chunk 2 (its state reset there), recorded as ``first`` (n_chunks, 2).
* ``bilstm_small``: "multi_layer_bilstm" with three blocks (block 1 backwards in time) and a 3D conv of temporal
  kernel 3, chunks (5, 9, 4), state carried.
* ``bilstm_agent``: the 4x layout with a two-block "multi_layer_bilstm" (hidsize 64, impala_width 1) through
  ``IDMAgent.predict_actions``, calls of 12, 1 and 1 frames: the official agent passes ``first`` as (N, 1) zeros,
  which an LSTM reads as N videos, so its calls after the first fail unless they have one frame (asserted).

Existing entries keep their seeds, so regenerating leaves their arrays unchanged.

Fields: ``net_kwargs`` (JSON), ``temperature``, ``weights_seed``, ``obs_seed``, ``chunk_lens``, ``keys``/``shapes``
(JSON); outputs ``logp_buttons`` (B, N, 20, 2), ``logp_camera`` (B, N, 2, 11), ``act_buttons`` (B, N, 20),
``act_camera`` (B, N, 2) (argmax bins); ``4x_reduced`` and ``bilstm_agent`` also ``env_buttons`` (N, 20) in
``env_button_keys`` order and ``env_camera`` (N, 2) degrees.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ -> golden_helpers
from golden_helpers.official import use_official_code  # noqa: E402

use_official_code()

import torch as th  # noqa: E402
from gym3.types import DictType  # noqa: E402

import inverse_dynamics_model as official_idm  # noqa: E402  (official)
from lib.action_mapping import IDMActionMapping  # noqa: E402  (official)
from lib.policy import InverseActionPolicy  # noqa: E402  (official)

from golden_helpers.obs_gen import make_obs  # noqa: E402
from golden_helpers.weights_gen import make_tensor  # noqa: E402

OUT = HERE / "golden_idm.npz"

#: ``net.args`` of the official 4x_idm.model (see /work/shared/VPT_REFERENCE.md section 14).
IDM_4X = dict(attention_heads=32, attention_mask_style="none", attention_memory_size=128,
              conv3d_params={"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 128, "padding": [2, 0, 0]},
              hidsize=4096, img_shape=[128, 128, 128], impala_kwargs={"post_pool_groups": 1}, impala_width=16,
              init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=2,
              only_img_input=True, pointwise_ratio=4, pointwise_use_activation=False, recurrence_is_residual=True,
              recurrence_type="transformer", single_output=True, timesteps=128, use_pointwise_layer=True,
              use_pre_lstm_ln=False)

SMALL = dict(IDM_4X, attention_heads=4, attention_memory_size=24, timesteps=8, hidsize=64, impala_width=1,
             img_shape=[32, 32, 8], use_pre_lstm_ln=True,
             conv3d_params={"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 8, "padding": [2, 0, 0]})
REDUCED_4X = dict(IDM_4X, hidsize=256, impala_width=1)
#: LSTM IDMs: no 3D conv (so no first_conv_norm), pre-LSTM LayerNorm configured (never applied), temperature 1.5.
LSTM_SMALL = dict(SMALL, recurrence_type="multi_layer_lstm", hidsize=32, img_shape=[32, 32, 3], conv3d_params=None)
#: Three blocks (block 1 backwards in time), a 3D conv of temporal kernel 3.
BILSTM_SMALL = dict(SMALL, recurrence_type="multi_layer_bilstm", hidsize=32, n_recurrence_layers=3,
                    use_pre_lstm_ln=False,
                    conv3d_params={"inchan": 3, "kernel_size": [3, 1, 1], "outchan": 8, "padding": [1, 0, 0]})
#: The 4x layout (128x128 input, as IDMAgent resizes to) with a two-block bidirectional LSTM, small width.
BILSTM_AGENT = dict(REDUCED_4X, recurrence_type="multi_layer_bilstm", hidsize=64)


def idm_space() -> DictType:
    return DictType(**IDMActionMapping(n_camera_bins=11).get_action_space_update())


def build_official(net: Dict[str, Any], temperature: float, seed: int):
    policy = InverseActionPolicy(idm_space(), pi_head_kwargs={"temperature": temperature}, idm_net_kwargs=dict(net))
    layout = [(k, tuple(v.shape)) for k, v in policy.state_dict().items()]
    res = policy.load_state_dict({k: make_tensor(seed, k, s) for k, s in layout}, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    return policy.eval(), layout


def header(name: str, net: Dict[str, Any], layout: list, **extra: Any) -> Dict[str, np.ndarray]:
    p = name + "/"
    d = {p + "net_kwargs": np.array(json.dumps(net, sort_keys=True)),
         p + "keys": np.array([k for k, _ in layout]),
         p + "shapes": np.array(json.dumps([list(s) for _, s in layout]))}
    d.update({p + k: np.asarray(v) for k, v in extra.items()})
    return d


def outputs(name: str, pds: List[Dict[str, th.Tensor]]) -> Dict[str, np.ndarray]:
    """Chunks of official ``pd`` (B, t, 20, 2) / (B, t, 2, 11) -> concatenated over time."""
    p = name + "/"
    btn = th.cat([pd["buttons"] for pd in pds], dim=1).numpy()
    cam = th.cat([pd["camera"] for pd in pds], dim=1).numpy()
    return {p + "logp_buttons": btn.astype(np.float32), p + "logp_camera": cam.astype(np.float32),
            p + "act_buttons": btn.argmax(-1).astype(np.int64), p + "act_camera": cam.argmax(-1).astype(np.int64)}


@th.no_grad()
def run_small(seed: int, obs_seed: int, temperature: float, chunk_lens: List[int], name: str = "small_memory",
              net: Dict[str, Any] = SMALL, reset_chunk: int = -1) -> Dict[str, np.ndarray]:
    """``policy.predict`` on a batch of two videos in uneven chunks, state carried (as ``predict_actions``).

    ``reset_chunk`` >= 0: video 1's ``first`` is True at the start of that chunk (its state is reset there);
    recorded as ``first`` (n_chunks, 2), the chunks' first-step flags.
    """
    policy, layout = build_official(net, temperature, seed)
    h, w = net["img_shape"][:2]
    B = 2
    state = policy.initial_state(B)
    t0, pds, firsts = 0, [], []
    for c, n in enumerate(chunk_lens):
        imgs = np.stack([np.stack([cv2.resize(make_obs(obs_seed + b, t0 + i), (w, h), interpolation=cv2.INTER_LINEAR)
                                   for i in range(n)]) for b in range(B)])
        first = th.zeros(B, n, dtype=th.bool)
        first[1, 0] = c == reset_chunk
        ac, state, res = policy.predict({"img": th.from_numpy(imgs)}, first=first, state_in=state,
                                        deterministic=True)
        pds.append(res["pd"])
        firsts.append(first[:, 0].numpy())
        t0 += n
    extra = {} if reset_chunk < 0 else {"first": np.stack(firsts)}
    d = header(name, net, layout, temperature=temperature, weights_seed=seed, obs_seed=obs_seed,
               chunk_lens=np.array(chunk_lens), **extra)
    d.update(outputs(name, pds))
    return d


@th.no_grad()
def run_reduced_4x(seed: int, obs_seed: int, temperature: float, chunk_lens: List[int], name: str = "4x_reduced",
                   net: Dict[str, Any] = REDUCED_4X) -> Dict[str, np.ndarray]:
    """The official ``IDMAgent`` end to end: 360x640 frames in, MineRL env actions out, consecutive calls."""
    agent = official_idm.IDMAgent(idm_net_kwargs=dict(net), pi_head_kwargs={"temperature": temperature},
                                  device="cpu")
    layout = [(k, tuple(v.shape)) for k, v in agent.policy.state_dict().items()]
    agent.policy.load_state_dict({k: make_tensor(seed, k, s) for k, s in layout}, strict=True)
    agent.reset()
    pds: List[Dict[str, th.Tensor]] = []
    original = agent.policy.predict

    def recording_predict(*args, **kwargs):
        ac, state, res = original(*args, **kwargs)
        pds.append(res["pd"])
        return ac, state, res

    agent.policy.predict = recording_predict
    t0, env_buttons, env_camera = 0, [], []
    keys = official_button_keys()
    for n in chunk_lens:
        frames = np.stack([make_obs(obs_seed, t0 + i) for i in range(n)])
        act = agent.predict_actions(frames)
        env_buttons.append(np.stack([np.asarray(act[k])[0] for k in keys], axis=-1))
        env_camera.append(np.asarray(act["camera"])[0])
        t0 += n
    d = header(name, net, layout, temperature=temperature, weights_seed=seed, obs_seed=obs_seed,
               chunk_lens=np.array(chunk_lens), env_button_keys=np.array(keys))
    d.update(outputs(name, pds))
    d[name + "/env_buttons"] = np.concatenate(env_buttons).astype(np.int64)
    d[name + "/env_camera"] = np.concatenate(env_camera).astype(np.float64)
    return d


@th.no_grad()
def check_lstm_agent_needs_one_frame_calls() -> None:
    """The official ``IDMAgent`` passes ``first`` as (N, 1) zeros, which an LSTM reads as N videos: every call
    after the first fails unless it has one frame. Checked here so the docs' claim stays true."""
    agent = official_idm.IDMAgent(idm_net_kwargs=dict(BILSTM_AGENT), pi_head_kwargs={}, device="cpu")
    frames = np.stack([make_obs(0, i) for i in range(3)])
    agent.predict_actions(frames)
    try:
        agent.predict_actions(frames)
    except RuntimeError:
        return
    raise AssertionError("the official IDMAgent now runs an LSTM IDM on repeated multi-frame calls")


def official_button_keys() -> List[str]:
    from lib.actions import Buttons  # official

    return list(Buttons.ALL)


def layout_4x() -> Dict[str, np.ndarray]:
    with th.device("meta"):
        policy = InverseActionPolicy(idm_space(), pi_head_kwargs={"temperature": 1.0}, idm_net_kwargs=dict(IDM_4X))
    layout = [(k, tuple(v.shape)) for k, v in policy.state_dict().items()]
    n_params = sum(int(np.prod(s)) for _, s in layout)
    return header("4x_layout", IDM_4X, layout, n_params=n_params)


def main() -> None:
    th.set_num_threads(2)
    names = ["small_memory", "4x_reduced", "4x_layout", "lstm_small", "bilstm_small", "bilstm_agent"]
    data: Dict[str, np.ndarray] = {"configs": np.array(names)}
    data.update(run_small(seed=21, obs_seed=300, temperature=1.5, chunk_lens=[6, 8, 3, 7]))
    data.update(run_reduced_4x(seed=22, obs_seed=310, temperature=1.0, chunk_lens=[10, 6]))
    data.update(layout_4x())
    data.update(run_small(seed=23, obs_seed=320, temperature=1.5, chunk_lens=[6, 8, 3, 7], name="lstm_small",
                          net=LSTM_SMALL, reset_chunk=2))
    data.update(run_small(seed=24, obs_seed=330, temperature=1.0, chunk_lens=[5, 9, 4], name="bilstm_small",
                          net=BILSTM_SMALL))
    # Only one-frame calls after the first work officially with an LSTM (check_lstm_agent_needs_one_frame_calls).
    data.update(run_reduced_4x(seed=25, obs_seed=340, temperature=1.0, chunk_lens=[12, 1, 1], name="bilstm_agent",
                               net=BILSTM_AGENT))
    check_lstm_agent_needs_one_frame_calls()
    for name in ("small_memory", "4x_reduced", "lstm_small", "bilstm_small", "bilstm_agent"):
        ab, ac = data[name + "/act_buttons"], data[name + "/act_camera"]
        print(f"{name}: {ab.shape[:2]} frames, distinct button vectors {len({tuple(r) for r in ab.reshape(-1, 20)})}, "
              f"pressed fraction {ab.mean():.2f}, distinct camera bins {len({tuple(r) for r in ac.reshape(-1, 2)})}")
    print(f"4x_layout: {len(data['4x_layout/keys'])} keys, {int(data['4x_layout/n_params']):,} parameters")
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
