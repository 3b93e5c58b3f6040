"""The IDM labelling procedure against the official one (``run_inverse_dynamics_model.py`` driving
``IDMAgent.predict_actions``), per frame.

tests/data/golden_idm_label.npz was made by tests/data/make_golden_idm_label.py running the official script on
360x640 frames (see that script): back-to-back calls of ``--n-frames`` frames with one hidden state carried across
calls, the last call on the frames left; a video shorter than a call; calls longer than the model's ``timesteps``;
a model with memory between calls. Here the same frames go through ``VPTIDM.predict`` one official call at a time
and, written as a lossless video, through ``python -m vpt_agent.label --official``.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from golden_helpers.obs_gen import make_obs
from golden_helpers.weights_gen import make_tensor
from idm_helpers import write_video
from vpt_agent.action_mapping import BUTTONS, CAMERA_NULL_BIN
from vpt_agent.data import find_recordings, load_actions
from vpt_agent.idm import IDMConfig, InverseActionPolicy, VPTIDM
from vpt_agent.idm_actions import env_to_idm
from vpt_agent.label import LabelConfig, label_videos
from vpt_agent.loading import load_state_dict

DATA = Path(__file__).parent / "data" / "golden_idm_label.npz"
ATOL = 1e-4


@lru_cache(maxsize=1)
def _archive() -> Dict[str, np.ndarray]:
    return dict(np.load(DATA))


CASES = [str(c) for c in _archive()["cases"]]


def _golden(name: str) -> Dict[str, np.ndarray]:
    p = name + "/"
    return {k[len(p):]: v for k, v in _archive().items() if k.startswith(p)}


def _frames(g) -> np.ndarray:
    return np.stack([make_obs(int(g["obs_seed"]), t) for t in range(int(g["num_frames"]))])


def _idm(g) -> VPTIDM:
    policy = InverseActionPolicy(IDMConfig.from_kwargs(json.loads(str(g["net_kwargs"])),
                                                       temperature=float(g["temperature"])))
    sd = {k: make_tensor(int(g["weights_seed"]), k, tuple(v.shape)) for k, v in policy.state_dict().items()}
    assert load_state_dict(policy, sd, source="golden_idm_label").ok
    return VPTIDM(policy, device="cpu")


def _official_bins(g) -> np.ndarray:
    return g["logp_camera"].argmax(-1)


def test_golden_cases_cover_the_procedure():
    """Each case exercises what it is named after, and the official labels are varied."""
    lens = {c: _golden(c)["call_lens"].tolist() for c in CASES}
    assert lens == {"nomem_short": [5], "nomem_rem": [16, 16, 8], "nomem_long_calls": [24, 16],
                    "mem_calls": [12, 12, 6]}
    assert max(lens["nomem_long_calls"]) > json.loads(str(_golden("nomem_long_calls")["net_kwargs"]))["timesteps"]
    assert IDMConfig.from_kwargs(json.loads(str(_golden("mem_calls")["net_kwargs"]))).maxlen == 16
    for c in CASES:
        g = _golden(c)
        assert g["env_button_keys"].tolist() == list(BUTTONS)
        assert (g["env_buttons"] == g["logp_buttons"].argmax(-1)).all()
        assert len({tuple(r) for r in g["env_buttons"]}) >= min(4, len(g["env_buttons"]) // 2), c
        assert len({tuple(r) for r in _official_bins(g)}) >= 3, c


@pytest.mark.parametrize("name", CASES)
def test_predict_one_official_call_at_a_time(name):
    """``VPTIDM.predict`` called as the official script calls ``predict_actions``: same log-probs and actions."""
    g = _golden(name)
    idm, frames, t0, preds = _idm(g), _frames(g), 0, []
    for n in g["call_lens"].tolist():
        preds.append(idm.predict_arrays(frames[t0:t0 + n]))
        t0 += n
    np.testing.assert_allclose(np.concatenate([p.logp_buttons for p in preds]), g["logp_buttons"], atol=ATOL, rtol=0)
    np.testing.assert_allclose(np.concatenate([p.logp_camera for p in preds]), g["logp_camera"], atol=ATOL, rtol=0)
    actions = [a for p in preds for a in p.actions()]
    assert (np.array([[a[k] for k in BUTTONS] for a in actions]) == g["env_buttons"]).all()
    camera = np.stack([a["camera"] for a in actions])
    assert (camera == g["env_camera"].astype(np.float32)).all()  # float32 of the official float64 bin centres


@pytest.mark.parametrize("name", ["nomem_short", "nomem_rem", "mem_calls"])  # calls > timesteps: mem_calls
def test_label_official_mode_matches_the_official_script(name, tmp_path):
    """``label --official --n-frames N`` on the video: every frame's label equals the official script's."""
    g = _golden(name)
    video = write_video(tmp_path / "v.mp4", _frames(g), fps=20)
    out = tmp_path / "out"
    label_videos(LabelConfig(videos=[str(video)], out=str(out), official=True, n_frames=int(g["n_frames"]),
                             device="cpu", progress=False), idm=_idm(g))
    (rec,) = find_recordings(out)
    loaded = load_actions(rec)
    assert loaded.num_lines == int(g["num_frames"])
    buttons, bins = env_to_idm(loaded.actions)
    keep = loaded.frame_index
    assert (buttons == g["env_buttons"][keep]).all() and (bins == _official_bins(g)[keep]).all()
    skipped = np.setdiff1d(np.arange(int(g["num_frames"])), keep)  # null actions in the official labels too
    assert not g["env_buttons"][skipped].any() and (_official_bins(g)[skipped] == CAMERA_NULL_BIN).all()
