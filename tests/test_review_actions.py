"""Action mapping, IDM decoding and the recording loader against outputs of the OFFICIAL code on many inputs.

The expected values in tests/data/golden_review_actions.npz were made by running the official VPT code
(tests/data/make_golden_review_actions.py, which also documents the entries); the inputs lean on the edges:
camera values a few ulps around each rounding boundary of the mu-law quantiser in float64/float32/float16,
conflicting buttons, every joint button and camera index, null and stuck-attack records, short and long videos.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vpt_agent import action_mapping as am
from vpt_agent.data import ReadOptions
from vpt_agent.data.actions import decode_records, parse_record, record_to_env_action
from vpt_agent.idm_actions import idm_to_env

GOLDEN = Path(__file__).parent / "data" / "golden_review_actions.npz"


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def text(golden, key):
    return json.loads(golden[key].item().decode())


@pytest.mark.parametrize("dtype", ["f64", "f32", "f16", "int"])
def test_discretize_camera_matches_official(golden, dtype):
    """Bit-exact bins, including inputs on and next to the rounding boundaries, in the input's precision."""
    x = golden[f"disc_{dtype}_in"]
    with np.errstate(invalid="ignore"):
        got = am.discretize_camera(x)
    expected = golden[f"disc_{dtype}_out"].astype(np.int64)
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, [(repr(x[i]), int(got[i]), int(expected[i])) for i in wrong[:10]]
    assert got.dtype == np.int64


def test_discretize_camera_of_0d_float32_matches_official(golden):
    x = golden["disc_f32_0d_in"]
    got = np.array([am.discretize_camera(np.array(v)) for v in x])
    expected = golden["disc_f32_0d_out"].astype(np.int64)
    wrong = np.flatnonzero(got != expected)
    assert wrong.size == 0, [(repr(x[i]), int(got[i]), int(expected[i])) for i in wrong[:10]]


def test_undiscretize_camera_matches_official_to_the_bit(golden):
    got = am.undiscretize_camera(np.arange(11))
    assert got.dtype == np.float64
    assert np.array_equal(got, golden["undisc_out"]), got - golden["undisc_out"]


def test_joint_to_factored_and_env_for_every_index(golden):
    """Every joint button index (with random and null cameras) and every camera index (with camera on/off and
    inventory buttons): factored buttons, bins, and the env camera in degrees."""
    buttons, camera = golden["to_factored_in"].astype(np.int64).T
    got_buttons, got_bins = am.joint_to_factored(buttons, camera)
    assert np.array_equal(got_buttons, golden["to_factored_buttons"])
    assert np.array_equal(got_bins, golden["to_factored_camera"])
    assert np.array_equal(am.undiscretize_camera(got_bins), golden["policy2env_camera"])
    envs = am.policy_to_env(buttons, camera)
    cams = np.array([e["camera"] for e in envs])
    assert np.array_equal(cams, golden["policy2env_camera"].astype(np.float32))
    pressed = np.array([[e[b] for b in am.BUTTONS] for e in envs])
    assert np.array_equal(pressed, golden["to_factored_buttons"])
    assert set(np.unique(buttons)) == set(range(am.N_JOINT_BUTTONS))
    assert set(np.unique(camera)) == set(range(am.N_JOINT_CAMERA))


def test_factored_to_joint_matches_official(golden):
    joint, camera = am.factored_to_joint(golden["from_factored_buttons"], golden["from_factored_bins"])
    expected = golden["from_factored_out"].astype(np.int64)
    assert np.array_equal(joint, expected[:, 0])
    assert np.array_equal(camera, expected[:, 1])


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_env_dict_to_policy_matches_official_agent(golden, dtype):
    """One unbatched 24-key env dict per row (as ``MineRLAgent._env_action_to_agent`` takes them), cameras of the
    given precision, many on the quantiser's boundaries."""
    keys = text(golden, "env_keys")
    cams = golden[f"env_camera_{dtype}"]
    actions = [dict(zip(keys, row.tolist()), camera=cam) for row, cam in zip(golden["env_buttons"], cams)]
    joint, camera = am.env_to_policy(actions)
    expected = golden[f"env_out_{dtype}"].astype(np.int64)
    wrong = np.flatnonzero((joint != expected[:, 0]) | (camera != expected[:, 1]))
    assert wrong.size == 0, [(cams[i].tolist(), joint[i], camera[i], expected[i].tolist()) for i in wrong[:5]]


def test_idm_decoding_matches_official(golden):
    envs = idm_to_env(golden["idm_buttons"], golden["idm_bins"])
    pressed = np.array([[e[b] for b in am.BUTTONS] for e in envs])
    assert np.array_equal(pressed, golden["idm_buttons_out"])
    cams = np.array([e["camera"] for e in envs])
    assert np.array_equal(cams, golden["idm_camera"].astype(np.float32))
    assert all(e["ESC"] == e["pickItem"] == e["swapHands"] == 0 for e in envs)


def rows(actions, keys):
    buttons = np.array([[a[k] for k in keys] for a in actions], np.uint8).reshape(-1, len(keys))
    return buttons, np.array([a["camera"] for a in actions], np.float32).reshape(-1, 2)


def test_records_match_official_json_conversion(golden):
    keys = text(golden, "record_keys")
    records = text(golden, "records")
    got = [record_to_env_action(parse_record(r, f"record {i}"), integer_camera=True) for i, r in enumerate(records)]
    buttons, camera = rows([a for a, _ in got], keys)
    assert np.array_equal(buttons, golden["records_buttons"])
    assert np.array_equal(camera, golden["records_camera"].astype(np.float32))
    assert np.array_equal([null for _, null in got], golden["records_null"])


def test_sequences_match_official_data_loader(golden):
    """Stuck attack, scrolls, nulls and line/frame count mismatches over whole files, as the official worker."""
    keys = text(golden, "record_keys")
    options = ReadOptions.official()
    kept = []
    for lines, n_frames in text(golden, "sequences"):
        steps = decode_records(lines[:n_frames], Path("rec.jsonl"), options)
        kept.append([steps.actions[i] for i in np.flatnonzero(~steps.is_null)])
    assert [len(k) for k in kept] == golden["seq_lengths"].tolist()
    buttons, camera = rows([a for k in kept for a in k], keys)
    assert np.array_equal(buttons, golden["seq_buttons"])
    assert np.array_equal(camera, golden["seq_camera"].astype(np.float32))
