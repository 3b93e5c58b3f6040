"""Action mapping: joint <-> factored <-> env, camera mu-law quantisation."""
import numpy as np
import pytest

from vpt_agent import action_mapping as am

BIN_DEGREES = [-10, -5.809483, -3.215369, -1.609499, -0.615394, 0, 0.615394, 1.609499, 3.215369, 5.809483, 10]


def test_camera_bins_and_thresholds():
    np.testing.assert_allclose(am.undiscretize_camera(np.arange(11)), BIN_DEGREES, atol=1e-6)
    np.testing.assert_array_equal(am.discretize_camera(np.array(BIN_DEGREES)), np.arange(11))
    # thresholds between neighbouring bins (|x| < 0.271 maps to the null bin), clipping beyond +-10
    assert am.discretize_camera(np.array([0.27, 0.272, 1.05, 1.06, 7.65, 7.66, 45.0, -45.0])).tolist() == \
        [5, 6, 6, 7, 9, 10, 10, 0]


def test_joint_button_index_layout():
    f, bins = am.joint_to_factored(np.array([0, 1, 2, 864, 8640]), np.array([0, 0, 0, 0, 13]))
    names = np.array(am.BUTTONS)
    assert [names[r.astype(bool)].tolist() for r in f] == [[], [], ["jump"], ["hotbar.1"], ["inventory"]]
    # 0: camera meta off -> camera forced to null; 1: camera on -> camera head's bins; 8640 passes camera through
    assert bins.tolist() == [[5, 5], [0, 0], [5, 5], [5, 5], [1, 2]]
    assert am.N_JOINT_BUTTONS == 8641 and am.N_JOINT_CAMERA == 121


def test_round_trip_joint_factored_joint():
    rng = np.random.default_rng(0)
    joint = np.concatenate([np.arange(am.N_JOINT_BUTTONS), rng.integers(0, am.N_JOINT_BUTTONS, 500)])
    cam = rng.integers(0, am.N_JOINT_CAMERA, len(joint))
    f, bins = am.joint_to_factored(joint, cam)
    back_joint, back_cam = am.factored_to_joint(f, bins)
    camera_on = ~am.JOINT_CAMERA_OFF[joint] & (cam != am.CAMERA_NULL_JOINT)
    # a camera-on action whose camera sample is the null bin maps back to camera-off (+ null camera)
    expected = np.where(~am.JOINT_CAMERA_OFF[joint] & ~camera_on & (joint != am.INVENTORY_JOINT), joint - 1, joint)
    np.testing.assert_array_equal(back_joint, expected)
    np.testing.assert_array_equal(back_cam[camera_on & (joint != 8640)], cam[camera_on & (joint != 8640)])


def test_round_trip_env_policy_env():
    rng = np.random.default_rng(1)
    joint = rng.integers(0, am.N_JOINT_BUTTONS - 1, 300)
    cam = rng.integers(0, am.N_JOINT_CAMERA, 300)
    env = am.policy_to_env(joint, cam)
    b2, c2 = am.env_to_policy(env)
    env2 = am.policy_to_env(b2, c2)
    for a, b in zip(env, env2):
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] for k in a if k != "camera")
        np.testing.assert_array_equal(a["camera"], b["camera"])


def test_from_factored_rules():
    idx = {b: i for i, b in enumerate(am.BUTTONS)}

    def press(*names, camera=(5, 5)):
        row = np.zeros(20, dtype=np.uint8)
        row[[idx[n] for n in names]] = 1
        return am.factored_to_joint(row[None], np.array([camera]))

    assert press("forward", "back")[0][0] == press()[0][0] == 0
    assert press("left", "right", "jump")[0][0] == 2
    assert press("sprint", "sneak")[0][0] == press("sneak")[0][0]
    assert press("hotbar.1", "hotbar.9")[0][0] == press("hotbar.9")[0][0] == 9 * 864
    assert press(camera=(5, 6))[0][0] == 1 and press(camera=(5, 6))[1][0] == 61
    assert press("inventory", "attack", camera=(0, 0)) == (np.array([8640]), np.array([60]))


def test_lookup_tables_are_never_mutated():
    before = am.JOINT_TO_BUTTONS.copy()
    f, bins = am.joint_to_factored(np.array([13]), np.array([13]))
    bins[:] = 0
    f[:] = 1
    np.testing.assert_array_equal(am.JOINT_TO_BUTTONS, before)
    assert am.joint_to_factored(np.array([1]), np.array([13]))[1].tolist() == [[1, 2]]


def test_env_actions_have_minerl_types():
    (a,) = am.policy_to_env(np.array([2 + 1]), np.array([0]))
    assert sorted(a) == sorted(am.MINERL_ACTION_KEYS) and len(a) == 24
    assert all(type(a[k]) is int for k in a if k != "camera")
    assert a["ESC"] == a["pickItem"] == a["swapHands"] == 0
    assert a["camera"].dtype == np.float32 and a["camera"].shape == (2,)
    np.testing.assert_allclose(a["camera"], [-10, -10])


def test_bad_inputs():
    with pytest.raises(ValueError, match="0..8640"):
        am.joint_to_factored(np.array([8641]), np.array([0]))
    with pytest.raises(ValueError, match="integer"):
        am.joint_to_factored(np.array([0.5]), np.array([0]))
    with pytest.raises(ValueError, match="0 or 1"):
        am.env_to_factored([{"attack": 2}])
    with pytest.raises(ValueError, match=r"shape \(B, 20\)"):
        am.factored_to_joint(np.zeros((1, 3)), np.zeros((1, 2)))


def test_joint_action_and_batched_mapping_equal_the_factored_path():
    """The cached fast paths (policy_to_env's templates, JointAction.to_env) give exactly the reference dicts."""
    rng = np.random.default_rng(3)
    buttons = np.concatenate([rng.integers(0, am.N_JOINT_BUTTONS, 500), [0, am.INVENTORY_JOINT]])
    camera = np.concatenate([rng.integers(0, am.N_JOINT_CAMERA, 500), [0, 120]])
    reference = am.factored_to_env(*am.joint_to_factored(buttons, camera))
    for got in (am.policy_to_env(buttons, camera),
                [am.JointAction(int(b), int(c)).to_env() for b, c in zip(buttons, camera)]):
        for ref, action in zip(reference, got):
            assert list(action) == list(ref) == list(am.MINERL_ACTION_KEYS)
            for key in ref:
                assert type(action[key]) is type(ref[key]) and np.array_equal(action[key], ref[key]), key
            assert action["camera"].dtype == np.float32
    a, b = am.JointAction(5, 7).to_env(), am.JointAction(5, 7).to_env()
    a["camera"][0] = 99.0
    a["attack"] = 1
    assert b["camera"][0] != 99.0 and am.JointAction(5, 7).to_env()["attack"] == b["attack"]  # fresh copies
