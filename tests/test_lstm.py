"""LSTM policies ("multi_layer_lstm", "multi_layer_bilstm") beyond the golden parity of test_golden_configs:
the agent's eager path with per-env episode starts, the state type through training, checkpoints and resume."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_obs
from golden_helpers.weights_gen import make_tensor
from test_agent import assert_batched_equals_single_agents
from test_train import CPU, _config, _DyingSource, _Killed, _nll_per_episode, _one_batch
from train_fixtures import TINY_NET, episode, write_model
from vpt_agent import VPTAgent
from vpt_agent.config import PolicyConfig
from vpt_agent.loading import load_state_dict
from vpt_agent.lstm import LSTMState
from vpt_agent.policy import VPTPolicy
from vpt_agent.train import checkpoint as ckpt
from vpt_agent.train.batches import MemorySource, TrainDataError, WindowLoader
from vpt_agent.train.config import TrainConfig
from vpt_agent.train.trainer import (autocast_for, build_policy, make_optimizer, train, train_step,
                                     trainable_parameters)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: A small LSTM policy; the attention settings in it are unused (as officially).
NET = dict(TINY_NET, recurrence_type="multi_layer_lstm", hidsize=32, use_pre_lstm_ln=True, timesteps=None)


def _policy(kind: str = "multi_layer_lstm", seed: int = 5) -> VPTPolicy:
    """Synthetic weights (golden_helpers): sharp action logits, so argmax comparisons are not rounding ties."""
    policy = VPTPolicy(PolicyConfig.from_kwargs(dict(NET, recurrence_type=kind)))
    sd = {k: make_tensor(seed, k, tuple(v.shape)) for k, v in policy.state_dict().items()}
    load_state_dict(policy, sd, source="synthetic")
    return policy.eval()


# ----------------------------------------------------------------------------- agent
@pytest.mark.parametrize("kind", ["multi_layer_lstm", "multi_layer_bilstm"])
def test_batched_lstm_agent_equals_single_agents_with_staggered_episode_starts(kind):
    policy = _policy(kind)
    assert_batched_equals_single_agents(lambda: VPTAgent(policy, device="cpu"))


def test_step_engine_refuses_lstm_configs():
    from vpt_agent.config import UnsupportedConfigError
    from vpt_agent.inference import StepEngine, supports

    policy = _policy()
    assert policy.cfg.attention_mask_style == "clipped_causal"  # the unused default: supports() must not stop there
    assert not supports(policy)
    with pytest.raises(UnsupportedConfigError):
        StepEngine(policy, 1)


def test_lstm_agent_runs_eagerly_with_one_state_per_env(caplog):
    with caplog.at_level("WARNING", logger="vpt_agent.agent"):
        agent = VPTAgent(_policy(), device="cpu", compile=True)
    assert not agent.compiled and not agent.cuda_graph  # the step engine is for transformer configs
    assert "no effect" in caplog.text  # the ignored request is said, not silent
    action = agent.get_action({"pov": make_obs(30, 0)})
    assert len(action) == 24 and agent._engine is None
    agent.reset()
    actions = agent.get_actions([{"pov": make_obs(30 + i, 0)} for i in range(3)], [True] * 3)
    assert len(actions) == 3 and agent._engine is None
    state = agent._state
    assert len(state) == TINY_NET["n_recurrence_layers"]
    assert all(isinstance(s, LSTMState) and s.h.shape == s.c.shape == (3, 1, 32) for s in state)


def test_first_resets_the_lstm_state_of_that_env_only():
    """``first`` for env 0 makes its output that of a fresh agent; env 1 is unaffected."""
    policy = _policy()
    obs = lambda t: [{"pov": make_obs(40, t)}, {"pov": make_obs(41, t)}]  # noqa: E731
    runs = []
    for reset0 in (False, True):
        agent = VPTAgent(policy, device="cpu")
        for t in range(4):
            agent.act(obs(t), [t == 0, t == 0])
        runs.append(agent.act(obs(4), [reset0, False], deterministic=True))
    keep, reset = runs
    fresh = VPTAgent(policy, device="cpu").act(obs(4)[:1], [True], deterministic=True)
    np.testing.assert_allclose(reset.logp_buttons[0], fresh.logp_buttons[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(reset.logp_buttons[1], keep.logp_buttons[1], rtol=1e-5, atol=1e-5)
    assert np.abs(keep.logp_buttons[0] - reset.logp_buttons[0]).max() > 1e-3  # the state mattered


def test_lstm_agent_in_bfloat16_follows_float32():
    steps = {}
    for dtype in (torch.float32, torch.bfloat16):
        agent = VPTAgent(_policy(), device="cpu", dtype=dtype)
        for t in range(3):
            steps[dtype] = agent.act([{"pov": make_obs(50 + i, t)} for i in range(2)], [t == 0] * 2,
                                     deterministic=True)
    assert all(s.dtype == torch.bfloat16 for s in agent._state[0])  # the state follows the weights
    bf16, fp32 = steps[torch.bfloat16].logp_camera.ravel(), steps[torch.float32].logp_camera.ravel()
    assert np.isfinite(bf16).all() and np.corrcoef(bf16, fp32)[0, 1] > 0.95  # bf16 rounding, not another network


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def lstm_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "lstm.model", NET)


def test_train_steps_carry_a_detached_lstm_state(lstm_model):
    policy = build_policy(str(lstm_model), "random", 0)
    params = trainable_parameters(policy, False)
    opt, _ = make_optimizer(params, TrainConfig(lr=1e-3))
    t = _one_batch(lstm_model)
    state = policy.initial_state(2)
    losses = []
    for _ in range(2):
        loss, norm, state = train_step(policy, opt, params, t, state, 1.0, autocast_for(CPU, torch.float32))
        losses.append(float(loss))
        assert torch.isfinite(norm)
        assert all(isinstance(s, LSTMState) and not s.h.requires_grad and not s.c.requires_grad for s in state)
    assert float(state[0].h.abs().max()) > 0  # the state was carried, not re-zeroed
    # The carried state enters the next step: a zero state gives another loss on the same batch.
    with torch.no_grad():
        carried = policy(t["frames"], torch.zeros_like(t["first"]), state)
        fresh = policy(t["frames"], torch.zeros_like(t["first"]), policy.initial_state(2))
    assert (carried.value - fresh.value).abs().max() > 1e-4


def test_lstm_state_carry_equals_one_long_window_and_bilstm_does_not():
    """A forward LSTM gives the same outputs in windows of 4 with the state carried as in one window of 24; a
    bilstm's backward block reads each window backwards, so its outputs depend on the windows (official too)."""
    src = MemorySource([episode(3, 24)])
    for kind in ("multi_layer_lstm", "multi_layer_bilstm"):
        policy = _policy(kind)
        long = _nll_per_episode(policy, WindowLoader(src, 1, 24, epochs=1))[0]
        short = _nll_per_episode(policy, WindowLoader(src, 1, 4, epochs=1))[0]
        if kind == "multi_layer_lstm":
            np.testing.assert_allclose(short, long, rtol=0, atol=2e-5)
        else:
            assert np.abs(short - long).max() > 1e-3


def test_checkpointed_lstm_state_round_trips_and_is_checked():
    policy = _policy()
    frames = torch.from_numpy(np.stack([episode(i, 3)[0] for i in range(2)]))
    with torch.no_grad():
        state = policy(frames, torch.tensor([[True, False, False]] * 2), policy.initial_state(2)).state
    saved = ckpt.state_to_cpu(state)
    back = ckpt.state_from_saved(saved, CPU, like=policy.initial_state(2))
    assert all(type(b) is LSTMState and torch.equal(b.h, s.h) and torch.equal(b.c, s.c) for b, s in zip(back, state))
    with pytest.raises(TrainDataError, match="does not fit"):
        ckpt.state_from_saved(saved[:1], CPU, like=policy.initial_state(2))
    with pytest.raises(TrainDataError, match="shapes"):
        ckpt.state_from_saved(saved, CPU, like=policy.initial_state(3))


def test_lstm_resume_equals_an_uninterrupted_run(tmp_path, lstm_model):
    """Killed between checkpoints and resumed: the restored LSTM state gives bit-identical final weights."""
    episodes = [episode(i, 9 + 3 * i, null_every=4) for i in range(5)]
    full = train(_config(lstm_model, tmp_path / "full", steps=6), MemorySource(episodes))
    with pytest.raises(_Killed):
        train(_config(lstm_model, tmp_path / "cut", steps=6), _DyingSource(episodes, die_after=40))
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3 and len(saved["state"]) == NET["n_recurrence_layers"]
    assert all(len(s) == 2 and s[0].shape == (2, 1, 32) for s in saved["state"])
    assert any(float(s[0].abs().max()) > 0 for s in saved["state"])  # a real state, not the zeros of a start
    resumed = train(_config(lstm_model, tmp_path / "cut", steps=6, resume=True), MemorySource(episodes))
    assert resumed.steps == full.steps == 6
    a = torch.load(tmp_path / "full" / "final.weights", weights_only=True)
    b = torch.load(tmp_path / "cut" / "final.weights", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_init_follows_the_official_scales():
    """Random init (before loading weights): LSTM weights normal with std scale / sqrt(4H), zero biases; scale is
    the stack's 1/sqrt(n) times 1/sqrt(2) for the pointwise residual (both residual), as officially."""
    H, n = 128, 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = VPTPolicy(PolicyConfig.from_kwargs(dict(NET, hidsize=H, n_recurrence_layers=n)))
    scale = n ** -0.5 * 2 ** -0.5
    for block in policy.net.recurrent_layer.blocks:
        for w in (block.r.weight_ih_l0, block.r.weight_hh_l0):
            assert float(w.detach().std()) == pytest.approx(scale * (4 * H) ** -0.5, rel=0.03)
        assert not block.r.bias_ih_l0.any() and not block.r.bias_hh_l0.any()
