"""Numerical parity with the official VPT policy on several small configs (tests/data/golden_configs.npz).

The archive was made by tests/data/make_golden_configs.py running the official code: synthetic weights
(golden_helpers.weights_gen) over the official state_dict layout, make_obs frames resized to each
config's img_shape. Covers pre-LSTM LayerNorm, activated non-residual pointwise layers, the "none"
attention mask, no pointwise layer with GroupNorm(2) / post-pool groups, a 64x96 image with
first_conv_norm, chunked multi-frame forwards with a batch of two episodes that restart at
different chunks, and rarer settings the official constructors accept: no conv norms under the "none" mask,
no memory (attention_memory_size == timesteps) with pool=False (its post-pool GroupNorm is in the state_dict,
unused) and unscaled pixels, and no CNN stacks at all (the dense layer reads the pixels) with layer_norm.
The LSTM recurrences: "multi_layer_lstm" (residual, pointwise layer, pre-LSTM LayerNorm) stepped one frame at a
time and in chunks, and a non-residual 3-block "multi_layer_bilstm" in chunks (its middle block runs each chunk
backwards), both with a batch of two episodes restarting at different chunks and the state carried over.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest
import torch

from golden_helpers.key_layout import official_keys
from golden_helpers.obs_gen import make_obs
from golden_helpers.weights_gen import make_tensor
from vpt_agent.config import PolicyConfig
from vpt_agent.loading import load_state_dict
from vpt_agent.policy import VPTPolicy

DATA = Path(__file__).parent / "data" / "golden_configs.npz"
ATOL = 1e-4


@lru_cache(maxsize=1)
def _archive() -> Dict[str, np.ndarray]:
    return dict(np.load(DATA))


def _config_names() -> List[str]:
    return _archive()["configs"].tolist()


def _golden(name: str) -> Dict[str, np.ndarray]:
    prefix = name + "/"
    return {k[len(prefix):]: v for k, v in _archive().items() if k.startswith(prefix)}


def _layout(g: Dict[str, np.ndarray]) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(k, tuple(s)) for k, s in zip(g["keys"].tolist(), json.loads(str(g["shapes"])))]


def _net_kwargs(g: Dict[str, np.ndarray]) -> dict:
    return json.loads(str(g["net_kwargs"]))


def _build(g: Dict[str, np.ndarray]) -> VPTPolicy:
    cfg = PolicyConfig.from_kwargs(_net_kwargs(g), temperature=float(g["temperature"]))
    policy = VPTPolicy(cfg)
    seed = int(g["weights_seed"])
    load_state_dict(policy, {k: make_tensor(seed, k, s) for k, s in _layout(g)}, source="golden_configs")
    return policy.eval()


def _frame(obs_seed: int, t: int, img_shape) -> np.ndarray:
    h, w = int(img_shape[0]), int(img_shape[1])
    return cv2.resize(make_obs(obs_seed, t), (w, h), interpolation=cv2.INTER_LINEAR)


@torch.no_grad()
def _replay_single(policy: VPTPolicy, g: Dict[str, np.ndarray], use_first_flag: bool):
    """One frame per call; at step 0 and the reset steps: fresh memory, or first=True on the old memory."""
    img_shape, obs_seed = _net_kwargs(g)["img_shape"], int(g["obs_seed"])
    resets = set(g["reset_at"].tolist())
    state = policy.initial_state(1)
    logp: Dict[str, list] = {"camera": [], "buttons": []}
    values = []
    for t in range(int(g["steps"])):
        first = torch.tensor([[t in resets and use_first_flag]])
        if t in resets and not use_first_flag:
            state = policy.initial_state(1)
        frames = torch.from_numpy(_frame(obs_seed, t, img_shape))[None, None]
        out = policy(frames, first, state)
        state = out.state
        for k in logp:
            logp[k].append(out.logp[k][0, 0])
        values.append(out.value[0, 0])
    return {k: torch.stack(v).double().numpy() for k, v in logp.items()}, torch.stack(values).double().numpy()


@torch.no_grad()
def _replay_chunked(policy: VPTPolicy, g: Dict[str, np.ndarray]):
    """Chunks of several frames for a batch of episodes; ``first[:, 0]`` restarts an episode; rows b*T+t."""
    img_shape, obs_seed = _net_kwargs(g)["img_shape"], int(g["obs_seed"])
    first_flags = g["first"]
    B = first_flags.shape[0]
    state = policy.initial_state(B)
    t0, logps, values = 0, [], []
    for c, n in enumerate(g["chunk_lens"].tolist()):
        frames = np.stack([np.stack([_frame(obs_seed + b, t0 + i, img_shape) for i in range(n)]) for b in range(B)])
        first = torch.zeros(B, n, dtype=torch.bool)
        first[:, 0] = torch.from_numpy(first_flags[:, c])
        out = policy(torch.from_numpy(frames), first, state)
        state = out.state
        logps.append(out.logp)
        values.append(out.value)
        t0 += n
    logp = {k: torch.cat([lp[k] for lp in logps], dim=1).reshape(B * t0, -1).double().numpy()
            for k in ("camera", "buttons")}
    return logp, torch.cat(values, dim=1).reshape(-1).double().numpy()


def _is_lstm(net: dict) -> bool:
    return net["recurrence_type"] != "transformer"


def _cases():
    for name in _config_names():
        g = _golden(name)
        if str(g["mode"]) == "chunked":
            yield pytest.param(name, None, id=f"{name}")
            continue
        yield pytest.param(name, False, id=f"{name}-reset")
        net = _net_kwargs(g)
        if _is_lstm(net) or net["attention_mask_style"] == "clipped_causal":
            # A first=True flag hides the old memory, which equals a fresh one under the causal mask only
            # (the official "none" mask ignores first); it zeroes an LSTM state, which is the fresh state.
            yield pytest.param(name, True, id=f"{name}-first-flag")


def _compare(name: str, g: Dict[str, np.ndarray], logp: Dict[str, np.ndarray], value: np.ndarray) -> None:
    assert logp["camera"].shape == g["logp_camera"].shape, name
    np.testing.assert_allclose(logp["camera"], g["logp_camera"], atol=ATOL, rtol=0, err_msg=f"{name} camera")
    np.testing.assert_allclose(logp["buttons"][g["full_rows"]], g["logp_buttons_full"], atol=ATOL, rtol=0,
                               err_msg=f"{name} buttons (full rows)")
    sub = np.take_along_axis(logp["buttons"], g["button_idx"].astype(np.int64), axis=1)
    np.testing.assert_allclose(sub, g["logp_buttons_sub"], atol=ATOL, rtol=0, err_msg=f"{name} buttons (subset)")
    np.testing.assert_allclose(value, g["vpred"], atol=ATOL, rtol=0, err_msg=f"{name} value")
    assert logp["buttons"].argmax(-1).tolist() == g["argmax_buttons"].tolist(), name
    assert logp["camera"].argmax(-1).tolist() == g["argmax_camera"].tolist(), name


@pytest.mark.parametrize("name,use_first_flag", list(_cases()))
def test_matches_official(name, use_first_flag):
    g = _golden(name)
    policy = _build(g)
    if use_first_flag is None:
        logp, value = _replay_chunked(policy, g)
    else:
        logp, value = _replay_single(policy, g, use_first_flag)
    _compare(name, g, logp, value)


@pytest.mark.parametrize("name", _config_names())
def test_state_dict_layout_matches_official(name):
    g = _golden(name)
    cfg = PolicyConfig.from_kwargs(_net_kwargs(g), temperature=float(g["temperature"]))
    with torch.device("meta"):
        policy = VPTPolicy(cfg)
    ours = [(k, tuple(v.shape)) for k, v in policy.state_dict().items()]
    assert dict(ours) == dict(_layout(g))
    assert len(ours) == len(_layout(g))


def test_key_layout_helper_agrees_with_official_on_standard_configs():
    """key_layout.official_keys (used by other tests) describes the official layout of standard configs."""
    checked = 0
    for name in _config_names():
        g = _golden(name)
        net = _net_kwargs(g)
        standard = (not _is_lstm(net) and not net["use_pre_lstm_ln"] and net["use_pointwise_layer"]
                    and not net.get("first_conv_norm") and net["init_norm_kwargs"].get("group_norm_groups") == 1
                    and net["img_shape"][0] == net["img_shape"][1])
        if standard:
            assert sorted(official_keys({"net": net})) == sorted(_layout(g)), name
            checked += 1
    assert checked >= 2


def test_golden_configs_exercise_actions_and_episodes():
    """Each config's run is only meaningful with varied actions; the chunked run has staggered restarts."""
    for name in _config_names():
        g = _golden(name)
        assert len(set(g["argmax_buttons"].tolist())) >= 3, name
        assert len(set(g["argmax_camera"].tolist())) >= 3, name
        if str(g["mode"]) == "chunked":
            first = g["first"]
            assert first.shape[0] >= 2 and first[:, 0].all() and (first[0] != first[1]).any(), name
            net = _net_kwargs(g)
            if not _is_lstm(net):  # chunks longer than the memory (an LSTM's state has no length)
                assert max(g["chunk_lens"]) > int(net["attention_memory_size"] - net["timesteps"])
        else:
            assert max(g["reset_at"]) > 0, name


def test_golden_configs_cover_both_lstm_recurrences_and_a_backwards_block():
    """The archive holds the LSTM cases the tests above replay: chunks of both kinds, and a bilstm with a
    backwards block (block 1) between forwards ones."""
    kinds = {}
    for name in _config_names():
        g = _golden(name)
        net = _net_kwargs(g)
        kinds.setdefault(net["recurrence_type"], set()).add(str(g["mode"]))
        if net["recurrence_type"] == "multi_layer_bilstm":
            assert net["n_recurrence_layers"] >= 3 and max(g["chunk_lens"]) > 1, name
            assert any(k.startswith("net.recurrent_layer.blocks.2.r.weight_hh_l0") for k in g["keys"].tolist())
    assert kinds.get("multi_layer_lstm") == {"single", "chunked"}
    assert kinds.get("multi_layer_bilstm") == {"chunked"}


def test_bilstm_backwards_block_matters():
    """Running the bilstm's middle block forwards changes the outputs: the golden test sees the direction."""
    g = _golden("l_chunked_bilstm_3_nonresidual")
    policy = _build(g)
    assert [b.reverse for b in policy.net.recurrent_layer.blocks] == [False, True, False]
    policy.net.recurrent_layer.blocks[1].reverse = False
    logp, _ = _replay_chunked(policy, g)
    assert np.abs(logp["camera"] - g["logp_camera"]).max() > 1e-2
