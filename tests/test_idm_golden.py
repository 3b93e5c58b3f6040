"""Parity of the inverse dynamics model with the official ``InverseActionPolicy`` / ``IDMAgent``.

tests/data/golden_idm.npz was made by tests/data/make_golden_idm.py running the official code on synthetic
weights in the official layout (see that script): a small IDM with memory carried across uneven chunks for a
batch of two videos, the 4x config at reduced width through ``IDMAgent.predict_actions`` (two consecutive calls),
the full 4x layout, and LSTM IDMs: "multi_layer_lstm" and "multi_layer_bilstm" small ones in chunks (state
carried, one video's state reset by ``first``), and a "multi_layer_bilstm" 4x layout through ``IDMAgent``.
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
#: The LSTM entries run the CNN on all frames at once, as the official code: only thread-count rounding remains.
LSTM_ATOL = 2e-5
LSTM_ENTRIES = ("lstm_small", "bilstm_small", "bilstm_agent")


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


def _compare(g, logp: Dict[str, np.ndarray], atol: float = ATOL) -> None:
    np.testing.assert_allclose(logp["buttons"], g["logp_buttons"], atol=atol, rtol=0)
    np.testing.assert_allclose(logp["camera"], g["logp_camera"], atol=atol, rtol=0)
    assert (logp["buttons"].argmax(-1) == g["act_buttons"]).all()
    assert (logp["camera"].argmax(-1) == g["act_camera"]).all()


def _small_frames(g, t0: int, n: int) -> torch.Tensor:
    """Frames t0..t0+n-1 of the entry's two videos, resized as the generator did: (2, n, h, w, 3) uint8."""
    h, w = _config(g).img_shape[:2]
    return torch.from_numpy(np.stack([np.stack([
        cv2.resize(make_obs(int(g["obs_seed"]) + b, t0 + i), (w, h), interpolation=cv2.INTER_LINEAR)
        for i in range(n)]) for b in range(2)]))


@torch.no_grad()
def _run_chunks(g, policy: InverseActionPolicy, frame_batch=None, check_state=None) -> Dict[str, np.ndarray]:
    """The entry's chunks through ``policy`` for its two videos, state carried (``first`` where recorded)."""
    state, t0, parts = policy.initial_state(2), 0, []
    for c, n in enumerate(g["chunk_lens"].tolist()):
        first = torch.from_numpy(g["first"][c]) if "first" in g else None
        out = policy(_small_frames(g, t0, n), state, first=first, frame_batch=frame_batch)
        state, t0 = out.state, t0 + n
        parts.append(out.logp)
        if check_state is not None:
            check_state(state)
    return {k: torch.cat([p[k] for p in parts], dim=1).numpy() for k in ("buttons", "camera")}


def test_small_idm_with_memory_across_chunks():
    """Batch of two videos, uneven chunks, memory carried (and overflowing), the CNN run on a few frames at a
    time: logits and argmax match."""
    g = _golden("small_memory")
    maxlen = _config(g).maxlen

    def memory_is_full(state):
        assert all(m.keys.shape[1] == maxlen for m in state)

    logp = _run_chunks(g, _policy(g), frame_batch=5, check_state=memory_is_full)
    assert sum(g["chunk_lens"]) > maxlen  # the memory really wraps
    _compare(g, logp)


@pytest.mark.parametrize("name", ["lstm_small", "bilstm_small"])
def test_lstm_idm_with_state_across_chunks(name):
    """LSTM IDMs (bilstm: every second block backwards within a chunk), two videos in uneven chunks with (h, c)
    carried; in lstm_small video 1's state is reset by ``first`` at chunk 2."""
    g = _golden(name)
    assert _config(g).is_lstm and _config(g).recurrence_type == json.loads(str(g["net_kwargs"]))["recurrence_type"]
    if name == "lstm_small":
        assert g["first"].any() and not g["first"][:, 0].any()

    def lstm_state(state):
        assert all(s.h.shape == s.c.shape == (2, 1, _config(g).hidsize) for s in state)

    _compare(g, _run_chunks(g, _policy(g), check_state=lstm_state), atol=LSTM_ATOL)


@pytest.mark.parametrize("name", ["4x_reduced", "bilstm_agent"])
def test_idm_agent_through_the_library_api(name):
    """VPTIDM.predict on 360x640 frames, consecutive calls: env actions equal the official IDMAgent's. For the
    bidirectional LSTM the calls after the first have one frame (the official agent fails on longer ones)."""
    g = _golden(name)
    idm = VPTIDM(_policy(g), device="cpu")
    assert g["env_button_keys"].tolist() == list(BUTTONS)
    obs_seed, t0, preds = int(g["obs_seed"]), 0, []
    for n in g["chunk_lens"].tolist():
        preds.append(idm.predict_arrays(np.stack([make_obs(obs_seed, t0 + i) for i in range(n)])))
        t0 += n
    logp = {"buttons": np.concatenate([p.logp_buttons for p in preds])[None],
            "camera": np.concatenate([p.logp_camera for p in preds])[None]}
    _compare(g, logp, atol=LSTM_ATOL if name in LSTM_ENTRIES else ATOL)
    actions = [a for p in preds for a in p.actions()]
    buttons = np.array([[a[k] for k in BUTTONS] for a in actions])
    assert (buttons == g["env_buttons"]).all()
    camera = np.stack([a["camera"] for a in actions])
    np.testing.assert_allclose(camera, g["env_camera"], atol=1e-5, rtol=0)
    assert all(a["ESC"] == 0 and a["camera"].dtype == np.float32 for a in actions)


def test_golden_idm_outputs_are_varied():
    """The comparison is only meaningful if the official outputs press different buttons and move the camera."""
    for name in ("small_memory", "4x_reduced", *LSTM_ENTRIES):
        g = _golden(name)
        assert len({tuple(r) for r in g["act_buttons"].reshape(-1, 20)}) >= 10, name
        assert len({tuple(r) for r in g["act_camera"].reshape(-1, 2)}) >= 4, name


@pytest.mark.parametrize("name", ["small_memory", "4x_reduced", "4x_layout", *LSTM_ENTRIES])
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
