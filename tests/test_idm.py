"""VPTIDM library API, IDMConfig validation and safe loading (tiny IDM; parity is in test_idm_golden.py)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import vpt_agent
from idm_helpers import TINY_LSTM_NET, TINY_NET, tiny_config, video_frames, write_tiny_idm
from vpt_agent.action_mapping import MINERL_ACTION_KEYS
from vpt_agent.idm import IDMConfig, IDMError, InverseActionPolicy, VPTIDM, load_idm_config
from vpt_agent.loading import ModelFileError, WeightsMismatchError

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def idm_files(tmp_path_factory):
    return write_tiny_idm(tmp_path_factory.mktemp("idm"))


@pytest.fixture
def idm(idm_files):
    return VPTIDM.from_files(*idm_files, device="cpu")


def test_exported_from_package():
    assert vpt_agent.VPTIDM is VPTIDM


def test_predict_returns_minerl_actions(idm):
    actions = idm.predict(video_frames(5, seed=0, size=(36, 64)))
    assert len(actions) == 5
    for a in actions:
        assert tuple(a) == MINERL_ACTION_KEYS
        assert a["camera"].dtype == np.float32 and a["camera"].shape == (2,)
        assert all(type(a[k]) is int and a[k] in (0, 1) for k in MINERL_ACTION_KEYS if k != "camera")


def test_consecutive_calls_continue_the_video(idm):
    """Each call is one forward pass, as the official predict_actions; the next call continues the video."""
    frames = video_frames(20, seed=1)
    parts = [idm.predict_arrays(frames[a:b]) for a, b in ((0, 8), (8, 16), (16, 20))]
    assert all(m.keys.shape[1] == 0 for m in idm._state)  # memory == timesteps: nothing carried
    for (a, b), p in zip(((0, 8), (8, 16), (16, 20)), parts):
        idm.reset()
        np.testing.assert_array_equal(idm.predict_arrays(frames[a:b]).logp_buttons, p.logp_buttons)
    idm.reset()
    whole = idm.predict_arrays(frames)  # 20 frames > timesteps (8): still one pass over all of them
    assert np.abs(whole.logp_buttons[:8] - parts[0].logp_buttons).max() > 1e-4


def test_attention_sees_the_future_within_a_call_only(idm):
    """Non-causal within a call: a changed later frame changes earlier outputs of its call, not earlier calls."""
    frames = video_frames(16, seed=2)
    base = np.concatenate([idm.predict_arrays(frames[:8]).logp_buttons, idm.predict_arrays(frames[8:]).logp_buttons])
    changed = frames.copy()
    changed[14] = 255 - changed[14]
    idm.reset()
    after = np.concatenate([idm.predict_arrays(changed[:8]).logp_buttons,
                            idm.predict_arrays(changed[8:]).logp_buttons])
    assert np.abs(after[8:12] - base[8:12]).max() > 1e-4  # same call, before the change
    np.testing.assert_array_equal(after[:8], base[:8])  # previous call untouched
    idm.reset()
    one_call = idm.predict_arrays(changed).logp_buttons
    assert np.abs(one_call[:8] - after[:8]).max() > 1e-4  # all 16 frames in one call: frame 14 is seen by all


@pytest.mark.parametrize("recurrence", ["multi_layer_lstm", "multi_layer_bilstm"])
def test_lstm_idm_carries_its_state_from_call_to_call(recurrence, tmp_path):
    """An LSTM IDM (no attention settings, no timesteps: unused) on calls of any length: (h, c) carries forward;
    a changed later frame reaches earlier frames of its call only through the bilstm's backwards block."""
    net = {k: v for k, v in dict(TINY_LSTM_NET, recurrence_type=recurrence).items()
           if not k.startswith("attention") and k != "timesteps"}
    idm = VPTIDM.from_files(*write_tiny_idm(tmp_path, seed=4, net=net), device="cpu")
    frames = video_frames(16, seed=5)
    first_call = idm.predict_arrays(frames[:4]).logp_buttons
    second_call = idm.predict_arrays(frames[4:]).logp_buttons  # 12 frames
    assert all(s.h.shape == s.c.shape == (1, 1, net["hidsize"]) for s in idm._state)
    idm.reset()
    assert np.abs(idm.predict_arrays(frames[4:]).logp_buttons - second_call).max() > 1e-4  # the state mattered
    changed = frames.copy()
    changed[15] = 255 - changed[15]
    idm.reset()
    np.testing.assert_array_equal(idm.predict_arrays(changed[:4]).logp_buttons, first_call)
    after = idm.predict_arrays(changed[4:]).logp_buttons
    early = np.abs(after[:8] - second_call[:8]).max()  # frames 4..11: beyond the 3D conv's reach of frame 15
    assert (early > 1e-4) if recurrence == "multi_layer_bilstm" else (early == 0), early
    with pytest.raises(NotImplementedError, match="recurrence_type"):
        IDMConfig.from_kwargs(dict(TINY_LSTM_NET, recurrence_type="multi_masked_lstm"))


@torch.no_grad()
def test_frame_batch_does_not_change_results(idm_files):
    policy = VPTIDM.from_files(*idm_files, device="cpu").policy
    x = torch.from_numpy(np.stack([np.stack([f for f in video_frames(8, seed=s, size=(16, 16))])
                                   for s in (3, 4)]))
    a = policy(x, policy.initial_state(2)).logp["buttons"]
    b = policy(x, policy.initial_state(2), frame_batch=6).logp["buttons"]
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=1e-5)  # fp32 rounding only (sharp heads)


def test_bad_frames_are_a_clear_error(idm):
    with pytest.raises(IDMError, match=r"\(N, H, W, 3\)"):
        idm.predict(np.zeros((4, 16, 16), np.uint8))
    with pytest.raises(IDMError, match=r"\(N, H, W, 3\)"):
        idm.predict(np.zeros((0, 16, 16, 3), np.uint8))
    with pytest.raises(IDMError, match="uint8"):
        idm.predict(np.zeros((2, 16, 16, 3), np.float32))
    with pytest.raises(IDMError, match="frames must be RGB uint8, got dtype float32"):
        idm.predict(np.full((3, 16, 16, 3), 7.0, np.float32))
    for frame_batch in (0, -1, 2.5, "x", True):
        with pytest.raises(IDMError, match="frame_batch must be None or an integer >= 1"):
            VPTIDM(idm.policy, device="cpu", frame_batch=frame_batch)


def test_from_pretrained_uses_the_zoo(idm_files, monkeypatch):
    from vpt_agent import zoo

    asked = []
    monkeypatch.setattr(zoo, "fetch", lambda name, *a, **k: asked.append(name) or idm_files)
    idm = VPTIDM.from_pretrained(device="cpu")
    assert asked == ["4x-idm"] and isinstance(idm.policy, InverseActionPolicy)
    with pytest.raises(IDMError, match="not an inverse dynamics model"):
        VPTIDM.from_pretrained("foundation-model-1x", device="cpu")
    assert asked == ["4x-idm"]


# ----------------------------------------------------------------------------- config and loading
def test_config_rules_of_the_official_constructor():
    cfg = tiny_config()
    assert cfg.first_conv_norm and cfg.maxlen == 0 and cfg.conv3d == (3, 4, (5, 1, 1))
    with pytest.raises(ValueError, match="first_conv_norm"):
        IDMConfig.from_kwargs(dict(TINY_NET, first_conv_norm=True))
    with pytest.raises(ValueError, match="outchan"):
        IDMConfig.from_kwargs(dict(TINY_NET, img_shape=[16, 16, 3]))
    with pytest.raises(NotImplementedError, match="same"):
        IDMConfig.from_kwargs(dict(TINY_NET, conv3d_params=dict(TINY_NET["conv3d_params"], padding=[0, 0, 0])))
    with pytest.raises(ValueError, match="kernel_size"):
        IDMConfig.from_kwargs(dict(TINY_NET, conv3d_params={"inchan": 3, "outchan": 4}))
    with pytest.raises(NotImplementedError, match="stride"):
        IDMConfig.from_kwargs(dict(TINY_NET, conv3d_params=dict(TINY_NET["conv3d_params"], stride=2)))
    with pytest.raises(ValueError, match="attention_memory_size - timesteps"):  # no memory needs mask "none"
        IDMConfig.from_kwargs(dict(TINY_NET, attention_mask_style="clipped_causal"))
    no_conv = IDMConfig.from_kwargs(dict(TINY_NET, conv3d_params=None, img_shape=[16, 16, 3]))
    assert not no_conv.first_conv_norm  # a plain InverseActionNet: valid, as in the official code
    # The first normalised convolution reads the 3D conv's 4 channels, not the frames' 3: 2 groups divide them.
    two_groups = InverseActionPolicy(IDMConfig.from_kwargs(dict(TINY_NET, init_norm_kwargs={"group_norm_groups": 2})))
    frames = torch.zeros(1, 4, 16, 16, 3, dtype=torch.uint8)
    assert two_groups(frames, two_groups.initial_state(1)).logp["buttons"].shape == (1, 4, 20, 2)
    with pytest.raises(ValueError, match=r"group_norm_groups=3 does not divide the channel counts \[.*4\]"):
        IDMConfig.from_kwargs(dict(TINY_NET, init_norm_kwargs={"group_norm_groups": 3}))


def test_model_file_is_loaded_safely(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.model"
    bad.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(ModelFileError):
        load_idm_config(bad)
    odd = tmp_path / "odd.model"
    odd.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": dict(TINY_NET, hidsize=33)}}}}))
    with pytest.raises(ModelFileError, match="odd.model"):
        load_idm_config(odd)


def test_policy_weights_are_diagnosed(idm_files):
    with pytest.raises(WeightsMismatchError, match="policy"):
        VPTIDM.from_files(idm_files[0], DATA / "small.weights", device="cpu")


def test_missing_keys_are_an_error_unless_allowed(idm_files, tmp_path):
    sd = torch.load(idm_files[1], weights_only=True)
    del sd["net.conv3d_layer.layer.weight"]
    partial = tmp_path / "partial.weights"
    torch.save(sd, partial)
    with pytest.raises(WeightsMismatchError, match="conv3d_layer"):
        VPTIDM.from_files(idm_files[0], partial, device="cpu")
    idm = VPTIDM.from_files(idm_files[0], partial, device="cpu", allow_missing=True)
    assert idm.load_weights(partial, allow_missing=True).missing_keys == ["net.conv3d_layer.layer.weight"]
