"""Generate tests/data/golden_configs.npz by running the OFFICIAL VPT policy on several small configs.

Not part of the test suite: it needs the official Video-Pre-Training code (``agent.py``, ``lib/``) at the
path in ``$VPT_OFFICIAL`` and an environment where that code imports (torch, numpy, opencv, gym3, attrs)::

    VPT_OFFICIAL=/path/to/Video-Pre-Training python tests/data/make_golden_configs.py

``minerl`` is stubbed (the policy never touches it). Weights are synthetic
(``golden_helpers.weights_gen.make_tensor``) over the official policy's own state_dict key list, so
configs that ``key_layout.official_keys`` does not describe are covered too. Frames are
``golden_helpers.obs_gen.make_obs`` resized with ``cv2.INTER_LINEAR`` to each config's ``img_shape``.

Per config ``name`` the archive holds ``name/<field>`` entries:

* ``net_kwargs`` (JSON), ``temperature``, ``weights_seed``, ``obs_seed``, ``mode`` ("single" | "chunked"),
  ``keys`` / ``shapes`` (JSON) - the official state_dict layout;
* single-step mode: ``reset_at`` (steps before which a fresh initial state is used), outputs per step;
  (for an LSTM config the official initial state is ``None`` per block);
* chunked mode: ``chunk_lens``, ``first`` (B, n_chunks) flags for ``first[:, 0]`` of each chunk,
  outputs per (batch, step) flattened batch-major;
* outputs: ``logp_camera`` (N, 121) complete; ``logp_buttons_full`` (len(full_rows), 8641) at rows
  ``full_rows``; ``logp_buttons_sub`` (N, K) at indices ``button_idx`` (N, K): a fixed random subset plus
  each row's top entries; ``vpred`` (N,) (denormalised); ``argmax_buttons`` / ``argmax_camera`` (N,).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ -> golden_helpers
from golden_helpers.official import use_official_code  # noqa: E402

use_official_code()

import torch as th  # noqa: E402
from gym3.types import DictType  # noqa: E402
from lib.action_mapping import CameraHierarchicalMapping  # noqa: E402  (official)
from lib.policy import MinecraftAgentPolicy  # noqa: E402  (official)

from golden_helpers.obs_gen import make_obs  # noqa: E402
from golden_helpers.weights_gen import make_tensor  # noqa: E402

OUT = HERE / "golden_configs.npz"
N_SUBSET, N_TOP = 192, 16
SUBSET_SEED = 1234

BASE = dict(attention_heads=4, attention_mask_style="clipped_causal", attention_memory_size=16,
            diff_mlp_embedding=False, hidsize=64, img_shape=[128, 128, 3], impala_chans=[16, 32, 32],
            impala_kwargs={"post_pool_groups": 1}, impala_width=1,
            init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=3,
            only_img_input=True, pointwise_ratio=4, pointwise_use_activation=False,
            recurrence_is_residual=True, recurrence_type="transformer", timesteps=10,
            use_pointwise_layer=True, use_pre_lstm_ln=False)

CONFIGS: Dict[str, Dict[str, Any]] = {
    "a_base": dict(net=BASE, temperature=1.0, seed=11, steps=25, reset_at=[9], full_rows=[0, 9, 24]),
    "b_preln_act_nonresidual": dict(
        net=dict(BASE, hidsize=96, n_recurrence_layers=2, attention_memory_size=20, timesteps=8,
                 use_pre_lstm_ln=True, pointwise_use_activation=True, recurrence_is_residual=False,
                 pointwise_ratio=2),
        temperature=1.5, seed=12, steps=30, reset_at=[17], full_rows=[0, 17, 29]),
    "c_mask_none": dict(net=dict(BASE, attention_mask_style="none", n_recurrence_layers=2), temperature=2.0,
                        seed=13, steps=25, reset_at=[9], full_rows=[0, 9, 24]),
    "d_no_pointwise_groupnorm2": dict(
        net=dict(BASE, use_pointwise_layer=False, init_norm_kwargs={"batch_norm": False, "group_norm_groups": 2},
                 impala_kwargs={"post_pool_groups": 2}, n_recurrence_layers=2),
        temperature=1.0, seed=14, steps=25, reset_at=[9], full_rows=[0, 9, 24]),
    "e_img64x96_width2_firstconvnorm": dict(
        net=dict(BASE, img_shape=[64, 96, 3], impala_width=2, impala_chans=[8, 16, 16], hidsize=128,
                 attention_heads=8, n_recurrence_layers=2, first_conv_norm=True),
        temperature=2.0, seed=15, steps=25, reset_at=[9], full_rows=[0, 9, 24]),
    "f_chunked_b2": dict(net=BASE, temperature=1.0, seed=11, chunk_lens=[4, 7, 1, 10, 3, 6],
                         first=[[1, 0, 0, 1, 0, 0], [1, 0, 1, 0, 0, 1]], full_rows=[0, 12, 31 + 12, 31 + 30]),
    # Rarer settings the official constructors accept (added after a-f; those are unchanged).
    "g_chunked_mask_none_no_norms": dict(
        net=dict(BASE, attention_mask_style="none", init_norm_kwargs={}, img_shape=[32, 24, 3],
                 impala_chans=[8, 8], impala_kwargs={"post_pool_groups": 1, "unused_by_the_network": 1},
                 n_recurrence_layers=2),
        temperature=1.0, seed=21, chunk_lens=[3, 8, 1, 5], first=[[1, 0, 0, 1], [1, 0, 1, 0]],
        full_rows=[0, 12, 17 + 11]),
    "h_chunked_no_memory_no_pool_unscaled": dict(
        net=dict(BASE, attention_mask_style="none", attention_memory_size=10, img_shape=[10, 8, 3],
                 scale_input_img=False, impala_chans=[4, 8], impala_kwargs={"pool": False, "post_pool_groups": 2},
                 n_recurrence_layers=2),
        temperature=1.0, seed=17, chunk_lens=[3, 8, 1, 5], first=[[1, 0, 0, 1], [1, 0, 1, 0]],
        full_rows=[0, 12, 17 + 11]),
    "i_no_cnn_stacks_layer_norm": dict(
        net=dict(BASE, impala_chans=[], init_norm_kwargs={"layer_norm": True}, img_shape=[12, 16, 3],
                 only_img_input=False, n_recurrence_layers=2),
        temperature=0.7, seed=18, steps=25, reset_at=[9], full_rows=[0, 9, 24]),
    # LSTM recurrences (added after a-i; those are unchanged). The attention settings and timesteps are unused
    # by the official LSTM blocks: timesteps None (the constructor default) shows they need none.
    "j_lstm_residual_preln": dict(
        net=dict(BASE, recurrence_type="multi_layer_lstm", timesteps=None, use_pre_lstm_ln=True,
                 n_recurrence_layers=2, img_shape=[32, 32, 3], impala_chans=[8, 16]),
        temperature=1.0, seed=31, steps=20, reset_at=[8], full_rows=[0, 8, 19]),
    "k_chunked_lstm_b2": dict(
        net=dict(BASE, recurrence_type="multi_layer_lstm", timesteps=None, n_recurrence_layers=2,
                 img_shape=[32, 32, 3], impala_chans=[8, 16]),
        temperature=1.0, seed=32, chunk_lens=[3, 8, 1, 5], first=[[1, 0, 0, 1], [1, 0, 1, 0]],
        full_rows=[0, 12, 17 + 11]),
    # Three blocks: the middle one runs backwards in time within each chunk, the outer two forwards.
    "l_chunked_bilstm_3_nonresidual": dict(
        net=dict(BASE, recurrence_type="multi_layer_bilstm", recurrence_is_residual=False,
                 pointwise_use_activation=True, pointwise_ratio=2, img_shape=[32, 32, 3], impala_chans=[8, 16]),
        temperature=1.5, seed=33, chunk_lens=[3, 8, 1, 5], first=[[1, 0, 0, 1], [1, 0, 1, 0]],
        full_rows=[0, 12, 17 + 11]),
    # init_norm_kwargs.use_activation=False: no ReLU after any convolution or dense layer (added after a-l).
    "m_no_layer_activation": dict(
        net=dict(BASE, init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1, "use_activation": False},
                 n_recurrence_layers=2, img_shape=[32, 32, 3], impala_chans=[8, 16]),
        temperature=1.0, seed=34, steps=20, reset_at=[8], full_rows=[0, 8, 19]),
}


def frame(obs_seed: int, t: int, img_shape: Sequence[int]) -> np.ndarray:
    """A ``make_obs`` frame resized (INTER_LINEAR, as the official agent) to ``img_shape`` (H, W, 3)."""
    h, w = int(img_shape[0]), int(img_shape[1])
    return cv2.resize(make_obs(obs_seed, t), (w, h), interpolation=cv2.INTER_LINEAR)


def build_official(net: Dict[str, Any], temperature: float, seed: int) -> Tuple[MinecraftAgentPolicy, list]:
    """The official policy with synthetic weights over its own state_dict layout."""
    space = DictType(**CameraHierarchicalMapping(n_camera_bins=11).get_action_space_update())
    policy = MinecraftAgentPolicy(space, dict(net), {"temperature": temperature})
    layout = [(k, tuple(v.shape)) for k, v in policy.state_dict().items()]
    sd = {k: make_tensor(seed, k, s) for k, s in layout}
    res = policy.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    return policy.eval(), layout


def _outputs(pd: Dict[str, th.Tensor], vpred: th.Tensor) -> Dict[str, np.ndarray]:
    cam = pd["camera"].reshape(-1, 121).double().numpy()
    btn = pd["buttons"].reshape(-1, 8641).double().numpy()
    return {"logp_camera": cam, "logp_buttons": btn, "vpred": vpred.reshape(-1).double().numpy()}


def run_single(policy: MinecraftAgentPolicy, spec: Dict[str, Any], obs_seed: int) -> Dict[str, np.ndarray]:
    """One frame per ``policy.act`` call (first=False), a fresh initial state at step 0 and at ``reset_at``."""
    img_shape = spec["net"]["img_shape"]
    rows: List[Dict[str, np.ndarray]] = []
    state = policy.initial_state(1)
    first = th.zeros(1, dtype=th.bool)
    for t in range(spec["steps"]):
        if t in spec["reset_at"]:
            state = policy.initial_state(1)
        obs = {"img": th.from_numpy(frame(obs_seed, t, img_shape))[None]}
        ac, state, res = policy.act(obs, first, state, stochastic=False, return_pd=True)
        out = _outputs(res["pd"], res["vpred"])
        out["act_buttons"] = ac["buttons"].reshape(-1).numpy()
        out["act_camera"] = ac["camera"].reshape(-1).numpy()
        rows.append(out)
    stacked = {k: np.concatenate([r[k].reshape(1, -1) for r in rows]) for k in rows[0]}
    return {k: v[:, 0] if v.shape[1] == 1 else v for k, v in stacked.items()}


@th.no_grad()
def run_chunked(policy: MinecraftAgentPolicy, spec: Dict[str, Any], obs_seed: int) -> Dict[str, np.ndarray]:
    """``policy(obs, first, state)`` on chunks of several frames, batch of len(first); state carried over."""
    img_shape = spec["net"]["img_shape"]
    first_flags = np.asarray(spec["first"], dtype=bool)
    B = first_flags.shape[0]
    state = policy.initial_state(B)
    t0, per_chunk = 0, []
    for c, n in enumerate(spec["chunk_lens"]):
        imgs = np.stack([np.stack([frame(obs_seed + b, t0 + i, img_shape) for i in range(n)]) for b in range(B)])
        first = th.zeros(B, n, dtype=th.bool)
        first[:, 0] = th.from_numpy(first_flags[:, c])
        (pd, vpred, _), state = policy({"img": th.from_numpy(imgs)}, first, state)
        vpred = policy.value_head.denormalize(vpred)
        per_chunk.append(({k: v.reshape(B, n, -1) for k, v in pd.items()}, vpred.reshape(B, n)))
        t0 += n
    pd = {k: th.cat([p[k] for p, _ in per_chunk], dim=1) for k in ("camera", "buttons")}
    vpred = th.cat([v for _, v in per_chunk], dim=1)
    out = _outputs(pd, vpred)  # rows are batch-major: row = b * T + t
    out["act_buttons"] = out["logp_buttons"].argmax(-1)
    out["act_camera"] = out["logp_camera"].argmax(-1)
    return out


def compress(name: str, spec: Dict[str, Any], layout: list, out: Dict[str, np.ndarray],
             subset: np.ndarray) -> Dict[str, np.ndarray]:
    btn = out["logp_buttons"]
    assert (btn.argmax(-1) == out["act_buttons"]).all() and (out["logp_camera"].argmax(-1) == out["act_camera"]).all()
    top = np.argsort(-btn, axis=1)[:, :N_TOP]
    idx = np.concatenate([np.broadcast_to(subset, (len(btn), len(subset))), top], axis=1)
    p = name + "/"
    d = {
        p + "net_kwargs": np.array(json.dumps(spec["net"], sort_keys=True)),
        p + "temperature": np.float64(spec["temperature"]),
        p + "weights_seed": np.int64(spec["seed"]),
        p + "obs_seed": np.int64(spec["obs_seed"]),
        p + "keys": np.array([k for k, _ in layout]),
        p + "shapes": np.array(json.dumps([list(s) for _, s in layout])),
        p + "logp_camera": out["logp_camera"].astype(np.float32),
        p + "full_rows": np.array(spec["full_rows"], dtype=np.int64),
        p + "logp_buttons_full": btn[spec["full_rows"]].astype(np.float32),
        p + "button_idx": idx.astype(np.int16),
        p + "logp_buttons_sub": np.take_along_axis(btn, idx, axis=1).astype(np.float32),
        p + "vpred": out["vpred"].astype(np.float64),
        p + "argmax_buttons": out["act_buttons"].astype(np.int64),
        p + "argmax_camera": out["act_camera"].astype(np.int64),
    }
    if "chunk_lens" in spec:
        d[p + "mode"] = np.array("chunked")
        d[p + "chunk_lens"] = np.array(spec["chunk_lens"], dtype=np.int64)
        d[p + "first"] = np.array(spec["first"], dtype=bool)
    else:
        d[p + "mode"] = np.array("single")
        d[p + "steps"] = np.int64(spec["steps"])
        d[p + "reset_at"] = np.array(spec["reset_at"], dtype=np.int64)
    return d


def main() -> None:
    th.set_num_threads(2)
    subset = np.sort(np.random.default_rng(SUBSET_SEED).choice(8641, N_SUBSET, replace=False))
    data: Dict[str, np.ndarray] = {"configs": np.array(list(CONFIGS))}
    for i, (name, spec) in enumerate(CONFIGS.items()):
        spec = dict(spec, obs_seed=100 + i)
        policy, layout = build_official(spec["net"], spec["temperature"], spec["seed"])
        out = run_chunked(policy, spec, spec["obs_seed"]) if "chunk_lens" in spec else \
            run_single(policy, spec, spec["obs_seed"])
        data.update(compress(name, spec, layout, out, subset))
        print(f"{name}: {len(out['vpred'])} rows, {len(layout)} keys, "
              f"distinct button argmax {len(set(out['act_buttons'].tolist()))}, "
              f"camera moves {(out['act_camera'] != 60).sum()}, vpred range "
              f"[{out['vpred'].min():.3f}, {out['vpred'].max():.3f}]")
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
