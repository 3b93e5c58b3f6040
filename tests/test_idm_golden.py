"""Parity of the inverse dynamics model with the official ``InverseActionPolicy`` / ``IDMAgent``.

tests/data/golden_idm.npz was made by tests/data/make_golden_idm.py running the official code on synthetic
weights in the official layout (see that script): a small IDM with memory carried across uneven chunks for a
batch of two videos, the 4x config at reduced width through ``IDMAgent.predict_actions`` (two consecutive calls),
and the full 4x layout.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
import torch

from golden_helpers.obs_gen import make_obs
from golden_helpers.weights_gen import make_tensor
from vpt_agent.action_mapping import BUTTONS
from vpt_agent.idm import IDM_4X_NET_KWARGS, IDMConfig, InverseActionPolicy, VPTIDM
from vpt_agent.loading import load_state_dict

DATA = Path(__file__).parent / "data" / "golden_idm.npz"
ATOL = 1e-4


@lru_cache(maxsize=1)
def _archive() -> Dict[str, np.ndarray]:
    return dict(np.load(DATA))


def _golden(name: str) -> Dict[str, np.ndarray]:
    p = name + "/"
    return {k[len(p):]: v for k, v in _archive().items() if k.startswith(p)}


def _layout(g):
    return {k: tuple(s) for k, s in zip(g["keys"].tolist(), json.loads(str(g["shapes"])))}


def _config(g) -> IDMConfig:
    return IDMConfig.from_kwargs(json.loads(str(g["net_kwargs"])), temperature=float(g["temperature"]))


def _policy(g) -> InverseActionPolicy:
    policy = InverseActionPolicy(_config(g))
    sd = {k: make_tensor(int(g["weights_seed"]), k, s) for k, s in _layout(g).items()}
    report = load_state_dict(policy, sd, source="golden_idm")
    assert report.ok and not report.unexpected_keys
    return policy.eval()


def _compare(g, logp: Dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(logp["buttons"], g["logp_buttons"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(logp["camera"], g["logp_camera"], atol=ATOL, rtol=0)
    assert (logp["buttons"].argmax(-1) == g["act_buttons"]).all()
    assert (logp["camera"].argmax(-1) == g["act_camera"]).all()


@torch.no_grad()
def test_small_idm_with_memory_across_chunks():
    """Batch of two videos, uneven chunks, memory carried (and overflowing), the CNN run on a few frames at a
    time: logits and argmax match."""
    g = _golden("small_memory")
    policy = _policy(g)
    h, w = _config(g).img_shape[:2]
    B, state, t0, parts = 2, policy.initial_state(2), 0, []
    for n in g["chunk_lens"].tolist():
        frames = np.stack([np.stack([cv2.resize(make_obs(int(g["obs_seed"]) + b, t0 + i), (w, h),
                                                interpolation=cv2.INTER_LINEAR) for i in range(n)]) for b in range(B)])
        out = policy(torch.from_numpy(frames), state, frame_batch=5)
        state, t0 = out.state, t0 + n
        parts.append(out.logp)
        assert all(m.keys.shape[1] == _config(g).maxlen for m in state)
    logp = {k: torch.cat([p[k] for p in parts], dim=1).numpy() for k in ("buttons", "camera")}
    assert sum(g["chunk_lens"]) > _config(g).maxlen  # the memory really wraps
    _compare(g, logp)


def test_4x_reduced_through_the_library_api():
    """VPTIDM.predict on 360x640 frames, two consecutive calls: env actions equal the official IDMAgent's."""
    g = _golden("4x_reduced")
    idm = VPTIDM(_policy(g), device="cpu")
    assert g["env_button_keys"].tolist() == list(BUTTONS)
    obs_seed, t0, preds = int(g["obs_seed"]), 0, []
    for n in g["chunk_lens"].tolist():
        preds.append(idm.predict_arrays(np.stack([make_obs(obs_seed, t0 + i) for i in range(n)])))
        t0 += n
    logp = {"buttons": np.concatenate([p.logp_buttons for p in preds])[None],
            "camera": np.concatenate([p.logp_camera for p in preds])[None]}
    _compare(g, logp)
    actions = [a for p in preds for a in p.actions()]
    buttons = np.array([[a[k] for k in BUTTONS] for a in actions])
    assert (buttons == g["env_buttons"]).all()
    camera = np.stack([a["camera"] for a in actions])
    np.testing.assert_allclose(camera, g["env_camera"], atol=1e-5, rtol=0)
    assert all(a["ESC"] == 0 and a["camera"].dtype == np.float32 for a in actions)


def test_golden_idm_outputs_are_varied():
    """The comparison is only meaningful if the official outputs press different buttons and move the camera."""
    for name in ("small_memory", "4x_reduced"):
        g = _golden(name)
        assert len({tuple(r) for r in g["act_buttons"].reshape(-1, 20)}) >= 10, name
        assert len({tuple(r) for r in g["act_camera"].reshape(-1, 2)}) >= 4, name


@pytest.mark.parametrize("name", ["small_memory", "4x_reduced", "4x_layout"])
def test_state_dict_layout_matches_official(name):
    g = _golden(name)
    with torch.device("meta"):
        policy = InverseActionPolicy(_config(g) if "temperature" in g else IDMConfig.from_kwargs(
            json.loads(str(g["net_kwargs"]))))
    ours = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    assert ours == _layout(g)


def test_official_4x_config_is_the_golden_one():
    g = _golden("4x_layout")
    assert json.loads(str(g["net_kwargs"])) == json.loads(json.dumps(IDM_4X_NET_KWARGS))
    with torch.device("meta"):
        policy = InverseActionPolicy(IDMConfig.official_4x())
    sd = policy.state_dict()
    assert len(sd) == 100
    assert sum(v.numel() for v in sd.values()) == int(g["n_params"])
    assert tuple(sd["net.conv3d_layer.layer.weight"].shape) == (128, 3, 5, 1, 1)
