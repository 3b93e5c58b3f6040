"""The compiled CPU step (``VPTAgent(compile=True)``: torch.compile with frozen weights) equals the eager step.

Compiling takes ~30 s on two cores, so one test compiles the agent's step (twice: before and after new weights are
loaded) and one compiles a two-layer network with ``"max-autotune"``; the others check the switches without
compiling.
"""
import numpy as np
import pytest
import torch

from conftest import SMALL_MODEL, SMALL_WEIGHTS, make_obs
from vpt_agent import VPTAgent
from vpt_agent.agent import AgentError
from vpt_agent.inference import EngineError, StepEngine, compile_frozen
from vpt_agent.loading import read_state_dict


def _rollout(agent, steps, seeds=(40, 41, 42)):
    """Per step: joint buttons/camera (argmax) and the button log-probs, 3 envs, env 1 restarting at step 4."""
    out = []
    for t in range(steps):
        first = [t == 0, t in (0, 4), t == 0]
        step = agent.act([{"pov": make_obs(s, t)} for s in seeds], first, deterministic=True)
        out.append((step.buttons, step.camera, step.logp_buttons, step.value))
    return out


def _assert_same(got, want):
    for t, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g[0], w[0], err_msg=f"buttons, step {t}")
        np.testing.assert_array_equal(g[1], w[1], err_msg=f"camera, step {t}")
        np.testing.assert_allclose(g[2], w[2], rtol=1e-4, atol=1e-4, err_msg=f"logp, step {t}")  # fused, reordered sums
        np.testing.assert_allclose(g[3], w[3], rtol=1e-4, atol=1e-4, err_msg=f"value, step {t}")


def test_compiled_step_equals_eager_and_follows_load_weights(tmp_path):
    eager = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", compile=False)
    compiled = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", compile=True)
    assert compiled.compiled and not eager.compiled
    _assert_same(_rollout(compiled, 6), _rollout(eager, 6))

    # The weights really are frozen: a parameter changed in place is not seen by the compiled step, while an eager
    # agent on the same (changed) network sees it. torch.compile(options={"freezing": True}) alone would have left
    # the parameters live graph inputs.
    weight = compiled.policy.pi_head["buttons"].linear_layer.weight
    with torch.no_grad():
        weight.mul_(2.0)  # x2 then /2: exactly undone
    try:
        compiled.reset()
        _assert_same(_rollout(compiled, 2), _rollout(eager, 2))
        changed = _rollout(VPTAgent(compiled.policy, device="cpu"), 2)
        assert not np.allclose(changed[1][2], _rollout(eager, 2)[1][2], atol=1e-3)
    finally:
        with torch.no_grad():
            weight.div_(2.0)

    # New weights: the frozen copy inside the compiled step must not survive load_weights.
    sd = read_state_dict(SMALL_WEIGHTS)
    gen = torch.Generator().manual_seed(3)
    sd = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in sd.items()}
    path = tmp_path / "changed.weights"
    torch.save(sd, path)
    before = _rollout(compiled, 2)
    for agent in (eager, compiled):
        agent.load_weights(path)
    after_eager, after_compiled = _rollout(eager, 6), _rollout(compiled, 6)
    _assert_same(after_compiled, after_eager)
    assert not np.allclose(after_compiled[1][2], before[1][2], atol=1e-3)  # the weights did change the outputs


class _TwoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(64, 256), torch.nn.Linear(256, 8)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_max_autotune_compile_freezes_and_a_new_compile_sees_new_weights(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # a cold cache: the autotuning really runs
    torch.manual_seed(0)
    net, x = _TwoLayers().eval(), torch.randn(1, 64)
    with torch.inference_mode():
        run = compile_frozen(net.forward, "max-autotune")
        torch.testing.assert_close(run(x), net(x), rtol=1e-5, atol=1e-5)
        net.b.weight.mul_(2.0)  # in place: the same parameter objects, new values
        want = net(x)
        assert not torch.allclose(run(x), want, atol=1e-4)  # the first compile keeps its frozen copy
        # A second compile of the same method must not reuse the first one's cached code (guards check the
        # parameters' identity, not their values).
        torch.testing.assert_close(compile_frozen(net.forward, "max-autotune")(x), want, rtol=1e-5, atol=1e-5)
    assert "AUTOTUNE" not in capfd.readouterr().err  # inductor's tables would go straight to stderr


def test_compile_is_opt_in():
    for dtype in ("float32", "bfloat16"):
        assert not VPTAgent.from_config(SMALL_MODEL, device="cpu", dtype=dtype).compiled
    assert VPTAgent.from_config(SMALL_MODEL, device="cpu", compile=True).compiled


def test_compile_switches_are_checked():
    agent = VPTAgent.from_config(SMALL_MODEL, device="cpu")
    with pytest.raises(EngineError, match="exclusive"):
        StepEngine(agent.policy, 1, cuda_graph=True, compile=True)
    with pytest.raises(EngineError, match="CUDA device"):
        StepEngine(agent.policy, 1, cuda_graph=True)
    with pytest.raises(AgentError, match="compile must be a bool or one of default, max-autotune, got 'fast'"):
        VPTAgent.from_config(SMALL_MODEL, device="cpu", compile="fast")
    tuned = VPTAgent.from_config(SMALL_MODEL, device="cpu", compile="max-autotune")
    assert tuned.compiled and tuned.compile_mode == "max-autotune"
    assert tuned.sibling().compile_mode == "max-autotune"
    assert VPTAgent.from_config(SMALL_MODEL, device="cpu", compile=True).compile_mode == "default"


def test_rebuild_drops_the_engine_and_sibling_shares_the_network():
    agent = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=0)
    obs = [{"pov": make_obs(1, 0)}]
    agent.get_actions(obs, [True])
    engine = agent._engine
    agent.rebuild()
    agent.get_actions(obs, [True])
    assert agent._engine is not engine
    other = agent.sibling(seed=5)
    assert other.policy is agent.policy and other._engine is None and other.compiled == agent.compiled
    # Own memory: the sibling's first step is a fresh episode whatever the first agent did.
    fresh = VPTAgent.from_files(SMALL_MODEL, SMALL_WEIGHTS, device="cpu", seed=5)
    assert other.act(obs, [True], True).buttons.tolist() == fresh.act(obs, [True], True).buttons.tolist()
